//! Typed handles to actors: [`ActorRef`] sends, asks and stops; [`WeakActorRef`] refers
//! without keeping the actor's cell alive.

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
use crate::signal::StopRequest;

/// A typed handle to an actor: cheap to clone, usable from any task.
///
/// Messages from one sender to one actor are handled in the order they were sent. A ref
/// does not keep the actor running; see [`Actor`].
pub struct ActorRef<A: Actor> {
    pub(crate) cell: Arc<Cell<A>>,
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            cell: self.cell.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActorRef").field(&self.cell.core.id).finish()
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl<A: Actor> Eq for ActorRef<A> {}

impl<A: Actor> ActorRef<A> {
    /// The actor's id; it stays the same across supervised restarts.
    pub fn id(&self) -> &ActorId {
        &self.cell.core.id
    }

    /// Sends a message, waiting for room when the mailbox is full.
    ///
    /// If the actor has stopped, the message goes to the proc's undeliverable handler and
    /// the error says so.
    ///
    /// # Cancel safety
    /// Cancel-safe: if the future is dropped before it completes, the message was not sent.
    pub async fn tell<M>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match self.cell.core.admission.reserve().await {
            Ok(()) => self.enqueue(erase(Tell(Some(msg)))),
            Err(_) => Err(self.refuse(
                erase(Tell(Some(msg))),
                UndeliverableReason::RecipientStopped,
            )),
        }
    }

    /// Sends a message if the mailbox has room now.
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
        match self.cell.core.admission.try_reserve() {
            Ok(()) => self
                .enqueue(erase(Tell(Some(msg))))
                .map_err(|_| TryTellError::Closed {
                    recipient: self.id().clone(),
                }),
            Err(Refused::Full) => Err(TryTellError::Full {
                recipient: self.id().clone(),
                message: msg,
            }),
            Err(Refused::Closed) => {
                self.refuse(
                    erase(Tell(Some(msg))),
                    UndeliverableReason::RecipientStopped,
                );
                Err(TryTellError::Closed {
                    recipient: self.id().clone(),
                })
            }
        }
    }

    /// Sends a message past the mailbox's capacity, without waiting. Meant for control
    /// messages whose sender must never block; the depth gauge still counts it.
    pub fn send_unbounded<M>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        match self.cell.core.admission.force_reserve() {
            Ok(()) => self.enqueue(erase(Tell(Some(msg)))),
            Err(_) => Err(self.refuse(
                erase(Tell(Some(msg))),
                UndeliverableReason::RecipientStopped,
            )),
        }
    }

    /// Sends a request and waits for the handler's reply, with no time limit.
    ///
    /// Fails with [`AskError::Closed`] if the actor stops before handling it and
    /// [`AskError::Panicked`] if the handler panics. Use [`ActorRef::ask_timeout`] to
    /// bound the wait.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the reply; the request may still be handled.
    pub async fn ask<M>(&self, msg: M) -> Result<A::Reply, AskError>
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        let _edge = WaitEdge::begin(self.id());
        if self.cell.core.admission.reserve().await.is_err() {
            return Err(AskError::Closed {
                recipient: self.id().clone(),
            });
        }
        match self.enqueue_request(msg).await {
            Ok(outcome) => outcome,
            // The reply sender vanished unanswered: the actor's task was torn down.
            Err(_) => Err(AskError::Closed {
                recipient: self.id().clone(),
            }),
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
        match tokio::time::timeout(timeout, self.ask(msg)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AskError::Timeout {
                recipient: self.id().clone(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Stops the actor after the handler running now; queued messages are not handled
    /// (tells go to the undeliverable handler, asks fail with `Closed`).
    pub fn stop(&self) {
        let _ = self.cell.core.signals.request_stop(StopRequest::Stopped);
    }

    /// Stops the actor once it has handled everything already queued. New messages are
    /// refused from now on.
    pub fn stop_gracefully(&self) {
        let core = &self.cell.core;
        // The marker takes a slot past capacity, like every item the actor will take out
        // and release; a refusal means the mailbox is already closed.
        if core.admission.force_reserve().is_err() {
            return;
        }
        core.admission.close();
        if self.cell.tx.send(Item::Drained).is_err() {
            core.admission.release();
            tracing::debug!(actor = %core.id, "graceful stop of an actor that already stopped");
        }
    }

    /// Waits until the actor has stopped for good (its mailbox drained and its watchers
    /// notified) and returns why. Returns at once if it already has.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn wait_for_stop(&self) -> StopReason {
        self.cell.core.exit.wait().await
    }

    /// Whether the actor has not yet stopped for good.
    pub fn is_alive(&self) -> bool {
        !self.cell.core.exit.is_finished()
    }

    /// A handle that does not keep the actor's cell alive.
    pub fn downgrade(&self) -> WeakActorRef<A> {
        WeakActorRef {
            id: self.id().clone(),
            cell: Arc::downgrade(&self.cell),
        }
    }

    /// A live view of the actor's mailbox depth and capacity.
    pub fn mailbox(&self) -> MailboxGauge {
        MailboxGauge(self.cell.clone())
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

    fn enqueue(&self, envelope: EnvelopeBox<A>) -> Result<(), TellError> {
        match self.cell.tx.send(Item::Message(envelope)) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::SendError(item)) => {
                self.cell.core.admission.release();
                match item {
                    Item::Message(envelope) => {
                        Err(self.refuse(envelope, UndeliverableReason::RecipientStopped))
                    }
                    _ => Err(TellError::Closed {
                        recipient: self.id().clone(),
                    }),
                }
            }
        }
    }

    fn refuse(&self, envelope: EnvelopeBox<A>, reason: UndeliverableReason) -> TellError {
        crate::proc::report_undeliverable(&self.cell.core, envelope, reason);
        TellError::Closed {
            recipient: self.id().clone(),
        }
    }
}

/// A handle that does not keep the actor's cell alive; upgrade it to send.
pub struct WeakActorRef<A: Actor> {
    id: ActorId,
    cell: Weak<Cell<A>>,
}

impl<A: Actor> Clone for WeakActorRef<A> {
    fn clone(&self) -> Self {
        WeakActorRef {
            id: self.id.clone(),
            cell: self.cell.clone(),
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

    /// A strong ref, if the actor has not stopped for good.
    pub fn upgrade(&self) -> Option<ActorRef<A>> {
        let cell = self.cell.upgrade()?;
        (!cell.core.exit.is_finished()).then_some(ActorRef { cell })
    }
}
