//! Errors of the core runtime: spawning, telling and asking.

use std::fmt;

use crate::actor::StopReason;
use crate::id::ActorId;

/// An actor could not be spawned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// Another live actor of this proc has the name.
    #[error("an actor named `{name}` is already running in proc {proc}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The proc, as text.
        proc: String,
    },
    /// Spawning needs a tokio runtime and was called outside of one.
    #[error("spawning an actor needs a tokio runtime, and none is running on this thread")]
    NoRuntime,
    /// The proc has been shut down and accepts no new actors.
    #[error("proc {proc} is shut down")]
    ProcShutDown {
        /// The proc, as text.
        proc: String,
    },
}

/// A `tell` could not be delivered; the message went to the proc's undeliverable handler.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TellError {
    /// The recipient has stopped or is draining after a graceful stop.
    #[error("actor {recipient} has stopped")]
    Closed {
        /// The recipient.
        recipient: ActorId,
    },
}

/// A `try_tell` was refused.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TryTellError<M> {
    /// The mailbox is full; the message is handed back so the caller can retry or drop it.
    #[error("mailbox of {recipient} is full")]
    Full {
        /// The recipient.
        recipient: ActorId,
        /// The message that was not sent.
        message: M,
    },
    /// The recipient has stopped; the message went to the proc's undeliverable handler.
    #[error("actor {recipient} has stopped")]
    Closed {
        /// The recipient.
        recipient: ActorId,
    },
}

impl<M> TryTellError<M> {
    /// Takes the message back out of a `Full` error.
    pub fn into_message(self) -> Option<M> {
        match self {
            TryTellError::Full { message, .. } => Some(message),
            TryTellError::Closed { .. } => None,
        }
    }
}

impl<M> fmt::Debug for TryTellError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages need not be `Debug`; the recipient is what a reader needs.
        match self {
            TryTellError::Full { recipient, .. } => f
                .debug_struct("Full")
                .field("recipient", recipient)
                .finish_non_exhaustive(),
            TryTellError::Closed { recipient } => f
                .debug_struct("Closed")
                .field("recipient", recipient)
                .finish(),
        }
    }
}

/// An `ask` ended without a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// No reply came within the timeout.
    #[error("no reply from {recipient} within {timeout_ms} ms")]
    Timeout {
        /// The recipient.
        recipient: ActorId,
        /// The timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The recipient stopped before it handled the request.
    #[error("actor {recipient} stopped before replying")]
    Closed {
        /// The recipient.
        recipient: ActorId,
    },
    /// The handler panicked while handling the request.
    #[error("actor {recipient} panicked while handling the request: {message}")]
    Panicked {
        /// The recipient.
        recipient: ActorId,
        /// The panic message.
        message: String,
    },
}

/// Why a message could not be delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UndeliverableReason {
    /// The recipient had stopped (or was draining) when the message was sent.
    #[error("the recipient had stopped")]
    RecipientStopped,
    /// The message was queued, but the recipient stopped before handling it.
    #[error("the recipient stopped ({0}) before handling it")]
    StoppedBeforeHandling(StopReason),
}

/// A tell that could not be delivered, handed to the proc's undeliverable handler.
pub struct Undeliverable {
    /// The intended recipient.
    pub recipient: ActorId,
    /// The Rust type name of the message.
    pub message_type: &'static str,
    /// Why it was not delivered.
    pub reason: UndeliverableReason,
    /// The message itself, for a handler that wants to retry or persist it.
    pub message: Box<dyn std::any::Any + Send>,
}

impl fmt::Debug for Undeliverable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undeliverable")
            .field("recipient", &self.recipient)
            .field("message_type", &self.message_type)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}
