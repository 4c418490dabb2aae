//! Ping, round-trip time and the idle timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_codec::{NetworkEnvelope, Recipient};
use plexus_core::ProcId;
use plexus_transport::{
    ConnectionError, FlowConfig, FlowTarget, Hello, Refused, Room, perform_handshake,
    spawn_connection_with_flow,
};
use tokio::io::AsyncReadExt;

use crate::{connect, connection_and_raw_peer, fast_config, shake, tcp_pair, within};

/// A connection with no traffic but a live peer stays open well past its idle timeout,
/// because the pings and their pongs count as traffic, and it measures a round-trip time.
#[tokio::test]
async fn ping_keeps_a_quiet_live_connection_open() {
    let (mut a, mut b) = tcp_pair().await;
    let (na, nb) = shake(&mut a, &mut b).await;
    let config = fast_config(50, 600);
    let (ha, _rx_a) = connect(a, na, config.clone());
    let (hb, _rx_b) = connect(b, nb, config);

    // More than three idle timeouts of silence from the application.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(ha.close_reason().is_none(), "{:?}", ha.close_reason());
    assert!(hb.close_reason().is_none(), "{:?}", hb.close_reason());
    let rtt = ha.rtt().expect("a pong was received");
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    assert!(hb.rtt().is_some());
}

/// A peer that finished the handshake and then sends nothing, not even pongs, is closed
/// by the idle timeout: not before it, and not much after.
#[tokio::test]
async fn idle_timeout_closes_a_silent_peer() {
    let idle = Duration::from_millis(300);
    let (handle, _rx, mut peer) = connection_and_raw_peer(fast_config(50, 300)).await;
    let start = Instant::now();
    // The peer drains what it gets (our pings) but never answers.
    let drain = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while peer.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let reason = within(Duration::from_secs(5), "the idle timeout", handle.closed()).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(reason, ConnectionError::IdleTimeout { idle: i } if i == idle),
        "{reason:?}"
    );
    assert!(elapsed >= idle, "closed after {elapsed:?}");
    assert!(
        elapsed < idle + Duration::from_secs(2),
        "closed after {elapsed:?}"
    );
    // Closing dropped the stream, so the peer sees the end.
    within(Duration::from_secs(5), "the peer seeing the close", drain)
        .await
        .unwrap();
}

/// Takes every envelope; the idle test below never sends one.
struct Sink;

impl FlowTarget for Sink {
    fn try_deliver(&self, _envelope: NetworkEnvelope) -> Result<(), Refused> {
        Ok(())
    }

    async fn wait_for_room(&self, _recipient: &Recipient) -> Room {
        Room::Available
    }
}

/// The idle timeout also closes a silent peer of a flow-controlled connection, whose
/// reader flushes idle credit every ping interval: the flushes are not traffic, and do
/// not push the deadline back.
#[tokio::test]
async fn idle_timeout_closes_a_silent_peer_with_flow_control() {
    let idle = Duration::from_millis(300);
    let (mut a, mut b) = tcp_pair().await;
    let (na, _) = tokio::join!(
        perform_handshake(
            &mut a,
            Hello::new(ProcId::new("a", 1), 1).with_flow(FlowConfig::default()),
            Duration::from_secs(5)
        ),
        perform_handshake(
            &mut b,
            Hello::new(ProcId::new("b", 1), 2),
            Duration::from_secs(5)
        ),
    );
    let start = Instant::now();
    let handle =
        spawn_connection_with_flow(a, na.unwrap(), fast_config(50, 300), |_| {}, Arc::new(Sink))
            .unwrap();
    let drain = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while b.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let reason = within(Duration::from_secs(5), "the idle timeout", handle.closed()).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(reason, ConnectionError::IdleTimeout { idle: i } if i == idle),
        "{reason:?}"
    );
    assert!(elapsed >= idle, "closed after {elapsed:?}");
    within(Duration::from_secs(5), "the peer seeing the close", drain)
        .await
        .unwrap();
}
