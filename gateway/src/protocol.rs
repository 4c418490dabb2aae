//! What gateways say to each other on top of plain envelopes: how an ask's answer is
//! encoded in its `Response`, and the proxy-attach control message.
//!
//! # Responses
//!
//! | answer                  | kind                          | name               | payload                    |
//! |-------------------------|-------------------------------|--------------------|----------------------------|
//! | the handler replied     | `Response { outcome: Ok }`    | [`REPLY`]          | postcard bytes of the reply |
//! | a typed error           | `Response { outcome: Failed }`| [`ASK_ERROR`]      | postcard `RemoteAskError`  |
//! | the request did not decode | `Response { outcome: Failed }` | (none)        | empty                      |
//!
//! The transport hands a `Failed` response with a payload back as
//! `RequestError::FailedWith` (name and payload kept), which the gateway reads back; an
//! empty one, which the connection itself sends for a request that did not decode, is a
//! bare `RequestError::Failed`. Earlier gateways sent the typed error with outcome `Ok`
//! and the name [`ASK_ERROR`]; the gateway still reads that form.
//!
//! # Refused tells
//!
//! A tell from an actor that the receiving gateway cannot deliver (its proc is not
//! attached there, the actor is gone or refused it) is reported back on the connection
//! it came on: a tell to [`Recipient::Transport`] named [`UNDELIVERABLE`] whose payload is
//! the postcard [`RefusedTell`]. The sending gateway hands it to the undeliverable handler
//! of the sender's proc (design 3.5, 3.9) and never answers it. A tell sent from outside
//! any actor names no sender, so its refusal is only logged and counted where it
//! happened.
//!
//! # Group requests
//!
//! Gateways do not route requests to groups: a `RequestAll` (to a group or an actor) and
//! a `Request` to a group are answered at once with a typed error as above,
//! [`RemoteAskError::Unroutable`], instead of reaching an actor as a tell or waiting for
//! the asker's timeout.
//!
//! # Proxy attach
//!
//! A gateway attaches one of its procs to a remote gateway with a request to
//! [`Recipient::Transport`] named [`ATTACH`] whose payload is the postcard `ProcId`; the
//! answer is a response as above with an empty reply or the refusal as a
//! [`RemoteAskError`].
//!
//! # Listing procs
//!
//! A request to [`Recipient::Transport`] named [`LIST_PROCS`] (empty payload) is answered
//! with the postcard `Vec<ProcId>` of the live procs attached to the gateway, directly or
//! through a proxy, sorted. Tools that are given only a location (the console) learn from
//! it which procs to address.

use bytes::Bytes;
use plexus_codec::{EnvelopeKind, MessageName, NetworkEnvelope, Outcome, Recipient};
use plexus_core::{ActorId, ProcId, RemoteAskError};

use crate::error::RemoteRequestError;

/// The name of a response that carries a handler's reply.
pub const REPLY: &str = "plexus.Reply";
/// The name of a response that carries a [`RemoteAskError`].
pub const ASK_ERROR: &str = "plexus.AskError";
/// The name of the proxy-attach request.
pub const ATTACH: &str = "plexus.gateway.Attach";
/// The name of the request that lists the procs attached to a gateway.
pub const LIST_PROCS: &str = "plexus.gateway.ListProcs";
/// The name of the notice that a tell was refused by the receiving side.
pub const UNDELIVERABLE: &str = "plexus.gateway.Undeliverable";

/// A tell the receiving gateway could not deliver, sent back to the sender's gateway.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedTell {
    /// The actor the tell was for.
    pub recipient: ActorId,
    /// The actor that sent it.
    pub sender: ActorId,
    /// The tell's message name.
    pub name: String,
    /// Why the receiving side refused it.
    pub reason: String,
    /// The tell's payload.
    pub payload: Vec<u8>,
}

/// The notice for `tell`, refused for `reason`; `None` when it names no sending actor
/// (nobody to tell) or is no tell to an actor.
pub(crate) fn refused_tell(tell: &NetworkEnvelope, reason: &str) -> Option<NetworkEnvelope> {
    let (EnvelopeKind::Regular, Recipient::Actor(recipient), Some(sender)) =
        (&tell.kind, &tell.recipient, &tell.sender)
    else {
        return None;
    };
    let notice = RefusedTell {
        recipient: recipient.clone(),
        sender: sender.clone(),
        name: tell.name.to_string(),
        reason: reason.to_owned(),
        payload: tell.payload.to_vec(),
    };
    let payload = postcard::to_allocvec(&notice).ok()?;
    let mut envelope = NetworkEnvelope::control(EnvelopeKind::Regular);
    envelope.name = MessageName::from_static(UNDELIVERABLE);
    envelope.payload = Bytes::from(payload);
    Some(envelope)
}

/// Whether `envelope` is a [`RefusedTell`] notice.
pub(crate) fn is_refused_tell(envelope: &NetworkEnvelope) -> bool {
    envelope.recipient == Recipient::Transport
        && envelope.kind == EnvelopeKind::Regular
        && &*envelope.name == UNDELIVERABLE
}

