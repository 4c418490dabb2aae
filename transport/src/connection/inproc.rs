//! In-process connections: two [`ConnectionHandle`]s joined by channels, with no stream,
//! no codec and no serialization.
//!
//! Each direction is the bounded send queue of one handle, drained by a carrier task that
//! routes what it takes exactly as a reader would: responses to the requests of the other
//! end, everything else to the other end's [`Inbound`] with a reference for answering.
//! So `send`, `try_send`, `request`, `close` and `closed` behave as on a socket, with the
//! same bounds and errors, minus the encoding, the pings and the idle timeout (a peer in
//! the same process cannot go silent without closing).
//!
//! ```text
//! a.send ──queue a──▶ carrier ──▶ b's Inbound (or a's request slot, for a response)
//! b.send ──queue b──▶ carrier ──▶ a's Inbound (or b's request slot)
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use plexus_codec::{EnvelopeKind, NetworkEnvelope};
use tokio::sync::{mpsc, watch};

use super::{ConnectionError, ConnectionHandle, ConnectionRef, Inbound, Shared};
use crate::handshake::Negotiated;

/// One end of a pair: what it knows of the other, and its inbound handler.
pub(crate) struct End {
    /// What this end learns of the other, as a handshake would have told it.
    pub(crate) negotiated: Negotiated,
    /// Where this end's incoming envelopes go.
    pub(crate) inbound: Arc<dyn Inbound>,
}

/// Two connected handles, each with a send queue of `capacity` envelopes.
///
/// # Panics
///
/// Outside a Tokio runtime, as it spawns tasks.
pub(crate) fn inproc_pair(a: End, b: End, capacity: usize) -> (ConnectionHandle, ConnectionHandle) {
    let capacity = capacity.max(1);
    let (queue_a, to_b) = mpsc::channel(capacity);
    let (queue_b, to_a) = mpsc::channel(capacity);
    let (closed_a_tx, closed_a) = watch::channel(None);
    let (closed_b_tx, closed_b) = watch::channel(None);
    // No flow control in process: the bounded queues are the back-pressure.
    let mut negotiated_a = a.negotiated;
    negotiated_a.peer_flow = None;
    let mut negotiated_b = b.negotiated;
    negotiated_b.peer_flow = None;
    let handle_a = ConnectionHandle {
        queue: queue_a,
        shared: Arc::new(Shared::new(&negotiated_a, closed_a, None)),
    };
    let handle_b = ConnectionHandle {
        queue: queue_b,
        shared: Arc::new(Shared::new(&negotiated_b, closed_b, None)),
    };
    let carry_a = tokio::spawn(carry(
        to_b,
        Arc::clone(&handle_a.shared),
        Arc::clone(&handle_b.shared),
        b.inbound,
        handle_b.downgrade(),
    ));
    let carry_b = tokio::spawn(carry(
        to_a,
        Arc::clone(&handle_b.shared),
        Arc::clone(&handle_a.shared),
        a.inbound,
        handle_a.downgrade(),
    ));
    tokio::spawn(supervise(
        [carry_a, carry_b],
        [Arc::clone(&handle_a.shared), Arc::clone(&handle_b.shared)],
        [closed_a_tx, closed_b_tx],
    ));
    (handle_a, handle_b)
}

/// Moves what `from` sends to the other end, until every handle of `from` is gone.
async fn carry(
    mut queue: mpsc::Receiver<NetworkEnvelope>,
    from: Arc<Shared>,
    to: Arc<Shared>,
    inbound: Arc<dyn Inbound>,
    reply: ConnectionRef,
) {
    while let Some(envelope) = queue.recv().await {
        from.envelopes_sent.fetch_add(1, Ordering::Relaxed);
        to.envelopes_received.fetch_add(1, Ordering::Relaxed);
        match envelope.kind {
            // Liveness and credit have no meaning between two ends of one process.
            EnvelopeKind::Ping { .. }
            | EnvelopeKind::Pong { .. }
            | EnvelopeKind::Credit { .. }
            | EnvelopeKind::FlowClose { .. } => {}
            EnvelopeKind::Response { .. } => {
                if let Some(envelope) = to.requests.resolve(envelope) {
                    inbound.deliver_from(envelope, &reply);
                }
            }
            _ => inbound.deliver_from(envelope, &reply),
        }
    }
}

/// Ends both sides when either is closed or dropped, failing their in-flight requests.
async fn supervise(
    carriers: [tokio::task::JoinHandle<()>; 2],
    shared: [Arc<Shared>; 2],
    closed: [watch::Sender<Option<ConnectionError>>; 2],
) {
    let [mut carry_a, mut carry_b] = carriers;
    let [a, b] = shared;
    // Which side ended it: that one closed locally, the other sees its peer close.
    let a_ended = tokio::select! {
        _ = &mut carry_a => true,
        _ = &mut carry_b => false,
        () = a.close.notified() => true,
        () = b.close.notified() => false,
    };
    carry_a.abort();
    carry_b.abort();
    let failed = a.requests.fail_in_flight() + b.requests.fail_in_flight();
    tracing::debug!(a = %b.peer.peer, b = %a.peer.peer, failed_requests = failed, "in-process connection closed");
    let [closed_a, closed_b] = closed;
    let (reason_a, reason_b) = if a_ended {
        (ConnectionError::ClosedLocally, ConnectionError::PeerClosed)
    } else {
        (ConnectionError::PeerClosed, ConnectionError::ClosedLocally)
    };
    let _ = closed_a.send(Some(reason_a));
    let _ = closed_b.send(Some(reason_b));
}
