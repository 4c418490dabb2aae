//! Why a conversation operation did not happen.

use crate::actor::StopReason;
use crate::id::ActorId;

use super::phase::ConversationPhase;

/// Why a conversation operation failed, or why the conversation itself failed.
///
/// A failed conversation keeps the error that failed it (see
/// [`ConversationState::failure`](crate::ConversationState::failure)) and returns it from
/// every later operation, so the variants that end a conversation are also what its pending
/// and later receives see.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConversationError {
    /// The conversation was closed; nothing more happens in it.
    #[error("the conversation is closed")]
    Closed,
    /// The operation would move the conversation between phases the state machine does
    /// not connect.
    #[error("a conversation cannot move from {from} to {to}")]
    InvalidTransition {
        /// The phase the conversation was in.
        from: ConversationPhase,
        /// The phase the operation needed.
        to: ConversationPhase,
    },
    /// A participant crashed and the crash policy failed the conversation (or, under
    /// `RouteToNext`, no live participant was left to take over its requests).
    #[error("participant {participant} crashed: {reason}")]
    ParticipantCrashed {
        /// The participant that crashed.
        participant: ActorId,
        /// Why it stopped.
        reason: StopReason,
    },
    /// The conversation's deadline passed before it ended.
    #[error("the conversation's deadline of {deadline_ms} ms passed")]
    DeadlineExceeded {
        /// The deadline, in milliseconds from the start.
        deadline_ms: u64,
    },
    /// No reply came within a `receive_timeout`; the conversation goes on.
    #[error("no reply within {timeout_ms} ms")]
    Timeout {
        /// The timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// A participant crashed and the compensation for the work already done succeeded.
    #[error("participant {participant} crashed ({reason}); the work already done was compensated")]
    Compensated {
        /// The participant whose crash started the compensation.
        participant: ActorId,
        /// Why it stopped.
        reason: StopReason,
    },
    /// A participant crashed and the compensation returned an error or panicked.
    #[error("participant {participant} crashed and its compensation failed: {error}")]
    CompensationFailed {
        /// The participant whose crash started the compensation.
        participant: ActorId,
        /// What the compensation reported.
        error: String,
    },
    /// A compensation is running; the conversation takes no new requests and fails with
    /// its outcome when it ends.
    #[error("a compensation for the crash of participant {participant} is running")]
    Compensating {
        /// The participant whose crash started the compensation.
        participant: ActorId,
    },
    /// Every participant has stopped, so no request can be routed and no reply can come.
    #[error("no live participant is left")]
    NoLiveParticipants,
    /// The routing function chose no live participant (or panicked).
    #[error("the routing function chose no live participant")]
    NoRoute,
    /// A conversation without participants is a buffer, which needs the request and reply
    /// types to be the same.
    #[error(
        "a conversation without participants needs `{request}` and `{reply}` to be the same type"
    )]
    NoParticipants {
        /// The request type.
        request: &'static str,
        /// The reply type.
        reply: &'static str,
    },
    /// The same actor was added twice as a participant.
    #[error("participant {participant} was added twice")]
    DuplicateParticipant {
        /// The participant.
        participant: ActorId,
    },
    /// The actor is not a participant of this conversation.
    #[error("{participant} is not a participant of this conversation")]
    UnknownParticipant {
        /// The actor asked about.
        participant: ActorId,
    },
    /// A reply for a turn that is no longer open: it was finished already, or its
    /// participant was counted as crashed and the turn handed on or dropped.
    #[error("the turn is no longer open")]
    TurnClosed,
    /// Every handle to the conversation was dropped.
    #[error("the conversation was dropped")]
    Dropped,
    /// Starting a conversation needs a tokio runtime (it watches its participants).
    #[error("starting a conversation needs a tokio runtime, and none is running on this thread")]
    NoRuntime,
}