/// The response to request `id` from `responder` for `requester`, carrying `outcome`.
pub(crate) fn response(
    id: u64,
    responder: Option<ActorId>,
    requester: Option<ActorId>,
    trace_id: u64,
    outcome: Result<Vec<u8>, RemoteAskError>,
) -> NetworkEnvelope {
    let (name, payload, outcome) = match outcome {
        Ok(reply) => (REPLY, Bytes::from(reply), Outcome::Ok),
        Err(error) => match postcard::to_allocvec(&error) {
            Ok(encoded) => (ASK_ERROR, Bytes::from(encoded), Outcome::Failed),
            Err(encode) => {
                // A `RemoteAskError` is strings and ids; this is not expected to fail.
                tracing::warn!(%error, error = %encode, "cannot encode an ask error, answering Abandoned");
                let fallback =
                    postcard::to_allocvec(&RemoteAskError::Abandoned).unwrap_or_default();
                (ASK_ERROR, Bytes::from(fallback), Outcome::Failed)
            }
        },
    };
    NetworkEnvelope {
        sender: responder,
        recipient: requester.map_or(Recipient::Transport, Recipient::Actor),
        trace_id,
        hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
        kind: EnvelopeKind::Response {
            id,
            outcome,
            is_last: true,
        },
        name: MessageName::from_static(name),
        payload,
    }
}

/// The answer carried by a response that resolved a request.
pub(crate) fn read_response(response: &NetworkEnvelope) -> Result<Bytes, RemoteRequestError> {
    match &response.kind {
        EnvelopeKind::Response {
            outcome: Outcome::Ok,
            ..
        } => {}
        EnvelopeKind::Response {
            outcome: Outcome::Ignored,
            ..
        } => return Err(RemoteRequestError::Ignored),
        _ => return Err(RemoteRequestError::Failed),
    }
    if &*response.name == ASK_ERROR {
        return Err(read_failure(&response.name, &response.payload));
    }
    Ok(response.payload.clone())
}

/// The error carried by a `Failed` response with a payload (the transport's
/// `RequestError::FailedWith`): the peer's [`RemoteAskError`], or
/// [`RemoteRequestError::Failed`] when it is not one this gateway can read.
pub(crate) fn read_failure(name: &str, payload: &[u8]) -> RemoteRequestError {
    if name != ASK_ERROR {
        tracing::warn!(name, "a failed response of an unknown kind");
        return RemoteRequestError::Failed;
    }
    match postcard::from_bytes::<RemoteAskError>(payload) {
        Ok(error) => RemoteRequestError::Remote(error),
        Err(decode) => {
            tracing::warn!(error = %decode, "an ask error from a peer does not decode");
            RemoteRequestError::Failed
        }
    }
}

/// The answer to a group request (`RequestAll`): gateways do not route requests to
/// groups (design 5 reserves the kind), so the requester gets a typed
/// [`RemoteAskError::Unroutable`] at once instead of waiting for its timeout; a group
/// is asked by asking each member.
pub(crate) fn group_request_refused(request: &NetworkEnvelope) -> RemoteAskError {
    tracing::debug!(recipient = %request.recipient, name = %request.name, "group request refused");
    RemoteAskError::Unroutable {
        reason: format!(
            "group requests (RequestAll) are not routed by gateways; ask each member of {} instead",
            request.recipient
        ),
    }
}

/// The proxy-attach request for `proc` (its id is set by the connection).
pub(crate) fn attach_request(proc: &ProcId) -> Option<NetworkEnvelope> {
    let payload = postcard::to_allocvec(proc).ok()?;
    let mut envelope = NetworkEnvelope::control(EnvelopeKind::Request { id: 0 });
    envelope.name = MessageName::from_static(ATTACH);
    envelope.payload = Bytes::from(payload);
    Some(envelope)
}

/// The request for the procs attached to a gateway.
pub(crate) fn list_procs_request() -> NetworkEnvelope {
    let mut envelope = NetworkEnvelope::control(EnvelopeKind::Request { id: 0 });
    envelope.name = MessageName::from_static(LIST_PROCS);
    envelope
}

/// Whether `envelope` is addressed to the gateway itself rather than to an actor.
pub(crate) fn is_for_gateway(envelope: &NetworkEnvelope) -> bool {
    envelope.recipient == Recipient::Transport
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply and a typed error survive the response encoding, and the two are told
    /// apart by name.
    #[test]
    fn responses_round_trip() {
        let ok = response(3, None, None, 0, Ok(vec![1, 2, 3]));
        assert_eq!(
            read_response(&ok).ok(),
            Some(Bytes::from_static(&[1, 2, 3]))
        );
        let error = RemoteAskError::NotFound {
            actor: "gone".into(),
        };
        let failed = response(4, None, None, 0, Err(error.clone()));
        assert!(matches!(
            failed.kind,
            EnvelopeKind::Response {
                outcome: Outcome::Failed,
                ..
            }
        ));
        assert_eq!(
            read_failure(&failed.name, &failed.payload),
            RemoteRequestError::Remote(error.clone())
        );
        assert_eq!(
            read_failure(&failed.name, &[0xff, 0xff]),
            RemoteRequestError::Failed
        );
        assert_eq!(
            read_failure("other.Error", &failed.payload),
            RemoteRequestError::Failed
        );
        // The form earlier gateways sent: outcome `Ok`, told apart by its name.
        let mut earlier = failed;
        earlier.kind = EnvelopeKind::Response {
            id: 4,
            outcome: Outcome::Ok,
            is_last: true,
        };
        assert_eq!(
            read_response(&earlier),
            Err(RemoteRequestError::Remote(error))
        );
    }
}
