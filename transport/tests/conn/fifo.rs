//! Ordering and batching over real TCP.

use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome};
use plexus_transport::{ConnectionConfig, RequestError};
use tokio::io::duplex;

use crate::{Num, connect, num, shake, tcp_pair, within};

const COUNT: u64 = 10_000;

/// 10,000 envelopes sent each way at once arrive complete and in order, and the writer
/// packs many envelopes into each write.
#[tokio::test]
async fn ten_thousand_each_way_arrive_in_order_in_batches() {
    let (mut a, mut b) = tcp_pair().await;
    let (na, nb) = shake(&mut a, &mut b).await;
    let (ha, mut rx_a) = connect(a, na, ConnectionConfig::default());
    let (hb, mut rx_b) = connect(b, nb, ConnectionConfig::default());

    let send_a = {
        let ha = ha.clone();
        tokio::spawn(async move {
            for n in 0..COUNT {
                ha.send(num(n)).await.unwrap();
            }
        })
    };
    let send_b = {
        let hb = hb.clone();
        tokio::spawn(async move {
            for n in 0..COUNT {
                hb.send(num(n)).await.unwrap();
            }
        })
    };
    within(
        Duration::from_secs(30),
        "all 10,000 envelopes each way",
        async {
            for n in 0..COUNT {
                let at_b = rx_b.recv().await.unwrap();
                assert_eq!(
                    at_b.decode_as::<Num>().unwrap(),
                    Num(n),
                    "a → b out of order"
                );
                let at_a = rx_a.recv().await.unwrap();
                assert_eq!(
                    at_a.decode_as::<Num>().unwrap(),
                    Num(n),
                    "b → a out of order"
                );
            }
        },
    )
    .await;
    send_a.await.unwrap();
    send_b.await.unwrap();

    for stats in [ha.stats(), hb.stats()] {
        assert!(stats.envelopes_sent >= COUNT, "{stats:?}");
        // Batching: a write per envelope would make these equal.
        assert!(stats.writes * 10 < stats.envelopes_sent, "{stats:?}");
    }
    assert!(ha.close_reason().is_none());
}

/// A request resolves with the response carrying its id, and the response is not handed
/// to the inbound handler.
#[tokio::test]
async fn a_request_resolves_on_its_response() {
    let (mut a, mut b) = duplex(64 * 1024);
    let (na, nb) = shake(&mut a, &mut b).await;
    let (ha, mut rx_a) = connect(a, na, ConnectionConfig::default());
    let (hb, mut rx_b) = connect(b, nb, ConnectionConfig::default());

    let answer = tokio::spawn(async move {
        let request = rx_b.recv().await.unwrap();
        let EnvelopeKind::Request { id } = request.kind else {
            panic!("expected a request, got {:?}", request.kind);
        };
        let n = request.decode_as::<Num>().unwrap().0;
        let mut response = num(n + 1);
        response.kind = EnvelopeKind::Response {
            id,
            outcome: Outcome::Ok,
            is_last: true,
        };
        hb.send(response).await.unwrap();
        // A second request is answered `Failed`.
        let request = rx_b.recv().await.unwrap();
        let id = request.kind.request_id().unwrap();
        hb.send(NetworkEnvelope::control(EnvelopeKind::Response {
            id,
            outcome: Outcome::Failed,
            is_last: true,
        }))
        .await
        .unwrap();
        hb
    });
    let response = within(
        Duration::from_secs(5),
        "the response",
        ha.request(num(41), Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(response.decode_as::<Num>().unwrap(), Num(42));
    let failed = ha
        .request(num(1), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(failed, RequestError::Failed { .. }), "{failed:?}");
    let _hb = answer.await.unwrap();
    assert_eq!(ha.requests_in_flight(), 0);
    assert!(
        rx_a.try_recv().is_err(),
        "a response leaked to the inbound handler"
    );
}

/// Several tasks sending on one connection while its peer echoes every envelope back (so
/// reads keep allowing direct writes) each see their own envelopes arrive in order: a
/// send written on its task never overtakes one queued before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_queued_sends_keep_each_senders_order() {
    const SENDERS: u64 = 4;
    const EACH: u64 = 2_000;
    let (mut a, mut b) = tcp_pair().await;
    let (na, nb) = shake(&mut a, &mut b).await;
    let (ha, mut rx_a) = connect(a, na, ConnectionConfig::default());
    let (hb, mut rx_b) = connect(b, nb, ConnectionConfig::default());
    let echo = tokio::spawn(async move {
        while let Some(envelope) = rx_b.recv().await {
            if hb.send(envelope).await.is_err() {
                break;
            }
        }
    });
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let ha = ha.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    ha.send(num(sender * EACH + n)).await.unwrap();
                    if n % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    within(
        Duration::from_secs(30),
        "every sender's envelopes echoed back in order",
        async {
            let mut next = vec![0u64; SENDERS as usize];
            for _ in 0..SENDERS * EACH {
                let Num(value) = rx_a.recv().await.unwrap().decode_as::<Num>().unwrap();
                let sender = (value / EACH) as usize;
                assert_eq!(value % EACH, next[sender], "sender {sender} out of order");
                next[sender] += 1;
            }
        },
    )
    .await;
    for sender in senders {
        sender.await.unwrap();
    }
    drop(ha);
    echo.abort();
}
