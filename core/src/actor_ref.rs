//! Typed handles to actors: [`ActorRef`] sends, asks and stops, whether the actor runs in
//! this proc or in another one; [`WeakActorRef`] refers without keeping a local actor's
//! cell alive.
//!
//! A ref has one of two targets. A local target is the actor's cell, reached with no
//! serialization; every method starts with one branch on the target and the local arm is
//! the code as it was before refs could be remote. A remote target is an address plus the
//! proc whose route it sends through; its arms live in `remote::remote_ref` and are boxed,
//! so a remote send does not grow the futures of local ones. A remote `tell` is done at
//! the call when its route needs no waiting, and boxes only the rest of one that waits.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::{Actor, Handler, StopReason};
use crate::cell::Cell;
use crate::envelope::{Ask, EnvelopeBox, Item, Tell, erase};
use crate::error::{AskError, TellError, TryTellError, UndeliverableReason};
use crate::id::ActorId;
use crate::mailbox::{MailboxGauge, Refused};
use crate::observer::WaitEdge;
use crate::remote::RemoteTarget;
use crate::signal::StopRequest;

/// A typed handle to an actor: cheap to clone, usable from any task.
///
/// The actor may run in this proc or in another proc, of this process or of another host
/// (a *remote ref*, made by [`Proc::lookup_remote`](crate::Proc::lookup_remote) or by
/// decoding a ref that arrived inside a message). The methods and their error types are
/// the same; a remote ref encodes each message with its
/// [`RemoteMessage`](crate::RemoteMessage) name and sends it through its proc's
/// [`RemoteRoute`](crate::RemoteRoute). Refs serialize (as a
/// [`RemoteAddr`](crate::RemoteAddr)), so a ref sent inside a message works on the
/// receiving side.
///
/// Messages from one sender to one actor are handled in the order they were sent. A ref
/// does not keep the actor running; see [`Actor`].
pub struct ActorRef<A: Actor> {
    pub(crate) target: Target<A>,
}

/// Where a ref's messages go.
pub(crate) enum Target<A: Actor> {
    /// The actor's cell in this process.
    Local(Arc<Cell<A>>),
    /// An actor reached through a proc's route.
    Remote(Arc<RemoteTarget>),
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        let target = match &self.target {
            Target::Local(cell) => Target::Local(cell.clone()),
            Target::Remote(remote) => Target::Remote(remote.clone()),
        };
        ActorRef { target }
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Local(cell) => f.debug_tuple("ActorRef").field(&cell.core.id).finish(),
            Target::Remote(remote) => f.debug_tuple("ActorRef").field(&remote.addr).finish(),
        }
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    /// Two local refs are equal when they share a cell; otherwise, when they name the same
    /// actor (ids are unique per incarnation of a proc).
    fn eq(&self, other: &Self) -> bool {
        match (&self.target, &other.target) {
            (Target::Local(a), Target::Local(b)) => Arc::ptr_eq(a, b),
            _ => self.id() == other.id(),
        }
    }
}

