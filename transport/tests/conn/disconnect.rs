//! Losing the peer: in-flight requests fail at once.

use std::time::{Duration, Instant};

use plexus_transport::{ConnectionConfig, RequestError};
use tokio::io::AsyncReadExt;

use crate::{connection_and_raw_peer, num, within};

/// Killing the peer (dropping its stream) while requests are in flight fails every one of
/// them with `Disconnected` at once, far before their 30 s timeout; later sends fail.
#[tokio::test]
async fn killing_the_peer_fails_in_flight_requests_at_once() {
    let (handle, _rx, mut peer) = connection_and_raw_peer(ConnectionConfig::default()).await;
    let requests: Vec<_> = (0..100)
        .map(|n| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.request(num(n), Duration::from_secs(30)).await })
        })
        .collect();
    within(Duration::from_secs(5), "100 requests in flight", async {
        while handle.requests_in_flight() < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Let some of them reach the peer before it dies mid-stream.
    let mut buf = [0u8; 64];
    let n = within(
        Duration::from_secs(5),
        "bytes at the peer",
        peer.read(&mut buf),
    )
    .await;
    assert!(n.unwrap() > 0);

    let killed = Instant::now();
    drop(peer);
    for request in requests {
        let outcome = within(Duration::from_secs(5), "the request failing", request)
            .await
            .unwrap();
        assert!(
            matches!(outcome, Err(RequestError::Disconnected { .. })),
            "{outcome:?}"
        );
    }
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(handle.requests_in_flight(), 0);
    within(Duration::from_secs(5), "the close", handle.closed()).await;
    assert!(
        handle.send(num(0)).await.is_err(),
        "send after the close succeeded"
    );
    let late = handle.request(num(0), Duration::from_secs(30)).await;
    assert!(
        matches!(late, Err(RequestError::Disconnected { .. })),
        "{late:?}"
    );
}
