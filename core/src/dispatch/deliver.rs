//! Typed delivery of a decoded remote message: telling or asking without waiting, and the
//! pending delivery that a full mailbox hands back for the flow's pusher.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::actor::{Actor, Handler, PanicError};
use crate::cell::Cell;
use crate::envelope::{Ask, erase};
use crate::error::TryTellError;
use crate::id::ActorId;
use crate::mailbox::Refused;
use crate::remote::RemoteMessage;

use super::{DeliveryError, RemoteAskError, RemoteReply};

/// A decoded remote message that found its actor's mailbox full.
///
/// Retry it with [`try_deliver`](PendingDelivery::try_deliver) (never waits) or push it
/// with [`deliver`](PendingDelivery::deliver) (waits for room) from the flow's own task.
/// Dropping an ask's pending delivery answers its reply with
/// [`RemoteAskError::Abandoned`], so the requester always hears back.
pub struct PendingDelivery {
    actor: ActorId,
    message: &'static str,
    retry: Box<dyn Retry>,
}

impl fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("actor", &self.actor)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl PendingDelivery {
    /// The recipient.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The wire name of the message.
    pub fn message_name(&self) -> &'static str {
        self.message
    }

    /// Enqueues the message if the mailbox has room now; otherwise returns `Full` with the
    /// message again. Never waits.
    pub fn try_deliver(self) -> Result<(), DeliveryError> {
        self.retry.try_deliver()
    }

    /// Waits for room in the mailbox, then enqueues the message.
    ///
    /// Messages pushed one after another by one task keep their order.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropping the future drops the message (an ask's reply is answered
    /// with [`RemoteAskError::Abandoned`]).
    pub async fn deliver(self) -> Result<(), DeliveryError> {
        self.retry.deliver().await
    }
}

/// The typed half of a pending delivery.
trait Retry: Send {
    fn try_deliver(self: Box<Self>) -> Result<(), DeliveryError>;
    fn deliver(self: Box<Self>) -> BoxFuture<'static, Result<(), DeliveryError>>;
}

/// A reply callback that is called exactly once: explicitly, or with `Abandoned` when the
/// request is dropped on any path (a discarded retry, a runtime shutting down).
pub(crate) struct ReplySlot(pub(super) Option<RemoteReply>);

impl ReplySlot {
    pub(crate) fn answer(mut self, outcome: Result<Vec<u8>, RemoteAskError>) {
        if let Some(reply) = self.0.take() {
            call(reply, outcome);
        }
    }
}

/// Answers an ask's reply, if there is one, with the wire form of `error` (see
/// [`DeliveryError::ask_answer`]), and returns `error`: one place for every refusal.
pub(crate) fn refuse(reply: Option<ReplySlot>, error: DeliveryError) -> DeliveryError {
    if let (Some(reply), Some(answer)) = (reply, error.ask_answer()) {
        reply.answer(Err(answer));
    }
    error
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            call(reply, Err(RemoteAskError::Abandoned));
        }
    }
}

/// Calls a reply callback with its panic caught. The callback is the caller's code and
/// runs on the answering actor's task, in a run loop's final stop or while a handler's
/// future unwinds: a panic in it must not take the actor down, nor abort the process.
fn call(reply: RemoteReply, outcome: Result<Vec<u8>, RemoteAskError>) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(move || reply(outcome))) {
        let panic = PanicError::from_payload(payload);
        tracing::error!(panic = %panic.message, "a remote ask's reply callback panicked");
    }
}

/// The wire form of a handler's reply to a remote ask of `M`.
pub(crate) fn encode_reply<M, R>(reply: &R) -> Result<Vec<u8>, RemoteAskError>
where
    M: RemoteMessage,
    R: Serialize,
{
    postcard::to_allocvec(reply).map_err(|error| RemoteAskError::Encode {
        message: M::NAME.to_owned(),
        reason: error.to_string(),
    })
}

fn decode<M: RemoteMessage>(payload: &[u8]) -> Result<M, DeliveryError> {
    postcard::from_bytes(payload).map_err(|error| DeliveryError::Decode {
        message: M::NAME,
        reason: error.to_string(),
    })
}

pub(super) fn decode_and_tell<A, M>(
    actor: &Arc<Cell<A>>,
    payload: &[u8],
) -> Result<(), DeliveryError>
where
    A: Handler<M>,
    M: RemoteMessage,
{
    let message = decode::<M>(payload)?;
    try_tell(actor, message)
}

