//! Why a remote message could not be exposed, delivered or answered.

use serde::{Deserialize, Serialize};

use crate::id::{ActorId, Location};

use super::PendingDelivery;

/// A [`RemoteHandlers`](super::RemoteHandlers) table could not be attached to an actor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExposeError {
    /// Two different message types were registered under one wire name.
    #[error("remote message name `{message}` is registered for both {first} and {second}")]
    DuplicateName {
        /// The wire name.
        message: &'static str,
        /// The type registered first.
        first: &'static str,
        /// The type registered second.
        second: &'static str,
    },
    /// A message name starts with the prefix reserved for system messages
    /// ([`SYSTEM_PREFIX`](crate::SYSTEM_PREFIX)), which never reach an actor.
    #[error("remote message name `{message}` uses the reserved system prefix")]
    ReservedName {
        /// The wire name.
        message: &'static str,
    },
    /// The actor is not a live actor of this proc under its name.
    #[error("actor {actor} is not running in this proc")]
    NotRunning {
        /// The actor.
        actor: ActorId,
    },
}

/// A remote envelope could not be handed to its actor.
///
/// For an ask, every variant but `Full` has already answered the reply callback with the
/// matching [`RemoteAskError`]; a `Full` ask carries its callback inside the pending
/// delivery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No live actor has this name in this proc.
    #[error("no actor named `{actor}` in this proc")]
    NotFound {
        /// The name asked for.
        actor: String,
    },
    /// The actor exists but accepts no remote messages.
    #[error("actor `{actor}` is not exposed to remote messages")]
    NotExposed {
        /// The actor's name.
        actor: String,
    },
    /// The actor accepts no message under this name.
    #[error("actor `{actor}` has no remote handler for `{message}`")]
    UnknownMessage {
        /// The actor's name.
        actor: String,
        /// The wire name received.
        message: String,
    },
    /// The message was registered as a tell only, and an ask arrived.
    #[error("actor `{actor}` accepts `{message}` only as a tell, not as an ask")]
    NotAskable {
        /// The actor's name.
        actor: String,
        /// The wire name received.
        message: String,
    },
    /// The payload is not a valid encoding of the registered type.
    #[error("cannot decode `{message}`: {reason}")]
    Decode {
        /// The wire name.
        message: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The actor's mailbox is full; the decoded message waits in `pending` for a retry.
    #[error("mailbox of {} is full, `{}` not delivered", .pending.actor(), .pending.message_name())]
    Full {
        /// The decoded message with its recipient, ready to retry or to push once there is
        /// room. Boxed: it is the rare case, and keeps every other `Result` small.
        pending: Box<PendingDelivery>,
    },
    /// The actor has stopped; a tell went to the proc's undeliverable handler.
    #[error("actor {actor} has stopped")]
    Closed {
        /// The recipient.
        actor: ActorId,
    },
}

impl DeliveryError {
    /// Takes the pending delivery out of a `Full` error.
    pub fn into_pending(self) -> Option<PendingDelivery> {
        match self {
            DeliveryError::Full { pending } => Some(*pending),
            _ => None,
        }
    }

    /// What the requester of a refused ask hears: the same refusal, in its wire form.
    /// `None` for `Full`, which refuses nothing for good (a dropped pending delivery still
    /// answers `Abandoned`).
    pub(crate) fn ask_answer(&self) -> Option<RemoteAskError> {
        Some(match self {
            DeliveryError::NotFound { actor } => RemoteAskError::NotFound {
                actor: actor.clone(),
            },
            DeliveryError::NotExposed { actor } => RemoteAskError::NotExposed {
                actor: actor.clone(),
            },
            // An ask for a tell-only message finds no ask handler, as the requester sees it.
            DeliveryError::UnknownMessage { actor, message }
            | DeliveryError::NotAskable { actor, message } => RemoteAskError::UnknownMessage {
                actor: actor.clone(),
                message: message.clone(),
            },
            DeliveryError::Decode { message, reason } => RemoteAskError::Decode {
                message: (*message).to_owned(),
                reason: reason.clone(),
            },
            DeliveryError::Closed { actor } => RemoteAskError::Closed {
                actor: actor.clone(),
            },
            DeliveryError::Full { .. } => return None,
        })
    }
}

/// Why a remote ask has no reply. Serializable, so the answer can travel back to the
/// requester as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteAskError {
    /// No live actor has this name.
    #[error("no actor named `{actor}`")]
    NotFound {
        /// The name asked for.
        actor: String,
    },
    /// The actor accepts no remote messages.
    #[error("actor `{actor}` is not exposed to remote messages")]
    NotExposed {
        /// The actor's name.
        actor: String,
    },
    /// The actor accepts no ask under this name.
    #[error("actor `{actor}` has no remote ask handler for `{message}`")]
    UnknownMessage {
        /// The actor's name.
        actor: String,
        /// The wire name.
        message: String,
    },
    /// The request could not be decoded.
    #[error("cannot decode `{message}`: {reason}")]
    Decode {
        /// The wire name.
        message: String,
        /// What the decoder said.
        reason: String,
    },
    /// The reply could not be encoded.
    #[error("cannot encode the reply to `{message}`: {reason}")]
    Encode {
        /// The wire name of the request.
        message: String,
        /// What the encoder said.
        reason: String,
    },
    /// The actor stopped before it replied.
    #[error("actor {actor} stopped before replying")]
    Closed {
        /// The recipient.
        actor: ActorId,
    },
    /// The handler panicked.
    #[error("actor {actor} panicked while handling the request: {message}")]
    Panicked {
        /// The recipient.
        actor: ActorId,
        /// The panic message.
        message: String,
    },
    /// The request was dropped unanswered: a pending delivery was discarded, or the
    /// runtime shut down with the request queued or its handler running.
    #[error("the request was dropped before the actor replied")]
    Abandoned,
    /// No reply came within the ask's timeout.
    #[error("no reply within {timeout_ms} ms")]
    Timeout {
        /// The timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The connection the request travelled on was lost before the reply came.
    #[error("the connection to {location} was lost before the reply came")]
    Disconnected {
        /// The location that was lost.
        location: Location,
    },
    /// The request could not be routed to the recipient's proc (unknown proc, isolated
    /// gateway, hop limit spent, gateway gone).
    #[error("the request could not be routed: {reason}")]
    Unroutable {
        /// What the route said.
        reason: String,
    },
}
