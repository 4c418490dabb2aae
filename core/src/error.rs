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
    /// The recipient is remote, and its actor type does not register this message type
    /// as a remote message (see [`RemoteActor`](crate::RemoteActor)).
    #[error("{message_type} is not a remote message of actor {recipient}")]
    NotRemote {
        /// The recipient.
        recipient: ActorId,
        /// The Rust type name of the message.
        message_type: &'static str,
    },
    /// The recipient is remote and its proc cannot be reached (no route, unknown proc,
    /// gateway gone).
    #[error("no route to actor {recipient}: {reason}")]
    Unroutable {
        /// The recipient.
        recipient: ActorId,
        /// What the route said.
        reason: String,
    },
    /// The recipient is remote and the connection to its proc is lost.
    #[error("the connection to actor {recipient} is lost")]
    Disconnected {
        /// The recipient.
        recipient: ActorId,
    },
    /// The message could not be encoded for the network.
    #[error("cannot encode {message_type} for actor {recipient}: {reason}")]
    Encode {
        /// The recipient.
        recipient: ActorId,
        /// The Rust type name of the message.
        message_type: &'static str,
        /// What the encoder said.
        reason: String,
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
    /// Any other failure of a remote send (see [`TellError`]); the message went to the
    /// proc's undeliverable handler.
    #[error(transparent)]
    Remote(TellError),
}

impl<M> TryTellError<M> {
    /// Takes the message back out of a `Full` error.
    pub fn into_message(self) -> Option<M> {
        match self {
            TryTellError::Full { message, .. } => Some(message),
            TryTellError::Closed { .. } | TryTellError::Remote(_) => None,
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
            TryTellError::Remote(error) => f.debug_tuple("Remote").field(error).finish(),
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
    /// The recipient's proc has no live actor of that name.
    #[error("no actor {recipient} in its proc")]
    NotFound {
        /// The recipient.
        recipient: ActorId,
    },
    /// The recipient exists but accepts no remote messages.
    #[error("actor {recipient} is not exposed to remote messages")]
    NotExposed {
        /// The recipient.
        recipient: ActorId,
    },
    /// The recipient is remote, and its actor type does not register this message type
    /// as a remote ask (see [`RemoteActor`](crate::RemoteActor)).
    #[error("{message_type} is not a remote ask of actor {recipient}")]
    NotRemote {
        /// The recipient.
        recipient: ActorId,
        /// The Rust type name of the message.
        message_type: &'static str,
    },
    /// The remote actor has no ask handler under the message's wire name (the two sides
    /// disagree on the actor's remote messages).
    #[error("actor {recipient} has no remote ask handler for `{message}`")]
    Unhandled {
        /// The recipient.
        recipient: ActorId,
        /// The wire name.
        message: String,
    },
    /// The recipient's proc cannot be reached (no route, unknown proc, gateway gone).
    #[error("no route to actor {recipient}: {reason}")]
    Unroutable {
        /// The recipient.
        recipient: ActorId,
        /// What the route said.
        reason: String,
    },
    /// The connection to the recipient's proc was lost before the reply came.
    #[error("the connection to actor {recipient} was lost before the reply came")]
    Disconnected {
        /// The recipient.
        recipient: ActorId,
    },
    /// The request or its reply could not be decoded.
    #[error("cannot decode the request to or the reply of actor {recipient}: {reason}")]
    Decode {
        /// The recipient.
        recipient: ActorId,
        /// What the decoder said.
        reason: String,
    },
    /// The request or its reply could not be encoded.
    #[error("cannot encode the request to or the reply of actor {recipient}: {reason}")]
    Encode {
        /// The recipient.
        recipient: ActorId,
        /// What the encoder said.
        reason: String,
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
    /// The recipient is remote and the message could not be sent to it.
    #[error("the remote send failed: {0}")]
    RemoteSendFailed(TellError),
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
