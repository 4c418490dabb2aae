//! What gateways say to each other on top of plain envelopes: how an ask's answer is
//! encoded in its `Response`, and the proxy-attach control message.
//!
//! # Responses
//!
//! | answer                  | kind                          | name               | payload                    |
//! |-------------------------|-------------------------------|--------------------|----------------------------|
//! | the handler replied     | `Response { outcome: Ok }`    | [`REPLY`]          | postcard bytes of the reply |
//! | a typed error           | `Response { outcome: Ok }`    | [`ASK_ERROR`]      | postcard `RemoteAskError`  |
//!
//! A typed error travels with outcome `Ok` and its own name because the transport's
//! request path turns a `Failed` response into a bare error and drops its payload; the
//! name tells the two apart. A `Failed` outcome therefore only comes from a peer that
//! could not decode the request at all.
//!
//! # Proxy attach
//!
//! A gateway attaches one of its procs to a remote gateway with a request to
//! [`Recipient::Transport`] named [`ATTACH`] whose payload is the postcard `ProcId`; the
//! answer is a response as above with an empty reply or the refusal as a
//! [`RemoteAskError`].

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

/// The response to request `id` from `responder` for `requester`, carrying `outcome`.
pub(crate) fn response(
    id: u64,
    responder: Option<ActorId>,
    requester: Option<ActorId>,
    trace_id: u64,
    outcome: Result<Vec<u8>, RemoteAskError>,
) -> NetworkEnvelope {
    let (name, payload) = match outcome {
        Ok(reply) => (REPLY, Bytes::from(reply)),
        Err(error) => match postcard::to_allocvec(&error) {
            Ok(encoded) => (ASK_ERROR, Bytes::from(encoded)),
            Err(encode) => {
                // A `RemoteAskError` is strings and ids; this is not expected to fail.
                tracing::warn!(%error, error = %encode, "cannot encode an ask error, answering Abandoned");
                let fallback =
                    postcard::to_allocvec(&RemoteAskError::Abandoned).unwrap_or_default();
                (ASK_ERROR, Bytes::from(fallback))
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
            outcome: Outcome::Ok,
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
        return Err(
            match postcard::from_bytes::<RemoteAskError>(&response.payload) {
                Ok(error) => RemoteRequestError::Remote(error),
                Err(decode) => {
                    tracing::warn!(error = %decode, "an ask error from a peer does not decode");
                    RemoteRequestError::Failed
                }
            },
        );
    }
    Ok(response.payload.clone())
}

/// The proxy-attach request for `proc` (its id is set by the connection).
pub(crate) fn attach_request(proc: &ProcId) -> Option<NetworkEnvelope> {
    let payload = postcard::to_allocvec(proc).ok()?;
    let mut envelope = NetworkEnvelope::control(EnvelopeKind::Request { id: 0 });
    envelope.name = MessageName::from_static(ATTACH);
    envelope.payload = Bytes::from(payload);
    Some(envelope)
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
        assert_eq!(
            read_response(&failed),
            Err(RemoteRequestError::Remote(error))
        );
        let mut garbled = failed;
        garbled.payload = Bytes::from_static(&[0xff, 0xff]);
        assert_eq!(read_response(&garbled), Err(RemoteRequestError::Failed));
    }
}