impl<A: Actor> Eq for ActorRef<A> {}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn local(cell: Arc<Cell<A>>) -> Self {
        ActorRef {
            target: Target::Local(cell),
        }
    }

    /// The local cell, or `None` for a remote ref.
    pub(crate) fn local_cell(&self) -> Option<&Arc<Cell<A>>> {
        match &self.target {
            Target::Local(cell) => Some(cell),
            Target::Remote(_) => None,
        }
    }

    /// The actor's id; it stays the same across supervised restarts.
    pub fn id(&self) -> &ActorId {
        match &self.target {
            Target::Local(cell) => &cell.core.id,
            Target::Remote(remote) => &remote.addr.actor,
        }
    }

    /// Whether the actor is reached through a route rather than in this process.
    pub fn is_remote(&self) -> bool {
        matches!(self.target, Target::Remote(_))
    }

    /// Sends a message, waiting for room when the mailbox is full.
    ///
    /// If the actor has stopped, the message goes to the proc's undeliverable handler and
    /// the error says so. For a remote ref the wait is for the route's flow credit, and a
    /// message that cannot be sent (type not remote, no route, connection lost) goes to the
    /// undeliverable handler of the proc the ref routes through.
    ///
    /// # Cancel safety
    /// Cancel-safe for a local ref: if the future is dropped before it completes, the
    /// message was not sent. For a remote ref it is as cancel-safe as the route's send.
    pub async fn tell<M>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match &self.target {
            Target::Local(cell) => cell.tell(msg).await,
            // Done at the call unless the route has to wait; only then is a future
            // boxed, so the common remote tell allocates none.
            Target::Remote(remote) => match remote.tell_now(msg) {
                Ok(done) => done,
                Err(waiting) => waiting.await,
            },
        }
    }

    /// Sends a message if the mailbox (or, for a remote ref, the route) has room now.
    ///
    /// ```
    /// # use plexus_core::*;
    /// # struct Sink;
    /// # impl Actor for Sink {}
    /// # impl Handler<u8> for Sink { type Reply = (); async fn handle(&mut self, _: u8, _: &mut Context<Self>) {} }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proc = Proc::new(ProcId::unique("docs"));
    /// let sink = proc.spawn_with("sink", Sink, Mailbox::Bounded(1))?;
    /// // The actor's task has not run yet on this single thread, so the mailbox fills up.
    /// sink.try_tell(1u8)?;
    /// let full = sink.try_tell(2u8).unwrap_err();
    /// assert!(matches!(full, TryTellError::Full { .. }));
    /// assert_eq!(full.into_message(), Some(2));
    /// # Ok(()) }
    /// ```
    pub fn try_tell<M>(&self, msg: M) -> Result<(), TryTellError<M>>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match &self.target {
            Target::Local(cell) => cell.try_tell(msg),
            Target::Remote(remote) => remote.try_tell(msg),
        }
    }

    /// Sends a message past the mailbox's capacity, without waiting. Meant for control
    /// messages whose sender must never block; the depth gauge still counts it.
    ///
    /// For a remote ref, sends without waiting if the route has room now, and otherwise
    /// from a task of its own (so it needs a tokio runtime then, and a later send from
    /// this sender may overtake it); a failure is logged and the message goes to the
    /// undeliverable handler.
    pub fn send_unbounded<M>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match &self.target {
            Target::Local(cell) => cell.send_unbounded(msg),
            Target::Remote(remote) => remote.send_unbounded(msg),
        }
    }

    /// Sends a request and waits for the handler's reply, with no time limit.
    ///
    /// Fails with [`AskError::Closed`] if the actor stops before handling it and
    /// [`AskError::Panicked`] if the handler panics. Use [`ActorRef::ask_timeout`] to
    /// bound the wait. A remote ask also fails with `NotFound`, `NotExposed`,
    /// `Disconnected` (at once, when the connection dies), `Unroutable`, `Decode`, ...;
    /// see [`AskError`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the request may still be handled.
    pub async fn ask<M>(&self, msg: M) -> Result<A::Reply, AskError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match &self.target {
            Target::Local(cell) => cell.ask(msg).await,
            Target::Remote(remote) => {
                Box::pin(remote.ask::<A, M>(msg, crate::remote::UNBOUNDED_ASK)).await
            }
        }
    }

    /// Like [`ActorRef::ask`], failing with [`AskError::Timeout`] when no reply comes
    /// within `timeout`. Needs a tokio runtime with time enabled.
    ///
    /// # Cancel safety
    /// As for [`ActorRef::ask`].
    pub async fn ask_timeout<M>(&self, msg: M, timeout: Duration) -> Result<A::Reply, AskError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        let outcome = match &self.target {
            Target::Local(cell) => tokio::time::timeout(timeout, cell.ask(msg)).await,
            Target::Remote(remote) => {
                tokio::time::timeout(timeout, Box::pin(remote.ask::<A, M>(msg, timeout))).await
            }
        };
        match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(AskError::Timeout {
                recipient: self.id().clone(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Stops the actor after the handler running now; queued messages are not handled
    /// (tells go to the undeliverable handler, asks fail with `Closed`).
    ///
    /// For a remote ref, the request travels as a system message to the actor's proc;
    /// nothing is reported if it cannot be sent (see [`ActorRef::wait_for_stop`] to learn
    /// the outcome).
    pub fn stop(&self) {
        match &self.target {
            Target::Local(cell) => {
                let _ = cell.core.signals.request_stop(StopRequest::Stopped);
            }
            Target::Remote(remote) => remote.request_stop(false),
        }
    }

    /// Stops the actor once it has handled everything already queued. New messages are
    /// refused from now on. For a remote ref, as for [`ActorRef::stop`].
    pub fn stop_gracefully(&self) {
        match &self.target {
            Target::Local(cell) => cell.stop_gracefully(),
            Target::Remote(remote) => remote.request_stop(true),
        }
    }

    /// Waits until the actor has stopped for good (its mailbox drained and its watchers
    /// notified) and returns why. Returns at once if it already has.
    ///
    /// For a remote ref this is a remote watch: it returns the reason sent by the actor's
    /// proc, [`StopReason::NotFound`] if that proc has no such actor, or
    /// [`StopReason::Disconnected`] if the proc cannot be reached or its connection is lost
    /// (the actor may then still run). Needs a tokio runtime.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn wait_for_stop(&self) -> StopReason {
        match &self.target {
            Target::Local(cell) => cell.core.exit.wait().await,
            Target::Remote(remote) => Box::pin(remote.wait_for_stop()).await,
        }
    }

    /// Whether the actor has not yet stopped for good.
    ///
    /// A remote ref cannot know without asking, and always says `true`; use
    /// [`ActorRef::wait_for_stop`] or a watch to learn of a remote actor's stop.
    pub fn is_alive(&self) -> bool {
        match &self.target {
            Target::Local(cell) => !cell.core.exit.is_finished(),
            Target::Remote(_) => true,
        }
    }

    /// A handle that does not keep the actor's cell alive. A weak remote ref holds only
    /// the address, which keeps nothing alive anyway.
    pub fn downgrade(&self) -> WeakActorRef<A> {
        let target = match &self.target {
            Target::Local(cell) => WeakTarget::Local(Arc::downgrade(cell)),
            Target::Remote(remote) => WeakTarget::Remote(remote.clone()),
        };
        WeakActorRef {
            id: self.id().clone(),
            target,
        }
    }

    /// A live view of the actor's mailbox depth and capacity; `None` for a remote ref,
    /// whose mailbox lives in another proc.
    pub fn mailbox(&self) -> Option<MailboxGauge> {
        self.local_cell().map(|cell| MailboxGauge(cell.clone()))
    }
}

/// The local arms of [`ActorRef`]'s methods: the actor's cell in this process.
impl<A: Actor> Cell<A> {
    pub(crate) async fn tell<M>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match self.core.admission.reserve().await {
            Ok(()) => self.enqueue(erase(Tell(Some(msg)))),
            Err(_) => Err(self.refuse(
                erase(Tell(Some(msg))),
                UndeliverableReason::RecipientStopped,
            )),
        }
    }

    pub(crate) fn try_tell<M>(&self, msg: M) -> Result<(), TryTellError<M>>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match self.core.admission.try_reserve() {
            Ok(()) => self
                .enqueue(erase(Tell(Some(msg))))
                .map_err(|_| TryTellError::Closed {
                    recipient: self.core.id.clone(),
                }),
            Err(Refused::Full) => Err(TryTellError::Full {
                recipient: self.core.id.clone(),
                message: msg,
            }),
            Err(Refused::Closed) => {
                self.refuse(
                    erase(Tell(Some(msg))),
                    UndeliverableReason::RecipientStopped,
                );
                Err(TryTellError::Closed {
                    recipient: self.core.id.clone(),
                })
            }
        }
    }

    fn send_unbounded<M>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match self.core.admission.force_reserve() {
            Ok(()) => self.enqueue(erase(Tell(Some(msg)))),
            Err(_) => Err(self.refuse(
                erase(Tell(Some(msg))),
                UndeliverableReason::RecipientStopped,
            )),
        }
    }

    async fn ask<M>(&self, msg: M) -> Result<A::Reply, AskError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        let _edge = WaitEdge::begin(&self.core.id);
        if self.core.admission.reserve().await.is_err() {
            return Err(AskError::Closed {
                recipient: self.core.id.clone(),
            });
        }
        match self.enqueue_request(msg).await {
            Ok(outcome) => outcome,
            // The reply sender vanished unanswered: the actor's task was torn down.
            Err(_) => Err(AskError::Closed {
                recipient: self.core.id.clone(),
            }),
        }
    }

    pub(crate) fn stop_gracefully(&self) {
        let core = &self.core;
        // The marker takes a slot past capacity, like every item the actor will take out
        // and release; a refusal means the mailbox is already closed.
        if core.admission.force_reserve().is_err() {
            return;
        }
        core.admission.close();
        if self.tx.send(Item::Drained).is_err() {
            core.admission.release();
            tracing::debug!(actor = %core.id, "graceful stop of an actor that already stopped");
        }
    }

    /// Puts a request into a mailbox slot the caller has already reserved. The receiver
    /// yields the handler's reply; if the actor is gone, the request is answered `Closed`
    /// (and a dropped sender also means the actor's task was torn down).
    pub(crate) fn enqueue_request<M>(&self, msg: M) -> oneshot::Receiver<Result<A::Reply, AskError>>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        // A failed enqueue answers the request with `Closed` through its reply channel.
        let _ = self.enqueue(erase(Ask(Some((msg, reply)))));
        answer
    }

    pub(crate) fn enqueue(&self, envelope: EnvelopeBox<A>) -> Result<(), TellError> {
        match self.tx.send(Item::Message(envelope)) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::SendError(item)) => {
                self.core.admission.release();
                match item {
                    Item::Message(envelope) => {
                        Err(self.refuse(envelope, UndeliverableReason::RecipientStopped))
                    }
                    _ => Err(TellError::Closed {
                        recipient: self.core.id.clone(),
                    }),
                }
            }
        }
    }

    fn refuse(&self, envelope: EnvelopeBox<A>, reason: UndeliverableReason) -> TellError {
        crate::proc::report_undeliverable(&self.core, envelope, reason);
        TellError::Closed {
            recipient: self.core.id.clone(),
        }
    }
}

