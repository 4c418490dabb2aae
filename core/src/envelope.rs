//! Type-erased messages in a mailbox: a tell or an ask, with the code that runs its handler.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::actor::{Handler, PanicError};
use crate::context::Context;
use crate::error::{AskError, Undeliverable, UndeliverableReason};
use crate::id::ActorId;

/// One message for an actor of type `A`, whatever its message type.
pub(crate) trait Envelope<A: crate::actor::Actor>: Send {
    /// The Rust type name of the message, for monitors and undeliverable reports.
    fn message_type(&self) -> &'static str;

    /// Runs the handler; a panic in it is caught and returned.
    fn handle<'a>(
        self: Box<Self>,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, Result<(), PanicError>>;

    /// The message will never be handled: an ask is answered with an error, a tell is
    /// returned for the undeliverable handler.
    fn undeliverable(
        self: Box<Self>,
        recipient: &ActorId,
        reason: UndeliverableReason,
    ) -> Option<Undeliverable>;
}

/// What travels through an actor's mailbox.
pub(crate) enum Item<A: crate::actor::Actor> {
    /// A message to handle.
    Message(Box<dyn Envelope<A>>),
    /// A linked or watched actor stopped; ordered after every message it sent. Boxed to
    /// keep every mailbox slot two words wide.
    LinkDied(Box<crate::actor::LinkDied>),
    /// Graceful stop: everything queued before it is handled first.
    Drained,
}

pub(crate) struct Tell<M>(pub(crate) M);

impl<A, M> Envelope<A> for Tell<M>
where
    A: Handler<M>,
    M: Send + 'static,
{
    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn handle<'a>(
        self: Box<Self>,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, Result<(), PanicError>> {
        let Tell(msg) = *self;
        Box::pin(async move {
            AssertUnwindSafe(actor.handle(msg, ctx))
                .catch_unwind()
                .await
                .map(drop)
                .map_err(PanicError::from_payload)
        })
    }

    fn undeliverable(
        self: Box<Self>,
        recipient: &ActorId,
        reason: UndeliverableReason,
    ) -> Option<Undeliverable> {
        Some(Undeliverable {
            recipient: recipient.clone(),
            message_type: std::any::type_name::<M>(),
            reason,
            message: Box::new(self.0),
        })
    }
}

pub(crate) struct Ask<M, R> {
    pub(crate) msg: M,
    pub(crate) reply: oneshot::Sender<Result<R, AskError>>,
}

impl<A, M> Envelope<A> for Ask<M, A::Reply>
where
    A: Handler<M>,
    M: Send + 'static,
{
    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn handle<'a>(
        self: Box<Self>,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, Result<(), PanicError>> {
        let Ask { msg, reply } = *self;
        Box::pin(async move {
            match AssertUnwindSafe(actor.handle(msg, ctx))
                .catch_unwind()
                .await
            {
                Ok(answer) => {
                    // The asker may have timed out and left; that is its choice, not a loss.
                    let _ = reply.send(Ok(answer));
                    Ok(())
                }
                Err(payload) => {
                    let panic = PanicError::from_payload(payload);
                    let _ = reply.send(Err(AskError::Panicked {
                        recipient: ctx.id().clone(),
                        message: panic.message.clone(),
                    }));
                    Err(panic)
                }
            }
        })
    }

    fn undeliverable(
        self: Box<Self>,
        recipient: &ActorId,
        _reason: UndeliverableReason,
    ) -> Option<Undeliverable> {
        let _ = self.reply.send(Err(AskError::Closed {
            recipient: recipient.clone(),
        }));
        None
    }
}
