//! A point-in-time view of a conversation, for callers and monitors.

use crate::actor::StopReason;
use crate::id::ActorId;

use super::error::ConversationError;
use super::phase::ConversationPhase;

/// What [`Conversation::state`](crate::Conversation::state) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConversationState {
    /// The phase.
    pub phase: ConversationPhase,
    /// Requests the caller sent.
    pub sent: u64,
    /// Replies the caller received.
    pub received: u64,
    /// Replies waiting for a receive.
    pub buffered: usize,
    /// Receives waiting for a reply now.
    pub pending_receives: usize,
    /// Turns given to participants and not answered yet.
    pub open_turns: usize,
    /// Every participant, in the order they were added.
    pub participants: Vec<ParticipantState>,
    /// What failed the conversation, when it is `Failed`.
    pub failure: Option<ConversationError>,
}

/// One participant as the conversation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantState {
    /// The participant's id.
    pub id: ActorId,
    /// Whether it runs, and if not, how it ended.
    pub liveness: Liveness,
}

/// Whether a participant runs, as last observed by its conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running, as far as the conversation has observed.
    Alive,
    /// Stopped normally with nothing left unanswered.
    Stopped(StopReason),
    /// Crashed (see [`CrashPolicy`](crate::CrashPolicy) for what counts as a crash).
    Crashed(StopReason),
}

impl Liveness {
    /// Whether the participant is still running.
    pub fn is_alive(&self) -> bool {
        matches!(self, Liveness::Alive)
    }
}
