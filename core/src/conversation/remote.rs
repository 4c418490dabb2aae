//! Participants on other procs or hosts: [`RemoteParticipant`], which turns each turn into
//! a remote ask and watches the actor through a remote watch.
//!
//! A [`Turn`] holds a handle into the caller's conversation and cannot cross a process, so
//! a remote participant answers the request itself: its actor handles `Req` as an ordinary
//! [`RemoteMessage`] with `Reply = Resp`, and the reply that comes back finishes the turn.
//! Everything about crashes stays with the conversation: this file only tells it when the
//! participant is gone and why.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use futures::future::{self, BoxFuture, Either, FutureExt};
use tokio::sync::{mpsc, watch};

use crate::actor::{Handler, StopReason};
use crate::actor_ref::ActorRef;
use crate::error::{AskError, TellError};
use crate::id::ActorId;
use crate::remote::RemoteMessage;

use super::participant::{Participant, Turn};

/// The worker's end of a participant's queue of turns.
type Queued<Req, Resp> = mpsc::UnboundedReceiver<Turn<Req, Resp>>;

/// A participant reached by asking: each turn's request goes to the actor as a remote
/// ask, and the reply finishes the turn.
///
/// Made from an [`ActorRef`] to an actor that handles `Req` (a [`RemoteMessage`]) with
/// `Reply = Resp`, usually a remote ref from
/// [`Proc::lookup_remote`](crate::Proc::lookup_remote) or from a message; a local ref works
/// too. The request is encoded and sent through the route of the ref's proc, and the
/// encoded reply comes back the same way.
///
/// - **One reply per turn.** A turn is answered by the handler's reply; streamed answers
///   need a local participant handling [`Turn`].
/// - **Order.** Turns reach the actor in the order the conversation gave them, one at a
///   time: the next request goes out once the previous reply is back, as the actor's
///   mailbox would handle them. A turn that is no longer open when its time comes (the
///   conversation ended, or took it back) is not sent.
/// - **Crashes.** The actor is watched with a remote watch, so its stop is seen with its
///   reason. A lost connection counts as a crash with [`StopReason::Disconnected`]: when
///   the gateway reports the peer lost ([`Proc::peer_lost`](crate::Proc::peer_lost)), when
///   the proc's route is removed, or when an ask fails with `Disconnected` or `Unroutable`.
///   A participant that cannot take the request at all (not exposed, unknown message, a
///   decode or encode error) counts as crashed with [`StopReason::Failed`]. The
///   conversation's [`CrashPolicy`](crate::CrashPolicy) then applies as for a local crash.
/// - **Delivery.** Handing a turn over never waits; the ask waits for transport room on
///   its own. An ask that fails because the actor stopped or panicked leaves the turn
///   open, and the actor's exit settles it, as for a local participant.
///
/// ```
/// use plexus_core::{
///     Actor, Context, Conversation, Handler, Proc, ProcId, RemoteActor, RemoteHandlers,
///     RemoteMessage, RemoteParticipant,
/// };
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Offer(u32);
/// impl RemoteMessage for Offer {
///     const NAME: &'static str = "docs.Offer";
/// }
///
/// struct Seller;
/// impl Actor for Seller {}
/// impl Handler<Offer> for Seller {
///     type Reply = bool;
///     async fn handle(&mut self, Offer(price): Offer, _ctx: &mut Context<Self>) -> bool {
///         price >= 90
///     }
/// }
/// impl RemoteActor for Seller {
///     fn remote_handlers() -> RemoteHandlers<Self> {
///         RemoteHandlers::new().ask::<Offer>()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proc = Proc::new(ProcId::unique("docs"));
/// // Here a local ref; a ref from `Proc::lookup_remote` is used the same way.
/// let seller = proc.spawn("seller", Seller)?;
/// let talk = Conversation::<Offer, bool>::builder()
///     .participant(RemoteParticipant::new(seller))
///     .start()?;
/// talk.send(Offer(95)).await?;
/// assert!(talk.receive().await?);
/// # Ok(()) }
/// ```
pub struct RemoteParticipant<A: Handler<Req>, Req: Send + 'static> {
    target: ActorRef<A>,
    /// The turns waiting for their ask; the worker drains them in order.
    queue: mpsc::UnboundedSender<Turn<Req, A::Reply>>,
    /// Taken by the first delivery, which starts the worker (a runtime runs by then).
    pending: Mutex<Option<Queued<Req, A::Reply>>>,
    /// Set once, when the participant is found unusable: why it counts as exited.
    lost: Arc<watch::Sender<Option<StopReason>>>,
}

impl<A, Req> RemoteParticipant<A, Req>
where
    A: Handler<Req>,
    Req: RemoteMessage,
    A::Reply: Send + 'static,
{
    /// A participant that asks `target` for each turn.
    pub fn new(target: ActorRef<A>) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let (lost, _) = watch::channel(None);
        RemoteParticipant {
            target,
            queue,
            pending: Mutex::new(Some(pending)),
            lost: Arc::new(lost),
        }
    }

    /// The ref turns are asked through.
    pub fn actor_ref(&self) -> &ActorRef<A> {
        &self.target
    }

    /// Starts the worker on the first delivery; fails only when no tokio runtime runs here
    /// (the worker stays unstarted, for a later delivery to start).
    fn start_worker(&self) -> Result<(), TellError> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_none() {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TellError::Unroutable {
            recipient: self.target.id().clone(),
            reason: "no tokio runtime runs here to ask the participant".to_owned(),
        })?;
        if let Some(turns) = pending.take() {
            runtime.spawn(ask_each(self.target.clone(), turns, self.lost.clone()));
        }
        Ok(())
    }
}

