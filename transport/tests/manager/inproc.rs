//! The in-process manager: the outproc interface over channels, one connection per pair
//! of procs, the same errors.

use std::sync::Arc;
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome};
use plexus_core::{Location, ProcId};
use plexus_transport::{
    ConnectionRef, Dest, DestEvent, Hello, Inbound, InprocBindError, InprocHub,
    InprocTransportManager, RequestError, TransportError,
};
use tokio::sync::mpsc;

use crate::{pair_and_seq, tell, within};

/// Records what arrives and, when `answer` is set, answers requests on their connection.
struct Recorder {
    tx: mpsc::UnboundedSender<NetworkEnvelope>,
    answer: bool,
}

impl Inbound for Recorder {
    fn deliver(&self, envelope: NetworkEnvelope) {
        let _ = self.tx.send(envelope);
    }

    fn deliver_from(&self, envelope: NetworkEnvelope, from: &ConnectionRef) {
        if let (true, Some(id)) = (self.answer, envelope.kind.request_id()) {
            let kind = EnvelopeKind::Response {
                id,
                outcome: Outcome::Ok,
                is_last: true,
            };
            from.try_send(NetworkEnvelope::control(kind)).unwrap();
        }
        self.deliver(envelope);
    }
}

/// A manager of proc `label` bound to `local:n` in `hub`.
fn bind(
    hub: &InprocHub,
    label: &str,
    n: u64,
    answer: bool,
) -> (
    InprocTransportManager,
    Dest,
    mpsc::UnboundedReceiver<NetworkEnvelope>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let dest = Dest::new(Location::Local(n));
    let manager = InprocTransportManager::new(
        hub,
        dest.clone(),
        Hello::new(ProcId::new(label, 1), n),
        16,
        Recorder { tx, answer },
    )
    .unwrap();
    (manager, dest, rx)
}

/// Tells arrive in order as the very envelopes sent, a request is answered, and the
/// reply path is the same connection in the other direction.
#[tokio::test]
async fn tells_and_requests_cross_without_serialization() {
    let hub = InprocHub::new();
    let (a, a_dest, mut at_a) = bind(&hub, "a", 1, false);
    let (b, b_dest, mut at_b) = bind(&hub, "b", 2, true);
    for n in 0..1_000 {
        a.send(&b_dest, tell(1, 2, n)).await.unwrap();
    }
    for n in 0..1_000 {
        let envelope = within(Duration::from_secs(5), "a tell", at_b.recv())
            .await
            .unwrap();
        assert_eq!(pair_and_seq(&envelope), (1, 2, n));
    }
    let response = a
        .request(&b_dest, tell(1, 2, 7), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        response.kind,
        EnvelopeKind::Response {
            outcome: Outcome::Ok,
            ..
        }
    ));
    assert!(at_b.recv().await.is_some());

    b.send(&a_dest, tell(2, 1, 0)).await.unwrap();
    let back = within(Duration::from_secs(5), "a tell back", at_a.recv())
        .await
        .unwrap();
    assert_eq!(pair_and_seq(&back), (2, 1, 0));
    // One connection, seen from both ends.
    let (ab, ba) = (
        a.connection_to(&b_dest).unwrap(),
        b.connection_to(&a_dest).unwrap(),
    );
    assert_eq!(ab.stats().envelopes_sent, ba.stats().envelopes_received);
    assert_eq!(ab.peer().peer, ProcId::new("b", 1));
    assert_eq!(a.list_dests(), vec![b_dest]);
    assert_eq!(b.dest_count(), 1);
}

/// Two procs sending to each other at once from many tasks end with exactly one
/// connection between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_sends_make_one_connection() {
    let hub = InprocHub::new();
    let (a, a_dest, _at_a) = bind(&hub, "a", 1, false);
    let (b, b_dest, _at_b) = bind(&hub, "b", 2, false);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for n in 0..50 {
        let (a, b, a_dest, b_dest) = (a.clone(), b.clone(), a_dest.clone(), b_dest.clone());
        tasks.push(tokio::spawn(async move {
            a.send(&b_dest, tell(n, 0, 0)).await.unwrap();
            b.send(&a_dest, tell(n, 0, 0)).await.unwrap();
        }));
    }
    for task in tasks {
        within(Duration::from_secs(5), "the sends", task)
            .await
            .unwrap();
    }
    let (ab, ba) = (
        a.connection_to(&b_dest).unwrap(),
        b.connection_to(&a_dest).unwrap(),
    );
    assert_eq!(ab.stats().envelopes_sent, 50);
    assert_eq!(ba.stats().envelopes_received, 50);
    assert_eq!(ba.stats().envelopes_sent, 50);
}

/// A destination nobody is bound to fails the send with the outproc manager's connect
/// error, and binding a destination twice is refused.
#[tokio::test]
async fn unbound_destinations_fail_like_unreachable_ones() {
    let hub = InprocHub::new();
    let (a, _a_dest, _at_a) = bind(&hub, "a", 1, false);
    let nobody = Dest::new(Location::Local(9));
    let error = a.send(&nobody, tell(0, 0, 0)).await.unwrap_err();
    assert!(matches!(error, TransportError::Connect(_)), "{error:?}");
    assert_eq!(error.dest(), &nobody);

    let again = InprocTransportManager::new(
        &hub,
        Dest::new(Location::Local(1)),
        Hello::new(ProcId::new("other", 1), 1),
        16,
        |_: NetworkEnvelope| {},
    );
    assert!(matches!(again, Err(InprocBindError::InUse { .. })));
}

/// Dropping the peer fails the request in flight to it with `Disconnected` at once,
/// publishes the loss, and later sends fail to connect.
#[tokio::test]
async fn a_dropped_peer_fails_requests_and_is_reported_lost() {
    let hub = InprocHub::new();
    let (a, _a_dest, _at_a) = bind(&hub, "a", 1, false);
    let (b, b_dest, mut at_b) = bind(&hub, "b", 2, false);
    let mut events = a.subscribe();
    let a = Arc::new(a);
    let request = {
        let (a, b_dest) = (a.clone(), b_dest.clone());
        tokio::spawn(async move {
            a.request(&b_dest, tell(1, 2, 0), Duration::from_secs(30))
                .await
        })
    };
    within(Duration::from_secs(5), "the request at b", at_b.recv())
        .await
        .unwrap();
    drop(b);
    let outcome = within(Duration::from_secs(5), "the request failing", request)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(TransportError::Request {
                source: RequestError::Disconnected { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        within(Duration::from_secs(5), "connected", events.recv())
            .await
            .unwrap(),
        DestEvent::Connected(b_dest.clone())
    );
    assert_eq!(
        within(Duration::from_secs(5), "lost", events.recv())
            .await
            .unwrap(),
        DestEvent::Lost(b_dest.clone())
    );
    assert!(!a.has_dest(&b_dest));
    assert!(matches!(
        a.send(&b_dest, tell(1, 2, 1)).await,
        Err(TransportError::Connect(_))
    ));
}
