//! Conversations: multi-party request/reply exchanges with their own lifecycle.
//!
//! ```text
//!            send / receive              complete               all turns answered
//!  Created ─────────────────▶ Active ─────────────▶ Completing ───and replies received──▶ Closed
//!     │                         │                       │                                   ▲
//!     └─────────────────────────┴──────── close ────────┴───────────────────────────────────┘
//!
//!  Created, Active, Completing ── crash (Fail, Compensate), deadline, no participant left ──▶ Failed
//!  Closed and Failed are final: nothing moves a conversation out of them.
//! ```
//!
//! The phase table is [`ConversationPhase::transition`]; `inner.rs` applies it in one
//! place, under the conversation's lock, together with routing and crash handling.
//! `shared.rs` holds the lock and the tasks (participant watchers, deadline timer,
//! compensation); this file is the caller's handle.
//!
//! A receive never holds a reply it could lose: replies wait in the conversation's buffer,
//! and a receive takes one only in the poll that returns it. A receive that times out or is
//! dropped leaves nothing behind, so the next reply goes to the next receive.
//!
//! Participants may live on other procs or hosts. A remote actor takes part through
//! [`RemoteParticipant`] (`remote.rs`): each turn's request is sent as a remote ask
//! through the gateway, and its reply finishes the turn. The actor is watched with a
//! remote watch, so its stop is seen with its own reason; a lost connection to its
//! location ([`Proc::peer_lost`](crate::Proc::peer_lost), a removed route, or an ask that
//! fails with `Disconnected`) counts as a crash with
//! [`StopReason::Disconnected`](crate::StopReason::Disconnected). From there the crash
//! policy, the buffered replies, the state and the exit notices behave exactly as for a
//! local crash: the conversation sees only an exit and its reason.

mod builder;
mod error;
mod exit;
mod inner;
mod participant;
mod phase;
mod policy;
mod remote;
mod shared;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::id::ActorId;

pub use builder::ConversationBuilder;
pub use error::ConversationError;
pub use exit::{ExitNotice, ParticipantExit};
pub use participant::{ConversationReply, Participant, Turn};
pub use phase::ConversationPhase;
pub use policy::{Compensation, CompletedTurn, CrashPolicy, CrashReport, Routing};
pub use remote::RemoteParticipant;
pub use state::{ConversationState, Liveness, ParticipantState};

use inner::Sent;
use participant::TurnId;
use shared::Shared;

/// A request/reply exchange between a caller and participant actors, with its own
/// lifecycle.
///
/// ```text
///            send / receive              complete               all turns answered
///  Created ─────────────────▶ Active ─────────────▶ Completing ───and replies received──▶ Closed
///     │                         │                       │                                   ▲
///     └─────────────────────────┴──────── close ────────┴───────────────────────────────────┘
///
///  Created, Active, Completing ── crash (Fail, Compensate), deadline, no participant left ──▶ Failed
/// ```
///
/// - [`send`](Self::send) routes a request to participants (see [`Routing`]); each gets a
///   [`Turn`] and answers with one or more replies through it. [`receive`](Self::receive)
///   yields those replies, never the caller's own requests.
/// - Without participants (and with `Req` = `Resp`) the conversation is a buffer:
///   `receive` returns what `send` put in, in order.
/// - Participants are watched: a crash is handled by the [`CrashPolicy`]. Replies that
///   arrived before a failure are still received, then the failure. A participant on
///   another proc or host ([`RemoteParticipant`]) whose connection is lost counts as
///   crashed with [`StopReason::Disconnected`](crate::StopReason::Disconnected).
/// - [`complete`](Self::complete) ends the sending; the conversation closes by itself once
///   every turn is answered and every reply received. [`close`](Self::close) ends it at
///   once. `Closed` and `Failed` are final; later operations return `Closed` or the
///   failure.
/// - [`notify_exit`](Self::notify_exit) gives one notification of a participant's exit.
///
/// `Req` is `Clone` because a request is copied for a broadcast and kept until answered,
/// to be re-sent when a participant crashes.
///
/// Handles are cheap to clone and all refer to the same conversation. When the last one is
/// dropped, the conversation stops watching its participants and refuses their replies.
///
/// ```
/// use plexus_core::{Actor, Context, Conversation, ConversationPhase, Handler, Proc, ProcId, Turn};
///
/// struct Seller { floor: u32 }
/// impl Actor for Seller {}
///
/// impl Handler<Turn<u32, String>> for Seller {
///     type Reply = ();
///     async fn handle(&mut self, turn: Turn<u32, String>, _ctx: &mut Context<Self>) {
///         let offer = *turn.request();
///         let answer = if offer >= self.floor {
///             format!("deal at {offer}")
///         } else {
///             format!("counter at {}", self.floor)
///         };
///         let _ = turn.reply(answer);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proc = Proc::new(ProcId::unique("docs"));
/// let seller = proc.spawn("seller", Seller { floor: 90 })?;
/// let talk = Conversation::<u32, String>::builder().participant(seller).start()?;
///
/// talk.send(80).await?;
/// assert_eq!(talk.receive().await?, "counter at 90");
/// talk.send(90).await?;
/// assert_eq!(talk.receive().await?, "deal at 90");
///
/// talk.complete()?; // nothing is open, so it closes at once
/// assert_eq!(talk.state().phase, ConversationPhase::Closed);
/// # Ok(()) }
/// ```
pub struct Conversation<Req, Resp> {
    shared: Arc<Shared<Req, Resp>>,
}

impl<Req, Resp> Clone for Conversation<Req, Resp> {
    fn clone(&self) -> Self {
        Conversation {
            shared: self.shared.clone(),
        }
    }
}

