//! Type-erased messages in a mailbox: a tell, a local ask or a remote ask, with the code
//! that runs its handler.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::BoxFuture;
use smallbox::SmallBox;
use smallbox::space::S2;
use tokio::sync::oneshot;

use crate::actor::{Handler, PanicError};
use crate::context::Context;
use crate::dispatch::{RemoteAskError, ReplySlot, encode_reply};
use crate::error::{AskError, Undeliverable, UndeliverableReason};
use crate::id::ActorId;
use crate::remote::RemoteMessage;

/// One message for an actor of type `A`, whatever its message type.
///
/// Envelopes live in a [`SmallBox`]: a small message (up to two words, e.g. a `u64` tell)
/// sits inline in its mailbox slot, so sending it allocates nothing. Because a small box
/// cannot be consumed by value, the methods take the message out of `&mut self`; each
/// envelope is used once.
pub(crate) trait Envelope<A: crate::actor::Actor>: Send {
    /// Takes the message out and runs the handler; a panic in it is caught and returned.
    /// Reports the handler's start to the actor's probe, if any, before returning.
    fn handle<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, Result<(), PanicError>>;

    /// The message will never be handled: an ask is answered with an error, a tell is
    /// returned for the undeliverable handler.
    fn undeliverable(
        &mut self,
        recipient: &ActorId,
        reason: UndeliverableReason,
    ) -> Option<Undeliverable>;
}

/// A type-erased envelope, inline when small.
pub(crate) type EnvelopeBox<A> = SmallBox<dyn Envelope<A>, S2>;

/// Erases an envelope's type.
pub(crate) fn erase<A, E>(envelope: E) -> EnvelopeBox<A>
where
    A: crate::actor::Actor,
    E: Envelope<A> + 'static,
{
    smallbox::smallbox!(envelope)
}

/// What travels through an actor's mailbox.
pub(crate) enum Item<A: crate::actor::Actor> {
    /// A message to handle.
    Message(EnvelopeBox<A>),
    /// A linked or watched actor stopped; ordered after every message it sent. Boxed to
    /// keep every mailbox slot two words wide.
    LinkDied(Box<crate::actor::LinkDied>),
    /// Graceful stop: everything queued before it is handled first.
    Drained,
}

/// Runs one handler with its panic caught, so a panic becomes a value the run loop and
/// the asker can act on.
async fn run_handler<A, M>(
    actor: &mut A,
    msg: M,
    ctx: &mut Context<A>,
) -> Result<A::Reply, PanicError>
where
    A: Handler<M>,
    M: Send + 'static,
{
    AssertUnwindSafe(actor.handle(msg, ctx))
        .catch_unwind()
        .await
        .map_err(PanicError::from_payload)
}

/// Tells the actor's probe, if it has one, that a handler for `M` starts. Called from the
/// typed envelope, where the type's name is a constant, rather than by the run loop
/// through a call for the name: a monitored message costs one dynamic call less.
fn report_start<A: crate::actor::Actor, M>(ctx: &Context<A>) {
    if let Some(probe) = &ctx.probe {
        probe.handler_started(std::any::type_name::<M>());
    }
}

pub(crate) struct Tell<M>(pub(crate) Option<M>);

impl<A, M> Envelope<A> for Tell<M>
where
    A: Handler<M>,
    M: Send + 'static,
{
    fn handle<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, Result<(), PanicError>> {
        let msg = self.0.take();
        report_start::<A, M>(ctx);
        Box::pin(async move {
            let Some(msg) = msg else { return Ok(()) };
            run_handler(actor, msg, ctx).await.map(drop)
        })
    }

    fn undeliverable(
        &mut self,
        recipient: &ActorId,
        reason: UndeliverableReason,
    ) -> Option<Undeliverable> {
        let msg = self.0.take()?;
        Some(Undeliverable {
            recipient: recipient.clone(),
            message_type: std::any::type_name::<M>(),
            reason,
            message: Box::new(msg),
        })
    }
}

/// Where an ask's outcome goes. Each way answers once, consuming itself.
pub(crate) trait AskReply<M, R>: Send + 'static {
    /// The handler returned `reply`.
    fn replied(self, reply: R);
    /// The handler of `actor` panicked with `message`.
    fn panicked(self, actor: &ActorId, message: String);
    /// The ask was not handled: `actor` stopped first.
    fn closed(self, actor: &ActorId);
}

/// An ask made in this process: the asker awaits the other end of the channel. The asker
/// may have timed out and left; that is its choice, not a loss, so sends are not checked.
impl<M, R: Send + 'static> AskReply<M, R> for oneshot::Sender<Result<R, AskError>> {
    fn replied(self, reply: R) {
        let _ = self.send(Ok(reply));
    }

    fn panicked(self, actor: &ActorId, message: String) {
        let _ = self.send(Err(AskError::Panicked {
            recipient: actor.clone(),
            message,
        }));
    }

    fn closed(self, actor: &ActorId) {
        let _ = self.send(Err(AskError::Closed {
            recipient: actor.clone(),
        }));
    }
}

/// An ask that arrived over the network: the actor's own task encodes the reply and calls
/// the reply callback when the handler returns.
///
/// Answering here, rather than from a task that awaits a local reply channel, spares each
/// remote ask a spawned task and a channel, and keeps the reply on the thread that ran the
/// handler: a spawn would take tokio's "run next" slot from the woken actor and bounce the
/// work between worker threads. The [`ReplySlot`] answers exactly once on every path: here
/// on return or panic, `Closed` when undeliverable, `Abandoned` if the envelope or the
/// handler's future is dropped unanswered (a runtime shutting down).
impl<M: RemoteMessage, R: serde::Serialize> AskReply<M, R> for ReplySlot {
    fn replied(self, reply: R) {
        self.answer(encode_reply::<M, _>(&reply));
    }

    fn panicked(self, actor: &ActorId, message: String) {
        self.answer(Err(RemoteAskError::Panicked {
            actor: actor.clone(),
            message,
        }));
    }

    fn closed(self, actor: &ActorId) {
        self.answer(Err(RemoteAskError::Closed {
            actor: actor.clone(),
        }));
    }
}

/// An ask: the message and where its outcome goes (see [`AskReply`]).
pub(crate) struct Ask<M, P>(pub(crate) Option<(M, P)>);

impl<A, M, P> Envelope<A> for Ask<M, P>
where
    A: Handler<M>,
    M: Send + 'static,
    P: AskReply<M, A::Reply>,
{
    fn handle<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> BoxFuture<'a, Result<(), PanicError>> {
        let request = self.0.take();
        report_start::<A, M>(ctx);
        Box::pin(async move {
            let Some((msg, reply)) = request else {
                return Ok(());
            };
            match run_handler(actor, msg, ctx).await {
                Ok(answer) => {
                    reply.replied(answer);
                    Ok(())
                }
                Err(panic) => {
                    reply.panicked(ctx.id(), panic.message.clone());
                    Err(panic)
                }
            }
        })
    }

    fn undeliverable(
        &mut self,
        recipient: &ActorId,
        _reason: UndeliverableReason,
    ) -> Option<Undeliverable> {
        if let Some((_, reply)) = self.0.take() {
            reply.closed(recipient);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe;
    impl crate::actor::Actor for Probe {}

    /// A mailbox slot is five words: an inline two-word message, the envelope's vtable and
    /// data pointers, and the item tag. The benchmark sizes the mailbox buffer from this.
    #[test]
    fn mailbox_slot_is_five_words() {
        assert_eq!(
            std::mem::size_of::<Item<Probe>>(),
            5 * std::mem::size_of::<usize>()
        );
    }
}
