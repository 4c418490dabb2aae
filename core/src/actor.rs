//! The actor contract: lifecycle hooks, typed handlers and the reasons an actor stops.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::id::ActorId;
use crate::supervision::Supervision;

/// The error type an actor may return from [`Actor::on_start`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An actor: state owned by one task, changed only by the messages it handles.
///
/// Every hook has a default, so the smallest actor is an empty `impl`. Messages are
/// handled one at a time through [`Handler`] impls, one per message type.
///
/// An actor runs until it is stopped (by itself, by a ref, by its supervisor or by the
/// proc's shutdown); dropping every ref does not stop it.
///
/// ```
/// use plexus_core::{Actor, Context, Handler, Proc, ProcId};
///
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// struct Add(u64);
/// impl Handler<Add> for Counter {
///     type Reply = u64;
///     async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
///         self.0 += n;
///         self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proc = Proc::new(ProcId::unique("docs"));
/// let counter = proc.spawn("counter", Counter(0))?;
/// counter.tell(Add(2)).await?;
/// assert_eq!(counter.ask(Add(3)).await?, 5);
/// # Ok(()) }
/// ```
pub trait Actor: Sized + Send + 'static {
    /// Runs before the first message of every incarnation (also after a supervised
    /// restart). An error stops the actor with [`StopReason::StartFailed`].
    fn on_start(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when an incarnation ends, after the actor's children have stopped. The reason
    /// is [`StopReason::Restarting`] when the supervisor restarts it with a sibling.
    fn on_stop(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &StopReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Decides what a panic in a handler means. The default stops the actor with
    /// [`StopReason::Panicked`]; `ControlFlow::Continue(())` keeps it running with its
    /// state as the panic left it.
    fn on_panic(&mut self, ctx: &mut Context<Self>, panic: PanicError) -> ControlFlow<StopReason> {
        let _ = ctx;
        ControlFlow::Break(StopReason::Panicked(panic.message))
    }

    /// Handles the stop of a linked or watched actor. It arrives through the mailbox, after
    /// every message that actor sent before it stopped.
    ///
    /// The default ignores watches and normal stops of links, and stops this actor with
    /// [`StopReason::LinkDied`] when a link stopped abnormally.
    fn on_link_died(
        &mut self,
        ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> impl Future<Output = ControlFlow<StopReason>> + Send {
        let _ = ctx;
        async move {
            if died.kind == LinkKind::Link && died.reason.is_abnormal() {
                ControlFlow::Break(StopReason::LinkDied {
                    id: died.id,
                    reason: Box::new(died.reason),
                })
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    /// How this actor supervises the children it spawns with [`Context::spawn_child`].
    fn supervision(&self) -> Supervision {
        Supervision::default()
    }
}

/// Handling of one message type `M`, with its own reply type.
///
/// `tell` discards the reply; `ask` returns it. Write the method as an `async fn`.
pub trait Handler<M: Send + 'static>: Actor {
    /// What an `ask` with this message returns. Use `()` for fire-and-forget messages.
    type Reply: Send + 'static;

    /// Handles one message. The actor handles nothing else until this returns.
    fn handle(
        &mut self,
        msg: M,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Self::Reply> + Send;
}

/// Why an actor stopped (or, for [`StopReason::Restarting`], why an incarnation ended).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StopReason {
    /// The actor stopped itself with [`Context::stop`].
    Normal,
    /// A stop was requested through a ref (`stop` or `stop_gracefully`).
    Stopped,
    /// Its supervisor or its proc shut it down.
    Shutdown,
    /// Its supervisor ended this incarnation to restart it together with a sibling.
    Restarting,
    /// The actor failed with [`Context::fail`].
    Failed(String),
    /// A handler panicked; the panic message.
    Panicked(String),
    /// `on_start` returned an error or panicked.
    StartFailed(String),
    /// A linked actor stopped abnormally.
    LinkDied {
        /// The linked actor.
        id: ActorId,
        /// Why it stopped.
        reason: Box<StopReason>,
    },
    /// A child exceeded its restart budget, so this supervisor gave up.
    Escalated {
        /// The child whose failures exhausted the budget.
        child: ActorId,
        /// The child's last stop reason.
        reason: Box<StopReason>,
    },
    /// The connection to a remote actor's proc was lost: a remote watch or link fires with
    /// this reason, since the actor can no longer be observed (it may still run).
    Disconnected,
    /// A remote watch or link reached a proc with no such actor (it never existed there or
    /// it had already stopped).
    NotFound,
}

impl StopReason {
    /// Whether this reason is a failure: a panic, a start failure, a failed link, an
    /// escalation, [`StopReason::Failed`], or a remote actor lost or not found (so a link
    /// across processes fails like a crash). Transient children restart only on these.
    pub fn is_abnormal(&self) -> bool {
        matches!(
            self,
            StopReason::Failed(_)
                | StopReason::Panicked(_)
                | StopReason::StartFailed(_)
                | StopReason::LinkDied { .. }
                | StopReason::Escalated { .. }
                | StopReason::Disconnected
                | StopReason::NotFound
        )
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Normal => f.write_str("stopped normally"),
            StopReason::Stopped => f.write_str("stopped on request"),
            StopReason::Shutdown => f.write_str("shut down"),
            StopReason::Restarting => f.write_str("restarting with a sibling"),
            StopReason::Failed(why) => write!(f, "failed: {why}"),
            StopReason::Panicked(why) => write!(f, "panicked: {why}"),
            StopReason::StartFailed(why) => write!(f, "failed to start: {why}"),
            StopReason::LinkDied { id, reason } => write!(f, "linked actor {id} {reason}"),
            StopReason::Escalated { child, reason } => {
                write!(f, "gave up supervising {child}, which {reason}")
            }
            StopReason::Disconnected => f.write_str("lost: its proc is disconnected"),
            StopReason::NotFound => f.write_str("not found in its proc"),
        }
    }
}

/// Whether a stop notification comes from a two-way link or a one-way watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkKind {
    /// Set up with [`Context::link`]: both sides learn of the other's stop.
    Link,
    /// Set up with [`Context::watch`]: only the watcher learns of the stop.
    Watch,
}

/// A linked or watched actor stopped for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDied {
    /// The actor that stopped.
    pub id: ActorId,
    /// Why it stopped.
    pub reason: StopReason,
    /// Whether it was a link or a watch.
    pub kind: LinkKind,
}

/// A panic caught in a handler or hook.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {message}")]
pub struct PanicError {
    /// The panic message, or a placeholder for a payload that is not a string.
    pub message: String,
}

impl PanicError {
    pub(crate) fn from_payload(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = match payload.downcast::<String>() {
            Ok(text) => *text,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(text) => (*text).to_owned(),
                Err(_) => "a panic payload that is not a string".to_owned(),
            },
        };
        PanicError { message }
    }
}