impl<A, Req> Participant<Req, A::Reply> for RemoteParticipant<A, Req>
where
    A: Handler<Req>,
    Req: RemoteMessage,
    A::Reply: Send + 'static,
{
    fn id(&self) -> &ActorId {
        self.target.id()
    }

    fn deliver(&self, turn: Turn<Req, A::Reply>) -> BoxFuture<'_, Result<(), TellError>> {
        // Everything happens in the first poll, so a future dropped unpolled delivered
        // nothing (the cancel-safety `Participant::deliver` asks for).
        Box::pin(async move {
            if let Some(reason) = self.lost.borrow().clone() {
                return Err(lost_error(self.target.id(), &reason));
            }
            self.start_worker()?;
            self.queue.send(turn).map_err(|_| TellError::Disconnected {
                recipient: self.target.id().clone(),
            })
        })
    }

    fn exited(&self) -> BoxFuture<'static, StopReason> {
        let target = self.target.clone();
        let mut stopped = async move { target.wait_for_stop().await }.boxed();
        // One poll now registers the remote watch before the conversation goes on, so a
        // peer lost right after `start` already finds it.
        let waker = futures::task::noop_waker();
        if let Poll::Ready(reason) = stopped.poll_unpin(&mut TaskContext::from_waker(&waker)) {
            return future::ready(reason).boxed();
        }
        let mut lost = self.lost.subscribe();
        let found_unusable = async move {
            let found = lost
                .wait_for(Option::is_some)
                .await
                .map(|reason| reason.clone().unwrap_or(StopReason::Disconnected));
            match found {
                Ok(reason) => reason,
                // The participant is gone, and with it the conversation that watches it.
                Err(_) => future::pending().await,
            }
        };
        Box::pin(async move {
            match future::select(stopped, Box::pin(found_unusable)).await {
                Either::Left((reason, _)) | Either::Right((reason, _)) => reason,
            }
        })
    }
}

impl<A: Handler<Req>, Req: Send + 'static> fmt::Debug for RemoteParticipant<A, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteParticipant")
            .field("target", &self.target)
            .field("lost", &*self.lost.borrow())
            .finish_non_exhaustive()
    }
}

/// The worker: asks for one turn at a time, in order, until the participant is dropped or
/// found unusable. Turns it does not answer stay open for the participant's exit to settle.
async fn ask_each<A, Req>(
    target: ActorRef<A>,
    mut turns: Queued<Req, A::Reply>,
    lost: Arc<watch::Sender<Option<StopReason>>>,
) where
    A: Handler<Req>,
    Req: RemoteMessage,
    A::Reply: Send + 'static,
{
    while let Some(turn) = turns.recv().await {
        let (request, reply) = turn.into_parts();
        if !reply.is_open() {
            // Closed, taken back or handed on while it waited here: asking would make the
            // actor do work whose answer is refused.
            tracing::debug!(participant = %target.id(), "turn no longer open; not asked");
            continue;
        }
        match target.ask(request).await {
            Ok(answer) => {
                if let Err(error) = reply.finish(answer) {
                    tracing::debug!(participant = %target.id(), %error, "late reply refused");
                }
            }
            Err(error) => {
                let Some(reason) = unusable(&error) else {
                    // The actor stopped or panicked: its watch reports how, and its exit
                    // settles this turn.
                    tracing::debug!(participant = %target.id(), %error, "turn not answered");
                    continue;
                };
                tracing::warn!(participant = %target.id(), %error, %reason, "participant unusable");
                lost.send_if_modified(|slot| {
                    let first = slot.is_none();
                    if first {
                        *slot = Some(reason);
                    }
                    first
                });
                // Later turns are refused by `deliver`; queued ones stay open for the exit.
                return;
            }
        }
    }
}

/// Why a failed ask makes the participant unusable, or `None` when its exit will tell.
fn unusable(error: &AskError) -> Option<StopReason> {
    match error {
        AskError::Disconnected { .. } | AskError::Unroutable { .. } => {
            Some(StopReason::Disconnected)
        }
        AskError::NotExposed { .. }
        | AskError::NotRemote { .. }
        | AskError::Unhandled { .. }
        | AskError::Decode { .. }
        | AskError::Encode { .. }
        | AskError::Timeout { .. } => Some(StopReason::Failed(error.to_string())),
        AskError::Closed { .. } | AskError::NotFound { .. } | AskError::Panicked { .. } => None,
    }
}

fn lost_error(recipient: &ActorId, reason: &StopReason) -> TellError {
    match reason {
        StopReason::Disconnected => TellError::Disconnected {
            recipient: recipient.clone(),
        },
        other => TellError::Unroutable {
            recipient: recipient.clone(),
            reason: other.to_string(),
        },
    }
}
