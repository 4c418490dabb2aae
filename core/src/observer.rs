//! The hooks a monitor plugs into: an [`Observer`] on the proc hears of every spawn and may
//! attach an [`ActorProbe`] to the actor, which then hears of its lifecycle and handlers.
//!
//! With no observer installed, the run loop pays one predictable branch per message.

use std::sync::Arc;

use crate::actor::{LinkKind, StopReason};
use crate::id::ActorId;
use crate::mailbox::{Mailbox, MailboxGauge};
use crate::supervision::{Restart, Supervision};

/// Installed on a proc with [`ProcBuilder::observer`](crate::ProcBuilder::observer); hears
/// of every actor spawned there.
pub trait Observer: Send + Sync + 'static {
    /// An actor was spawned. Return a probe to follow it, or `None` to ignore it.
    fn actor_spawned(&self, info: &ActorInfo) -> Option<Arc<dyn ActorProbe>>;
}

/// What is known of an actor when it is spawned.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ActorInfo {
    /// Its id.
    pub id: ActorId,
    /// The Rust type name of the actor.
    pub actor_type: &'static str,
    /// Its supervisor, if it was spawned as a child.
    pub parent: Option<ActorId>,
    /// Its mailbox kind and capacity.
    pub mailbox: Mailbox,
    /// A live view of its mailbox depth.
    pub gauge: MailboxGauge,
    /// Its restart policy, if supervised.
    pub restart: Option<Restart>,
}

/// The lifecycle phase of an actor, as reported to a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ActorStatus {
    /// Running `on_start`.
    Starting,
    /// Handling messages.
    Running,
    /// Between incarnations, waiting for its supervisor's decision.
    Restarting,
    /// Stopping its children and running `on_stop`.
    Stopping,
    /// Stopped for good.
    Stopped,
}

/// Follows one actor. Every method has a no-op default; they are called from the actor's
/// own task, so they must be quick (relaxed atomics, not locks on shared maps).
#[allow(unused_variables)]
pub trait ActorProbe: Send + Sync + 'static {
    /// The actor entered a lifecycle phase.
    fn status(&self, status: ActorStatus) {}
    /// The actor's supervision policy, reported at the start of every incarnation.
    fn supervision(&self, supervision: &Supervision) {}
    /// A handler for a message of this type started. If no
    /// [`handler_finished`](ActorProbe::handler_finished) came since the last start, that
    /// handler has ended now: back-to-back handlers are reported by their starts alone.
    fn handler_started(&self, message_type: &'static str) {}
    /// No handler runs any more: the last one started has finished (or panicked) and the
    /// actor went idle or turned to something other than a message. Not called between
    /// two messages handled back to back, which saves a call per message under load.
    fn handler_finished(&self) {}
    /// A handler panicked.
    fn panicked(&self, message: &str) {}
    /// A new incarnation started after a supervised restart.
    fn restarted(&self) {}
    /// The actor stopped for good.
    fn stopped(&self, reason: &StopReason) {}
    /// The actor spawned a supervised child.
    fn child_spawned(&self, child: &ActorId) {}
    /// The actor linked to or watches another actor.
    fn linked(&self, other: &ActorId, kind: LinkKind) {}
    /// The actor, inside a handler, started waiting for a reply from `target`. The returned
    /// token is passed to [`ActorProbe::ask_finished`] so concurrent asks stay apart.
    fn ask_started(&self, target: &ActorId) -> u64 {
        0
    }
    /// The wait that [`ActorProbe::ask_started`] began has ended.
    fn ask_finished(&self, token: u64) {}
}

/// A wait-for edge from the running actor to an ask's target, ended when dropped.
pub(crate) struct WaitEdge(Option<(Arc<dyn ActorProbe>, u64)>);

impl WaitEdge {
    pub(crate) fn begin(target: &ActorId) -> Self {
        let probe = crate::runner::CURRENT_ACTOR
            .try_with(|cell| cell.core().probe.get().and_then(|probe| probe.upgrade()))
            .ok()
            .flatten();
        WaitEdge(probe.map(|probe| {
            let token = probe.ask_started(target);
            (probe, token)
        }))
    }
}

impl Drop for WaitEdge {
    fn drop(&mut self) {
        if let Some((probe, token)) = self.0.take() {
            probe.ask_finished(token);
        }
    }
}
