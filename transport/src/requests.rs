//! Request ids and response routing for the requests sent over one connection.
//!
//! Each request made with [`ConnectionHandle::request`] takes the next id of its connection
//! and waits on a one-shot slot in the table. The reader resolves the slot when the
//! matching response arrives; when the connection ends, every slot fails at once with
//! [`RequestError::Disconnected`], and the table refuses new requests, so no request can
//! slip in after the failure and wait for its timeout instead.
//!
//! ```text
//! request ──register──▶ Pending(id) ──response──▶ resolved
//!                          │  │
//!                          │  └──timeout / cancelled──▶ forgotten
//!                          └──connection ends──▶ Disconnected
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome};
use tokio::sync::oneshot;

use crate::connection::ConnectionHandle;

/// Why a request got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection ended while the request was in flight (or before it was sent).
    #[error("connection lost before request {id} was answered")]
    Disconnected {
        /// The request's id, `0` if it never got one.
        id: u64,
    },
    /// No response arrived in time.
    #[error("request {id} got no response within {after:?}")]
    Timeout {
        /// The request's id.
        id: u64,
        /// The time allowed.
        after: Duration,
    },
    /// The peer could not handle the request (for example it did not decode there); its
    /// `Failed` response carried no payload.
    #[error("peer failed to handle request {id}")]
    Failed {
        /// The request's id.
        id: u64,
    },
    /// The peer answered with a `Failed` response that carries a payload: an error
    /// typed by the protocol above the transport (a gateway sends its serialized ask
    /// error, named by `name`). The transport keeps it undecoded.
    #[error("peer failed request {id} with `{name}` ({} bytes)", payload.len())]
    FailedWith {
        /// The request's id.
        id: u64,
        /// The response's message name.
        name: plexus_codec::MessageName,
        /// The response's payload.
        payload: bytes::Bytes,
    },
    /// The peer's handler dropped the request without replying.
    #[error("peer ignored request {id}")]
    Ignored {
        /// The request's id.
        id: u64,
    },
    /// Flow control refused the request for good (its recipient is gone, or it is larger
    /// than a window admits), so it was never sent.
    #[error("request {id} refused by flow control: {error}")]
    Flow {
        /// The request's id.
        id: u64,
        /// Why.
        error: crate::FlowError,
    },
    /// The request could not be encoded, so it was never sent.
    #[error("request {id} could not be encoded: {reason}")]
    Encode {
        /// The request's id.
        id: u64,
        /// What the encoder reported.
        reason: String,
    },
}

type Slot = oneshot::Sender<Result<NetworkEnvelope, RequestError>>;

/// The in-flight requests of one connection.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Request ids are this side's own counter, so a fast hash is safe.
    pending: HashMap<u64, Slot, foldhash::fast::FixedState>,
    /// Set once the connection ended; from then on every registration fails.
    disconnected: bool,
}

impl Requests {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds no invariant a panicking holder could break half-way.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves a fresh id and its slot.
    fn register(
        &self,
    ) -> Result<
        (
            u64,
            oneshot::Receiver<Result<NetworkEnvelope, RequestError>>,
        ),
        RequestError,
    > {
        let mut table = self.table();
        if table.disconnected {
            return Err(RequestError::Disconnected { id: 0 });
        }
        // Ids start at 1 so that 0 can mean "never assigned" in errors.
        table.next_id = table.next_id.wrapping_add(1).max(1);
        let id = table.next_id;
        let (tx, rx) = oneshot::channel();
        table.pending.insert(id, tx);
        Ok((id, rx))
    }

    /// Hands `response` to the request it answers. Returns it back when no request of
    /// this table waits for its id, so the caller can route it elsewhere.
    pub(crate) fn resolve(&self, response: NetworkEnvelope) -> Option<NetworkEnvelope> {
        let EnvelopeKind::Response { id, outcome, .. } = response.kind else {
            return Some(response);
        };
        let Some(slot) = self.table().pending.remove(&id) else {
            return Some(response);
        };
        let result = match outcome {
            Outcome::Ok => Ok(response),
            Outcome::Failed if response.payload.is_empty() => Err(RequestError::Failed { id }),
            Outcome::Failed => Err(RequestError::FailedWith {
                id,
                name: response.name,
                payload: response.payload,
            }),
            Outcome::Ignored => Err(RequestError::Ignored { id }),
        };
        // The requester may have given up in the meantime; nothing else waits for it.
        let _ = slot.send(result);
        None
    }

