//! Mailbox admission: capacity, live depth and waiting for room.
//!
//! Messages themselves travel through a tokio unbounded channel owned by the actor's cell;
//! this module decides whether a send may enter. The depth counter is incremented by a
//! sender before it enqueues and decremented by the actor when it dequeues, so
//! [`MailboxGauge::depth`] is live even while the actor sits in a slow handler.
//!
//! ```text
//! try_reserve: depth < capacity ? depth += 1 : Full
//! release:     depth -= 1; if someone waits for room, wake one waiter
//! close:       closed = true; wake every waiter (they see Closed)
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::cell::ErasedCell;

/// The default capacity of a bounded mailbox, in messages.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// How many messages an actor's mailbox may hold.
///
/// ```
/// use plexus_core::Mailbox;
///
/// assert_eq!(Mailbox::default(), Mailbox::Bounded(1024));
/// assert_eq!(Mailbox::Bounded(8).capacity(), Some(8));
/// assert_eq!(Mailbox::Unbounded.capacity(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Mailbox {
    /// At most this many queued messages; `tell().await` waits for room and `try_tell`
    /// returns `Full`. A capacity of 0 is treated as 1.
    Bounded(usize),
    /// No limit: every send enters at once. Use for control actors whose senders must
    /// never wait; a slow consumer then grows memory without bound.
    Unbounded,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox::Bounded(DEFAULT_MAILBOX_CAPACITY)
    }
}

impl Mailbox {
    /// The capacity in messages, or `None` when unbounded.
    pub fn capacity(&self) -> Option<usize> {
        match *self {
            Mailbox::Bounded(n) => Some(n.max(1)),
            Mailbox::Unbounded => None,
        }
    }
}

/// Why a reservation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// Shared admission state of one mailbox.
#[derive(Debug)]
pub(crate) struct Admission {
    depth: AtomicUsize,
    /// `usize::MAX` for an unbounded mailbox, so one comparison serves both kinds.
    capacity: usize,
    waiters: AtomicUsize,
    room: Notify,
    closed: AtomicBool,
}

impl Admission {
    pub(crate) fn new(mailbox: Mailbox) -> Self {
        Admission {
            depth: AtomicUsize::new(0),
            capacity: mailbox.capacity().unwrap_or(usize::MAX),
            waiters: AtomicUsize::new(0),
            room: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Takes one slot if there is room.
    pub(crate) fn try_reserve(&self) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let mut depth = self.depth.load(Ordering::Relaxed);
        loop {
            if depth >= self.capacity {
                return Err(Refused::Full);
            }
            // SeqCst pairs with the waiter count in `release`: either the releasing actor
            // sees our waiter registration, or our recheck sees its decrement.
            match self.depth.compare_exchange_weak(
                depth,
                depth + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => depth = now,
            }
        }
    }

    /// Takes one slot regardless of capacity (unbounded sends and control messages).
    pub(crate) fn force_reserve(&self) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        self.depth.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until a slot is free and takes it.
    ///
    /// Cancel safety: dropping the future gives up the wait; a wake-up it had received is
    /// passed on to the next waiter by tokio's `Notify`.
    pub(crate) async fn reserve(&self) -> Result<(), Refused> {
        loop {
            match self.try_reserve() {
                Err(Refused::Full) => {}
                other => return other,
            }
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let _waiting = WaiterGuard::register(&self.waiters);
            match self.try_reserve() {
                Err(Refused::Full) => {}
                other => return other,
            }
            notified.await;
        }
    }

    /// Frees one slot: the actor took a message out, or an enqueue failed after reserving.
    pub(crate) fn release(&self) {
        self.depth.fetch_sub(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }

    /// Refuses every later reservation and wakes everyone waiting for room.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        (self.capacity != usize::MAX).then_some(self.capacity)
    }
}

/// Counts a task waiting for room for exactly as long as it waits, even if cancelled.
struct WaiterGuard<'a>(&'a AtomicUsize);

impl<'a> WaiterGuard<'a> {
    fn register(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(waiters)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A read-only view of one actor's mailbox, for monitors and metrics.
///
/// The depth counts messages accepted but not yet taken out by the actor, so it is exact
/// even while the actor sits in a slow handler.
#[derive(Clone)]
pub struct MailboxGauge(pub(crate) Arc<dyn ErasedCell>);

impl MailboxGauge {
    fn admission(&self) -> &Admission {
        &self.0.core().admission
    }

    /// Messages waiting in the mailbox now.
    pub fn depth(&self) -> usize {
        self.admission().depth()
    }

    /// The capacity, or `None` when the mailbox is unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.admission().capacity()
    }

    /// Whether the mailbox refuses new messages (the actor has stopped or is draining).
    pub fn is_closed(&self) -> bool {
        self.admission().is_closed()
    }
}

impl std::fmt::Debug for MailboxGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxGauge")
            .field("actor", &self.0.core().id)
            .field("depth", &self.depth())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A bounded mailbox admits exactly its capacity, then refuses with `Full`.
    #[test]
    fn bounded_admits_capacity_then_full() {
        let admission = Admission::new(Mailbox::Bounded(2));
        assert_eq!(admission.try_reserve(), Ok(()));
        assert_eq!(admission.try_reserve(), Ok(()));
        assert_eq!(admission.try_reserve(), Err(Refused::Full));
        admission.release();
        assert_eq!(admission.try_reserve(), Ok(()));
        assert_eq!(admission.depth(), 2);
    }

    /// A waiter for room wakes when a slot is released, and waiters see `Closed` on close.
    #[tokio::test]
    async fn waiter_wakes_on_release_and_on_close() {
        let admission = Arc::new(Admission::new(Mailbox::Bounded(1)));
        admission.try_reserve().unwrap();
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.reserve().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a full mailbox let a waiter in");
        admission.release();
        let woke = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(woke.unwrap().unwrap(), Ok(()));

        let blocked = tokio::spawn({
            let admission = admission.clone();
            async move { admission.reserve().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        admission.close();
        let closed = tokio::time::timeout(Duration::from_secs(5), blocked).await;
        assert_eq!(closed.unwrap().unwrap(), Err(Refused::Closed));
    }

    /// An unbounded mailbox never refuses for room but still counts depth.
    #[test]
    fn unbounded_counts_depth() {
        let admission = Admission::new(Mailbox::Unbounded);
        for _ in 0..5000 {
            admission.try_reserve().unwrap();
        }
        assert_eq!(admission.depth(), 5000);
        assert_eq!(admission.capacity(), None);
    }
}