/// A handle that does not keep the actor's cell alive; upgrade it to send.
pub struct WeakActorRef<A: Actor> {
    id: ActorId,
    target: WeakTarget<A>,
}

enum WeakTarget<A: Actor> {
    Local(Weak<Cell<A>>),
    Remote(Arc<RemoteTarget>),
}

impl<A: Actor> Clone for WeakActorRef<A> {
    fn clone(&self) -> Self {
        let target = match &self.target {
            WeakTarget::Local(cell) => WeakTarget::Local(cell.clone()),
            WeakTarget::Remote(remote) => WeakTarget::Remote(remote.clone()),
        };
        WeakActorRef {
            id: self.id.clone(),
            target,
        }
    }
}

impl<A: Actor> fmt::Debug for WeakActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WeakActorRef").field(&self.id).finish()
    }
}

impl<A: Actor> WeakActorRef<A> {
    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// A strong ref, if the actor has not stopped for good. A weak remote ref always
    /// upgrades (its liveness is not known here, as for [`ActorRef::is_alive`]).
    pub fn upgrade(&self) -> Option<ActorRef<A>> {
        match &self.target {
            WeakTarget::Local(cell) => {
                let cell = cell.upgrade()?;
                (!cell.core.exit.is_finished()).then_some(ActorRef::local(cell))
            }
            WeakTarget::Remote(remote) => Some(ActorRef {
                target: Target::Remote(remote.clone()),
            }),
        }
    }
}