    /// Fails request `id` with `error`, if it is still in flight.
    pub(crate) fn fail(&self, id: u64, error: RequestError) {
        if let Some(slot) = self.table().pending.remove(&id) {
            let _ = slot.send(Err(error));
        }
    }

    /// Fails every in-flight request with `Disconnected` and refuses new ones.
    pub(crate) fn fail_in_flight(&self) -> usize {
        let pending = {
            let mut table = self.table();
            table.disconnected = true;
            std::mem::take(&mut table.pending)
        };
        let count = pending.len();
        for (id, slot) in pending {
            let _ = slot.send(Err(RequestError::Disconnected { id }));
        }
        count
    }

    /// How many requests are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.table().pending.len()
    }

    fn forget(&self, id: u64) {
        self.table().pending.remove(&id);
    }
}

/// Removes a request's slot when its caller stops waiting, whether by timeout or by being
/// dropped, so the table never keeps slots nobody waits on.
struct Forget<'a> {
    /// `None` once the slot is known to have left the table (its answer or failure
    /// arrived), which spares the common case a second lock of the table.
    requests: Option<&'a Requests>,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(requests) = self.requests {
            requests.forget(self.id);
        }
    }
}

impl ConnectionHandle {
    /// Sends `envelope` as a request and waits for its response, for at most `timeout`.
    ///
    /// The envelope's kind is replaced by [`EnvelopeKind::Request`] with a fresh id of this
    /// connection. The first response with that id resolves the request: an `Ok` outcome
    /// returns the response envelope, `Failed` and `Ignored` outcomes their errors. When
    /// the connection ends first, the request fails at once with
    /// [`RequestError::Disconnected`]. The timeout covers waiting for room in the send
    /// queue as well.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in the sense that dropping the future forgets the request: a late
    /// response is then handed to the connection's [`Inbound`](crate::Inbound) handler. The
    /// request may or may not have been sent.
    pub async fn request(
        &self,
        envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<NetworkEnvelope, RequestError> {
        self.request_or_return(envelope, timeout)
            .await
            .map_err(|(error, _)| error)
    }

    /// [`request`](Self::request), handing the envelope back when the connection had ended
    /// before the request got an id (`Disconnected` with id 0): it was never sent, so the
    /// caller may send it on another connection without keeping a copy.
    pub(crate) async fn request_or_return(
        &self,
        mut envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<NetworkEnvelope, (RequestError, Option<NetworkEnvelope>)> {
        let requests = &self.shared.requests;
        let (id, rx) = match requests.register() {
            Ok(registered) => registered,
            Err(error) => return Err((error, Some(envelope))),
        };
        let mut forget = Forget {
            requests: Some(requests),
            id,
        };
        envelope.kind = EnvelopeKind::Request { id };
        // Also says whether the slot completed: whoever completes it has taken it out of
        // the table (`resolve`, `fail`, the teardown), so there is nothing to forget.
        let exchange = async {
            match self.send(envelope).await {
                Ok(()) => {}
                Err(crate::SendError::Flow { error, .. }) => {
                    return (Err(RequestError::Flow { id, error }), false);
                }
                Err(_) => return (Err(RequestError::Disconnected { id }), false),
            }
            match rx.await {
                Ok(result) => (result, true),
                // The slot was dropped without an answer: only the table's teardown does that.
                Err(_) => (Err(RequestError::Disconnected { id }), true),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok((result, completed)) => {
                if completed {
                    forget.requests = None;
                }
                result.map_err(|error| (error, None))
            }
            Err(_) => Err((RequestError::Timeout { id, after: timeout }, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn response(id: u64, outcome: Outcome) -> NetworkEnvelope {
        NetworkEnvelope::control(EnvelopeKind::Response {
            id,
            outcome,
            is_last: true,
        })
    }

    /// A response resolves only the request with its id; one for an unknown id is handed
    /// back for other routing.
    #[test]
    fn responses_route_by_id() {
        let requests = Requests::default();
        let (a, mut rx_a) = requests.register().unwrap();
        let (b, mut rx_b) = requests.register().unwrap();
        assert_ne!(a, b);
        assert!(requests.resolve(response(b, Outcome::Ok)).is_none());
        assert!(rx_a.try_recv().is_err());
        assert_eq!(rx_b.try_recv().unwrap().unwrap().kind.request_id(), Some(b));
        assert!(requests.resolve(response(b, Outcome::Ok)).is_some());
        assert!(requests.resolve(response(a, Outcome::Failed)).is_none());
        assert_eq!(
            rx_a.try_recv().unwrap(),
            Err(RequestError::Failed { id: a })
        );
        assert_eq!(requests.in_flight(), 0);
    }

    /// A `Failed` response with a payload keeps its name and payload for the requester;
    /// one without stays a bare `Failed`.
    #[test]
    fn failed_responses_keep_their_payload() {
        let requests = Requests::default();
        let (a, mut rx_a) = requests.register().unwrap();
        let mut failed = response(a, Outcome::Failed);
        failed.name = plexus_codec::MessageName::from_static("test.Error");
        failed.payload = bytes::Bytes::from_static(&[1, 2]);
        assert!(requests.resolve(failed).is_none());
        assert_eq!(
            rx_a.try_recv().unwrap(),
            Err(RequestError::FailedWith {
                id: a,
                name: plexus_codec::MessageName::from_static("test.Error"),
                payload: bytes::Bytes::from_static(&[1, 2]),
            })
        );
    }

    /// Answers requests whose payload is non-empty; leaves the others unanswered.
    struct AnswerSome;

    impl crate::Inbound for AnswerSome {
        fn deliver(&self, _envelope: NetworkEnvelope) {}

        fn deliver_from(&self, envelope: NetworkEnvelope, from: &crate::ConnectionRef) {
            if let (Some(id), false) = (envelope.kind.request_id(), envelope.payload.is_empty()) {
                let _ = from.try_send(response(id, Outcome::Ok));
            }
        }
    }

    fn end() -> crate::connection::End {
        crate::connection::End {
            negotiated: crate::Negotiated {
                version: plexus_codec::SUPPORTED_VERSIONS.max,
                capabilities: plexus_codec::Capabilities::empty(),
                peer: plexus_core::ProcId::new("peer", 1),
                peer_launch_id: 1,
                peer_max_frame_size: u32::MAX,
                peer_location: None,
                peer_flow: None,
                local_flow: None,
            },
            inbound: std::sync::Arc::new(AnswerSome),
        }
    }

    /// Whether a request is answered or times out, its slot leaves the table: taken by
    /// the answer, or forgotten by the requester that stopped waiting.
    #[tokio::test]
    async fn answered_and_timed_out_requests_leave_no_slot() {
        let (a, _b) = crate::connection::inproc_pair(end(), end(), 8);
        let mut ask = NetworkEnvelope::control(EnvelopeKind::Regular);
        ask.payload = bytes::Bytes::from_static(&[1]);
        let answered = a.request(ask, Duration::from_secs(5)).await;
        assert!(answered.is_ok(), "{answered:?}");
        assert_eq!(a.requests_in_flight(), 0);

        let unanswered = NetworkEnvelope::control(EnvelopeKind::Regular);
        let timed_out = a.request(unanswered, Duration::from_millis(20)).await;
        assert!(
            matches!(timed_out, Err(RequestError::Timeout { .. })),
            "{timed_out:?}"
        );
        assert_eq!(a.requests_in_flight(), 0);
    }

    /// Tearing the table down fails every pending request with `Disconnected` and refuses
    /// later registrations, so none can wait for its timeout.
    #[test]
    fn teardown_fails_all_and_refuses_new_requests() {
        let requests = Requests::default();
        let mut receivers: Vec<_> = (0..3).map(|_| requests.register().unwrap()).collect();
        assert_eq!(requests.fail_in_flight(), 3);
        for (id, rx) in &mut receivers {
            assert_eq!(
                rx.try_recv().unwrap(),
                Err(RequestError::Disconnected { id: *id })
            );
        }
        assert_eq!(
            requests.register().unwrap_err(),
            RequestError::Disconnected { id: 0 }
        );
    }
}
