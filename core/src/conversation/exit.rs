//! Exit notifications: a caller's one-time notice of a participant's exit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tokio::sync::oneshot;

use crate::actor::StopReason;
use crate::id::ActorId;

use super::error::ConversationError;

pub(crate) type NoticeSender = oneshot::Sender<Result<ParticipantExit, ConversationError>>;

/// A participant stopped for good.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantExit {
    /// The participant.
    pub participant: ActorId,
    /// Why it stopped.
    pub reason: StopReason,
    /// Whether the conversation counted the exit as a crash (see
    /// [`CrashPolicy`](crate::CrashPolicy)).
    pub crashed: bool,
}

/// Resolves exactly once: with the participant's exit, or with the conversation's error if
/// the conversation ended (closed or failed) while the participant was still running, or
/// with [`ConversationError::Dropped`] if every handle to the conversation was dropped.
///
/// Made by [`Conversation::notify_exit`](crate::Conversation::notify_exit).
///
/// # Cancel safety
/// Cancel-safe: dropping it only gives up the notice.
#[derive(Debug)]
#[must_use = "a notice does nothing unless awaited"]
pub struct ExitNotice {
    pub(crate) rx: oneshot::Receiver<Result<ParticipantExit, ConversationError>>,
}

impl Future for ExitNotice {
    type Output = Result<ParticipantExit, ConversationError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ConversationError::Dropped)))
    }
}