fn try_tell<A, M>(actor: &Arc<Cell<A>>, message: M) -> Result<(), DeliveryError>
where
    A: Handler<M>,
    M: RemoteMessage,
{
    match actor.try_tell(message) {
        Ok(()) => Ok(()),
        Err(TryTellError::Full { message, .. }) => Err(DeliveryError::Full {
            pending: Box::new(PendingDelivery {
                actor: actor.core.id.clone(),
                message: M::NAME,
                retry: Box::new(PendingTell {
                    actor: actor.clone(),
                    message,
                }),
            }),
        }),
        Err(_) => Err(DeliveryError::Closed {
            actor: actor.core.id.clone(),
        }),
    }
}

struct PendingTell<A: Actor, M> {
    actor: Arc<Cell<A>>,
    message: M,
}

impl<A, M> Retry for PendingTell<A, M>
where
    A: Handler<M>,
    M: RemoteMessage,
{
    fn try_deliver(self: Box<Self>) -> Result<(), DeliveryError> {
        try_tell(&self.actor, self.message)
    }

    fn deliver(self: Box<Self>) -> BoxFuture<'static, Result<(), DeliveryError>> {
        Box::pin(async move {
            let PendingTell { actor, message } = *self;
            actor
                .tell(message)
                .await
                .map_err(|_| DeliveryError::Closed {
                    actor: actor.core.id.clone(),
                })
        })
    }
}

pub(super) fn decode_and_ask<A, M>(
    actor: &Arc<Cell<A>>,
    payload: &[u8],
    reply: ReplySlot,
) -> Result<(), DeliveryError>
where
    A: Handler<M>,
    M: RemoteMessage,
    A::Reply: Serialize,
{
    // Promise 6: a request that cannot be decoded still gets an answer.
    let message = match decode::<M>(payload) {
        Ok(message) => message,
        Err(error) => return Err(refuse(Some(reply), error)),
    };
    try_ask(actor, message, reply)
}

fn try_ask<A, M>(actor: &Arc<Cell<A>>, message: M, reply: ReplySlot) -> Result<(), DeliveryError>
where
    A: Handler<M>,
    M: RemoteMessage,
    A::Reply: Serialize,
{
    match actor.core.admission.try_reserve() {
        Ok(()) => {
            enqueue_ask(actor, message, reply);
            Ok(())
        }
        Err(Refused::Full) => Err(DeliveryError::Full {
            pending: Box::new(PendingDelivery {
                actor: actor.core.id.clone(),
                message: M::NAME,
                retry: Box::new(PendingAsk {
                    actor: actor.clone(),
                    message,
                    reply,
                }),
            }),
        }),
        Err(Refused::Closed) => Err(refuse(
            Some(reply),
            DeliveryError::Closed {
                actor: actor.core.id.clone(),
            },
        )),
    }
}

/// Enqueues an ask into a slot already reserved. The actor's task answers it (see
/// [`Ask`] with a [`ReplySlot`]); a mailbox closed meanwhile answers `Closed` through the refused
/// envelope.
fn enqueue_ask<A, M>(actor: &Arc<Cell<A>>, message: M, reply: ReplySlot)
where
    A: Handler<M>,
    M: RemoteMessage,
    A::Reply: Serialize,
{
    let _ = actor.enqueue(erase(Ask(Some((message, reply)))));
}

struct PendingAsk<A: Actor, M> {
    actor: Arc<Cell<A>>,
    message: M,
    reply: ReplySlot,
}

impl<A, M> Retry for PendingAsk<A, M>
where
    A: Handler<M>,
    M: RemoteMessage,
    A::Reply: Serialize,
{
    fn try_deliver(self: Box<Self>) -> Result<(), DeliveryError> {
        let PendingAsk {
            actor,
            message,
            reply,
        } = *self;
        try_ask(&actor, message, reply)
    }

    fn deliver(self: Box<Self>) -> BoxFuture<'static, Result<(), DeliveryError>> {
        Box::pin(async move {
            let PendingAsk {
                actor,
                message,
                reply,
            } = *self;
            if actor.core.admission.reserve().await.is_err() {
                let closed = DeliveryError::Closed {
                    actor: actor.core.id.clone(),
                };
                return Err(refuse(Some(reply), closed));
            }
            enqueue_ask(&actor, message, reply);
            Ok(())
        })
    }
}
