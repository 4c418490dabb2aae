//! Answering on the connection an envelope came from, through a weak `ConnectionRef`.

use std::sync::Mutex;
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome};
use plexus_transport::{
    ConnectionConfig, ConnectionRef, Inbound, SendError, TrySendError, spawn_connection,
};
use tokio::sync::mpsc;

use crate::{HANDSHAKE_TIMEOUT, num, shake, tcp_pair, within};

/// An inbound handler that answers every request on the connection it arrived on, from
/// a task, and keeps the last `ConnectionRef` it saw.
struct Answering {
    requests: mpsc::UnboundedSender<(u64, ConnectionRef)>,
    last: Mutex<Option<ConnectionRef>>,
}

impl Inbound for Answering {
    fn deliver(&self, _envelope: NetworkEnvelope) {
        panic!("the reader always calls deliver_from");
    }

    fn deliver_from(&self, envelope: NetworkEnvelope, from: &ConnectionRef) {
        *self.last.lock().unwrap() = Some(from.clone());
        if let Some(id) = envelope.kind.request_id() {
            let _ = self.requests.send((id, from.clone()));
        }
    }
}

/// A request sent over TCP is answered by the peer's handler on the connection it came
/// from, found only through `deliver_from`; the weak reference does not keep that
/// connection open once its handle is dropped, and its sends then hand the envelope back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_on_the_connection_it_came_from() {
    let (mut a, mut b) = tcp_pair().await;
    let (na, nb) = shake(&mut a, &mut b).await;
    let a = spawn_connection(a, na, ConnectionConfig::default(), |_| {}).unwrap();
    let (requests, mut incoming) = mpsc::unbounded_channel();
    let handler = std::sync::Arc::new(Answering {
        requests,
        last: Mutex::new(None),
    });
    let b = spawn_connection(
        b,
        nb,
        ConnectionConfig::default(),
        SharedAnswering(handler.clone()),
    )
    .unwrap();
    tokio::spawn(async move {
        while let Some((id, from)) = incoming.recv().await {
            let answer = EnvelopeKind::Response {
                id,
                outcome: Outcome::Ok,
                is_last: true,
            };
            from.send(NetworkEnvelope::control(answer)).await.unwrap();
        }
    });

    for n in 0..10 {
        let response = a.request(num(n), HANDSHAKE_TIMEOUT).await.unwrap();
        assert!(matches!(
            response.kind,
            EnvelopeKind::Response {
                outcome: Outcome::Ok,
                ..
            }
        ));
    }

    let from = handler.last.lock().unwrap().clone().unwrap();
    assert!(!from.is_closed());
    drop(b);
    within(Duration::from_secs(5), "the connection closing", a.closed()).await;
    crate::eventually_closed(&from).await;
    assert!(matches!(from.send(num(1)).await, Err(SendError::Closed(_))));
    assert!(matches!(
        from.try_send(num(2)),
        Err(TrySendError::Closed(_))
    ));
}

/// Shares one [`Answering`] with the test.
struct SharedAnswering(std::sync::Arc<Answering>);

impl Inbound for SharedAnswering {
    fn deliver(&self, envelope: NetworkEnvelope) {
        self.0.deliver(envelope);
    }

    fn deliver_from(&self, envelope: NetworkEnvelope, from: &ConnectionRef) {
        self.0.deliver_from(envelope, from);
    }
}

/// `try_send` refuses at once with `Full` when the queue is full, and hands the envelope
/// back.
#[tokio::test]
async fn try_send_reports_a_full_queue() {
    // The peer never reads, so the writer stalls once the pipe is full.
    let (mut a, mut b) = tokio::io::duplex(64 * 1024);
    let (na, _nb) = shake(&mut a, &mut b).await;
    let config = ConnectionConfig {
        queue_capacity: 4,
        ..ConnectionConfig::default()
    };
    let a = spawn_connection(a, na, config, |_| {}).unwrap();
    let big = NetworkEnvelope {
        payload: vec![7u8; 60 * 1024].into(),
        ..num(0)
    };
    let full = within(Duration::from_secs(5), "a full queue", async {
        loop {
            match a.try_send(big.clone()) {
                Ok(()) => tokio::task::yield_now().await,
                Err(error) => return error,
            }
        }
    })
    .await;
    let TrySendError::Full(back) = full else {
        panic!("expected Full, got {full:?}");
    };
    assert_eq!(back.payload.len(), 60 * 1024);
    drop(b);
}
