//! The phases of a conversation and the one table of moves between them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::ConversationError;

/// Where a conversation is in its life; see the [module docs](crate::Conversation) for the
/// diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConversationPhase {
    /// Started, but nothing sent or received yet.
    Created,
    /// Requests go out and replies come back.
    Active,
    /// The caller sends nothing more; replies to requests already sent still arrive. Ends
    /// in `Closed` once every turn is answered and every reply received.
    Completing,
    /// Closed by the caller, or completed and drained. Final.
    Closed,
    /// Ended by a participant's crash, the deadline, a compensation or the loss of every
    /// participant. Final.
    Failed,
}

impl ConversationPhase {
    /// Every phase, in the order of the diagram.
    pub const ALL: [ConversationPhase; 5] = [
        ConversationPhase::Created,
        ConversationPhase::Active,
        ConversationPhase::Completing,
        ConversationPhase::Closed,
        ConversationPhase::Failed,
    ];

    /// Whether the phase is final: nothing moves a conversation out of it.
    pub fn is_final(self) -> bool {
        matches!(self, ConversationPhase::Closed | ConversationPhase::Failed)
    }

    /// The move from this phase to `to`, if the state machine allows it.
    ///
    /// This table is the only authority on moves; every phase change of a conversation goes
    /// through it. Staying in a phase is not a move.
    ///
    /// ```
    /// use plexus_core::{ConversationError, ConversationPhase as Phase};
    ///
    /// assert_eq!(Phase::Created.transition(Phase::Active), Ok(Phase::Active));
    /// assert_eq!(
    ///     Phase::Failed.transition(Phase::Active),
    ///     Err(ConversationError::InvalidTransition { from: Phase::Failed, to: Phase::Active })
    /// );
    /// ```
    pub fn transition(self, to: ConversationPhase) -> Result<ConversationPhase, ConversationError> {
        use ConversationPhase::{Active, Closed, Completing, Created, Failed};
        match (self, to) {
            (Created, Active)
            | (Active, Completing)
            | (Created | Active | Completing, Closed)
            | (Created | Active | Completing, Failed) => Ok(to),
            _ => Err(ConversationError::InvalidTransition { from: self, to }),
        }
    }
}

impl fmt::Display for ConversationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConversationPhase::Created => "created",
            ConversationPhase::Active => "active",
            ConversationPhase::Completing => "completing",
            ConversationPhase::Closed => "closed",
            ConversationPhase::Failed => "failed",
        })
    }
}
