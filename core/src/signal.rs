//! The out-of-band signal queue of an actor: stop requests, link registrations, child exits
//! and supervisor decisions.
//!
//! Signals bypass the mailbox so that a stop or a supervisor decision is not stuck behind
//! thousands of queued messages. The run loop checks for a signal with one atomic load
//! per message. When the actor has stopped, the queue is closed and a late signal comes
//! back to its sender, which is how a late watch registration learns the stop reason
//! instead of waiting forever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Context as TaskContext;

use futures::task::AtomicWaker;

use crate::actor::{LinkKind, StopReason};
use crate::cell::Watcher;
use crate::id::ActorId;

/// A signal to an actor, handled between messages.
pub(crate) enum Signal {
    /// Stop for good: a stop request or a shutdown from the supervisor or proc.
    Stop(StopRequest),
    /// The supervisor ends this incarnation to restart it together with a sibling.
    Restart,
    /// Someone wants to learn of this actor's final stop.
    Watch {
        watcher: Arc<dyn Watcher>,
        kind: LinkKind,
    },
    /// A supervised child ended an incarnation; `last` means it stopped for good and
    /// waits for no decision.
    ChildExited(Box<ChildExit>),
    /// The supervisor's answer to a child that ended an incarnation.
    Decision(Decision),
}

/// Who asked an actor to stop for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopRequest {
    /// A ref's `stop`.
    Stopped,
    /// The supervisor or the proc shutting down.
    Shutdown,
}

impl StopRequest {
    fn code(self) -> u8 {
        match self {
            StopRequest::Stopped => 1,
            StopRequest::Shutdown => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(StopRequest::Stopped),
            2 => Some(StopRequest::Shutdown),
            _ => None,
        }
    }

    pub(crate) fn reason(self) -> StopReason {
        match self {
            StopRequest::Stopped => StopReason::Stopped,
            StopRequest::Shutdown => StopReason::Shutdown,
        }
    }
}

/// A child's report of the end of an incarnation; boxed in [`Signal`] to keep signals,
/// and the run loop that holds one, small.
pub(crate) struct ChildExit {
    pub(crate) child: ActorId,
    pub(crate) reason: StopReason,
    /// Stopped for good; waits for no decision.
    pub(crate) last: bool,
}

/// What a supervisor tells a child that ended an incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Restart,
    Stop,
}

pub(crate) struct SignalQueue {
    /// `None` once the actor has stopped for good.
    queue: Mutex<Option<VecDeque<Signal>>>,
    /// A stop request, the most frequent signal, kept out of the queue so that stopping an
    /// actor takes neither the lock nor an allocation: 0 none, else a [`StopRequest`] code.
    stop: AtomicU8,
    /// Set when the actor has stopped for good; stop requests after it are moot.
    closed: AtomicBool,
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl SignalQueue {
    pub(crate) fn new() -> Self {
        SignalQueue {
            queue: Mutex::new(Some(VecDeque::new())),
            stop: AtomicU8::new(0),
            closed: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<VecDeque<Signal>>> {
        // A panic while holding this lock cannot leave the queue half-updated (push and
        // pop are single calls), so a poisoned lock is still safe to use.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a signal, or gives it back when the actor has stopped for good.
    pub(crate) fn push(&self, signal: Signal) -> Result<(), Signal> {
        {
            let mut queue = self.lock();
            let Some(queue) = queue.as_mut() else {
                return Err(signal);
            };
            queue.push_back(signal);
            self.pending.store(true, Ordering::Release);
        }
        self.waker.wake();
        Ok(())
    }

    /// Asks the actor to stop for good; the first request wins. Refused once the actor has
    /// stopped, when there is nothing left to stop.
    pub(crate) fn request_stop(&self, request: StopRequest) -> Result<(), ()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(());
        }
        let _ = self
            .stop
            .compare_exchange(0, request.code(), Ordering::SeqCst, Ordering::SeqCst);
        self.pending.store(true, Ordering::SeqCst);
        self.waker.wake();
        Ok(())
    }

    /// Takes a stop request first, else the oldest queued signal; one atomic load when
    /// there is none.
    pub(crate) fn take(&self) -> Option<Signal> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        if let Some(request) = StopRequest::from_code(self.stop.swap(0, Ordering::SeqCst)) {
            return Some(Signal::Stop(request));
        }
        let mut queue = self.lock();
        let queue = queue.as_mut()?;
        let signal = queue.pop_front();
        if queue.is_empty() {
            self.pending.store(false, Ordering::SeqCst);
            // A stop request sets its flag before `pending`: either it sees our clear and
            // sets `pending` again after it, or we see its flag here.
            if self.stop.load(Ordering::SeqCst) != 0 {
                self.pending.store(true, Ordering::SeqCst);
            }
        }
        signal
    }

    /// Registers the waker and reports whether a signal is pending; checking after the
    /// registration means a push between the two is never missed.
    pub(crate) fn poll_pending(&self, cx: &mut TaskContext<'_>) -> bool {
        if self.pending.load(Ordering::Acquire) {
            return true;
        }
        self.waker.register(cx.waker());
        self.pending.load(Ordering::Acquire)
    }

    /// Closes the queue for good and returns what was still queued.
    pub(crate) fn close(&self) -> VecDeque<Signal> {
        self.closed.store(true, Ordering::Release);
        let drained = self.lock().take().unwrap_or_default();
        self.pending.store(false, Ordering::Release);
        drained
    }
}