impl<Req, Resp> Conversation<Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    /// A builder to add participants, routing, crash policy and deadline.
    pub fn builder() -> ConversationBuilder<Req, Resp> {
        ConversationBuilder::new()
    }

    /// Sends a request: to the participants the routing picks, or into the buffer when
    /// there are none. Moves a `Created` conversation to `Active`.
    ///
    /// Waits for room in each chosen participant's mailbox. A participant that has stopped
    /// does not fail the send; its crash policy decides what becomes of the request.
    ///
    /// Fails with the conversation's error once it has ended, with
    /// [`InvalidTransition`](ConversationError::InvalidTransition) while `Completing`, with
    /// [`Compensating`](ConversationError::Compensating) while a compensation runs, and with
    /// [`NoLiveParticipants`](ConversationError::NoLiveParticipants) or
    /// [`NoRoute`](ConversationError::NoRoute) when no participant can take it.
    ///
    /// # Cancel safety
    /// If the future is dropped before it completes, the participants it had not reached yet
    /// never get the request, and their turns are withdrawn, so nothing waits for their
    /// answers. Participants already reached keep their turns.
    pub async fn send(&self, request: Req) -> Result<(), ConversationError> {
        let sent = self
            .shared
            .update(|inner| inner.begin_send(request, self.shared.routing()))?;
        let deliveries = match sent {
            Sent::Buffered => {
                self.shared.replies.notify_one();
                return Ok(());
            }
            Sent::Turns(deliveries) => deliveries,
        };
        let mut undelivered = Undelivered {
            shared: &self.shared,
            turns: deliveries.iter().map(|d| d.turn).collect(),
            delivered: 0,
        };
        for delivery in deliveries {
            self.shared.deliver(delivery).await;
            undelivered.delivered += 1;
        }
        Ok(())
    }

    /// Waits for the next reply.
    ///
    /// Moves a `Created` conversation to `Active`. On a failed conversation, returns the
    /// replies that arrived before the failure, then the failure. Fails with
    /// [`Closed`](ConversationError::Closed) when the conversation is closed, also while
    /// waiting; a completing conversation closes once its last reply has been received.
    ///
    /// # Cancel safety
    /// Cancel-safe: a reply leaves the conversation only in the poll that returns it, so a
    /// dropped receive loses nothing and the next receive gets the reply.
    pub async fn receive(&self) -> Result<Resp, ConversationError> {
        let _waiting = Waiting::new(&self.shared);
        loop {
            let notified = self.shared.replies.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the buffer is checked, so a reply in between wakes it.
            notified.as_mut().enable();
            if let Some(reply) = self.shared.update(|inner| inner.take_reply())? {
                return Ok(reply);
            }
            notified.await;
        }
    }

    /// Like [`receive`](Self::receive), failing with
    /// [`Timeout`](ConversationError::Timeout) when no reply comes within `timeout`. A
    /// timeout does not end the conversation, and the receive leaves no waiter behind: the
    /// next reply goes to the next receive.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`receive`](Self::receive).
    pub async fn receive_timeout(&self, timeout: Duration) -> Result<Resp, ConversationError> {
        match tokio::time::timeout(timeout, self.receive()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ConversationError::Timeout {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Ends the sending: `Active` → `Completing`. Replies to requests already sent still
    /// arrive; the conversation closes by itself once every turn is answered and every
    /// reply received (at once, if that is already so).
    ///
    /// Fails with [`InvalidTransition`](ConversationError::InvalidTransition) from
    /// `Created` or `Completing`, and with the conversation's error once it has ended.
    pub fn complete(&self) -> Result<(), ConversationError> {
        self.shared.update(|inner| inner.complete())
    }

    /// Closes the conversation at once: pending receives fail with
    /// [`Closed`](ConversationError::Closed), buffered replies are dropped, open turns are
    /// closed (their late replies are refused), and every later operation fails with
    /// `Closed`. A running compensation still runs to its end.
    ///
    /// Fails with `Closed` if already closed, and with the failure if it has failed.
    pub fn close(&self) -> Result<(), ConversationError> {
        self.shared.update(|inner| inner.close())
    }

    /// The conversation's phase, counts, participants and failure, now.
    pub fn state(&self) -> ConversationState {
        self.shared.lock().snapshot()
    }

    /// A notice of `participant`'s exit, delivered exactly once: at once if the exit is
    /// already known, else when it happens, also when the exit races this call. If the
    /// conversation ends while the participant still runs, the notice resolves with the
    /// conversation's error instead.
    ///
    /// Fails with [`UnknownParticipant`](ConversationError::UnknownParticipant) for an
    /// actor that is not a participant.
    pub fn notify_exit(&self, participant: &ActorId) -> Result<ExitNotice, ConversationError> {
        self.shared.lock().register_notice(participant)
    }
}

impl<Req, Resp> fmt::Debug for Conversation<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversation")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Counts a receive as pending for as long as it waits, however it ends.
struct Waiting<'a, Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    shared: &'a Shared<Req, Resp>,
}

impl<'a, Req, Resp> Waiting<'a, Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    fn new(shared: &'a Shared<Req, Resp>) -> Self {
        shared.lock().wait_started();
        Waiting { shared }
    }
}

impl<Req, Resp> Drop for Waiting<'_, Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    fn drop(&mut self) {
        self.shared.lock().wait_ended();
    }
}

/// Withdraws the turns of a send that was dropped before reaching every participant.
struct Undelivered<'a, Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    shared: &'a Shared<Req, Resp>,
    turns: Vec<TurnId>,
    delivered: usize,
}

impl<Req, Resp> Drop for Undelivered<'_, Req, Resp>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(rest) = self.turns.get(self.delivered..) {
            if !rest.is_empty() {
                self.shared.update(|inner| inner.withdraw(rest));
            }
        }
    }
}
