//! The shared heart of one actor: identity, mailbox sender and admission, signal queue and
//! exit state. Refs point at a cell; the actor's task owns the receiving side.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::{Notify, mpsc};

use crate::actor::StopReason;
use crate::envelope::Item;
use crate::id::ActorId;
use crate::mailbox::Admission;
use crate::observer::ActorProbe;
use crate::proc::ProcInner;
use crate::signal::{Signal, SignalQueue};

/// The parts of a cell that do not depend on the actor's type.
pub(crate) struct CellCore {
    pub(crate) id: ActorId,
    pub(crate) admission: Admission,
    pub(crate) signals: SignalQueue,
    pub(crate) exit: ExitState,
    pub(crate) proc: Weak<ProcInner>,
    pub(crate) supervised: bool,
    /// The observer's probe of this actor, set once before its task starts. Kept here
    /// rather than in a second task-local so a monitored actor's task costs no more per
    /// poll than an unmonitored one: an ask finds it through the running actor's cell.
    /// Weak because a probe may hold the cell (for the mailbox gauge); the actor's
    /// context holds it strongly for as long as the actor runs. Boxed so that every
    /// cell, monitored or not, spends one word on it rather than two.
    pub(crate) probe: OnceLock<Box<Weak<dyn ActorProbe>>>,
}

impl CellCore {
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), Signal> {
        self.signals.push(signal)
    }
}

/// A typed cell: the core plus the sending side of the mailbox.
pub(crate) struct Cell<A: crate::actor::Actor> {
    pub(crate) core: CellCore,
    pub(crate) tx: mpsc::UnboundedSender<Item<A>>,
}

/// A cell seen without its actor type, for links, supervision and the registry.
pub(crate) trait ErasedCell: Send + Sync + 'static {
    fn core(&self) -> &CellCore;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The same cell as a watcher (no trait upcasting on the minimum supported Rust).
    fn as_watcher(self: Arc<Self>) -> Arc<dyn Watcher>;
    /// Stops the actor once it has handled everything already queued.
    fn stop_gracefully(&self);
}

/// Someone to tell of an actor's final stop: a local actor (through its mailbox) or a
/// watcher in another proc (through the route).
pub(crate) trait Watcher: Send + Sync + 'static {
    /// The watching actor.
    fn watcher_id(&self) -> &ActorId;
    /// Delivers a link notification; for a local actor through the mailbox, after
    /// everything queued before. False when it can no longer be delivered.
    fn deliver_link_died(&self, died: crate::actor::LinkDied) -> bool;
}

impl<A: crate::actor::Actor> ErasedCell for Cell<A> {
    fn core(&self) -> &CellCore {
        &self.core
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn as_watcher(self: Arc<Self>) -> Arc<dyn Watcher> {
        self
    }

    fn stop_gracefully(&self) {
        Cell::stop_gracefully(self);
    }
}

impl<A: crate::actor::Actor> Watcher for Cell<A> {
    fn watcher_id(&self) -> &ActorId {
        &self.core.id
    }

    fn deliver_link_died(&self, died: crate::actor::LinkDied) -> bool {
        if self.core.admission.force_reserve().is_err() {
            return false;
        }
        if self.tx.send(Item::LinkDied(Box::new(died))).is_err() {
            self.core.admission.release();
            return false;
        }
        true
    }
}

/// How an actor's stop becomes visible: the reason first (for late watch registrations),
/// then `finished` once the mailbox is drained and every watcher notified.
pub(crate) struct ExitState {
    /// Boxed: a stop reason is several words and only one actor in many is stopping.
    reason: OnceLock<Box<StopReason>>,
    finished: AtomicBool,
    notify: Notify,
}

impl ExitState {
    pub(crate) fn new() -> Self {
        ExitState {
            reason: OnceLock::new(),
            finished: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    pub(crate) fn set_reason(&self, reason: StopReason) {
        let _ = self.reason.set(Box::new(reason));
    }

    pub(crate) fn reason(&self) -> Option<&StopReason> {
        self.reason.get().map(|reason| &**reason)
    }

    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Waits until the actor has stopped for good and returns why.
    pub(crate) async fn wait(&self) -> StopReason {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_finished() {
                return self.reason().cloned().unwrap_or(StopReason::Stopped);
            }
            notified.await;
        }
    }
}
