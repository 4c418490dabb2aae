//! Wire health: failures are noticed without a send, sends fall back in per-pair FIFO
//! order, a destination with every wire down fails fast, and the health checker repairs
//! or removes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::Location;
use plexus_transport::{
    ConnectError, Dest, InprocConfig, InprocNetwork, OutprocTransportManager, TransportError,
};

use crate::{Peer, Requests, TestBuilder, config, eventually, manager, pair_and_seq, tell};

/// An in-process network whose dials open two wires per destination.
fn two_wire_network() -> InprocNetwork {
    InprocNetwork::with_config(InprocConfig {
        wires_per_dest: 2,
        ..InprocConfig::default()
    })
}

/// A manager connected to a two-wire peer at `local:1`.
async fn connected_pair(
    builder: impl plexus_transport::WireBuilder + 'static,
    network: &InprocNetwork,
    health_ms: u64,
) -> (OutprocTransportManager, Peer, Dest) {
    let mut peer = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let manager = manager(builder, config(500, health_ms));
    let dest = Dest::new(Location::Local(1));
    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;
    assert_eq!(
        manager.transport(&dest).unwrap().healthy_wires(),
        vec![0, 1]
    );
    (manager, peer, dest)
}

/// A wire whose connection the peer closes is marked failed by the manager without any
/// send to discover it, and the other wire stays healthy.
#[tokio::test]
async fn dropped_wire_is_marked_failed_without_a_send() {
    let network = two_wire_network();
    let (manager, peer, dest) = connected_pair(network.clone(), &network, 60_000).await;
    let transport = manager.transport(&dest).unwrap();

    peer.connection(0).close();
    eventually(
        Duration::from_secs(5),
        "the dropped wire marked failed",
        || transport.healthy_wires().len() == 1,
    )
    .await;
    assert!(transport.is_healthy());
    assert_eq!(transport.failed_wires().len(), 1);
}

/// With two wires to one destination, killing one mid-stream moves its pairs to the
/// other: every pair's sends keep succeeding, the peer sees each pair's sequence numbers
/// strictly increasing, and every pair's last envelope arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_fall_back_to_the_healthy_wire_in_fifo_order() {
    const PAIRS: u64 = 16;
    const PER_PAIR: u64 = 1_000;
    let network = two_wire_network();
    let (manager, mut peer, dest) = connected_pair(network.clone(), &network, 60_000).await;
    let manager = Arc::new(manager);
    let transport = manager.transport(&dest).unwrap();
    let wires: Vec<_> = (0..PAIRS)
        .map(|p| transport.wire_for(&tell(p, p, 0)).unwrap())
        .collect();
    assert!(
        wires.contains(&0) && wires.contains(&1),
        "the pairs do not spread over both wires: {wires:?}"
    );

    let senders: Vec<_> = (0..PAIRS)
        .map(|p| {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move {
                for seq in 1..=PER_PAIR {
                    manager.send(&dest, tell(p, p, seq)).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let mut last: HashMap<(u64, u64), u64> = HashMap::new();
    let mut killed = false;
    let mut received = 0;
    while last.len() < PAIRS as usize || last.values().any(|&seq| seq < PER_PAIR) {
        let (_, envelope) = peer.next().await;
        let (sender, recipient, seq) = pair_and_seq(&envelope);
        let previous = last.insert((sender, recipient), seq).unwrap_or(0);
        assert!(
            seq > previous,
            "pair ({sender}, {recipient}) got {seq} after {previous}"
        );
        received += 1;
        if !killed && received == 2_000 {
            peer.connection(0).close();
            killed = true;
        }
    }
    assert!(killed, "the wire was not killed mid-stream");
    for sender in senders {
        crate::within(Duration::from_secs(10), "a sender finishing", sender)
            .await
            .unwrap();
    }
    assert_eq!(transport.healthy_wires().len(), 1);
}

/// With every wire of a destination down and a builder that never returns, a send fails
/// within the connect timeout (plus the settle grace) instead of waiting.
#[tokio::test]
async fn all_wires_down_send_fails_within_the_connect_timeout() {
    let network = two_wire_network();
    let builder = TestBuilder::counting(network.clone(), Duration::ZERO).hanging_later();
    let (manager, peer, dest) = connected_pair(builder.clone(), &network, 60_000).await;
    let transport = manager.transport(&dest).unwrap();

    peer.stop().await;
    eventually(Duration::from_secs(5), "every wire marked failed", || {
        !transport.is_healthy()
    })
    .await;
    let started = Instant::now();
    let outcome = manager.send(&dest, tell(0, 0, 1)).await;
    let took = started.elapsed();
    assert!(
        matches!(
            outcome,
            Err(TransportError::Connect(ConnectError::Timeout { .. }))
        ),
        "{outcome:?}"
    );
    // 500 ms connect timeout, and a waiter's own cut-off one second of grace later.
    assert!(
        took < Duration::from_millis(1_600),
        "the send took {took:?}"
    );
    assert_eq!(builder.calls(), 2, "the send did not dial again");
}

/// The health checker reconnects the failed wire of a partly healthy destination, and
/// removes a destination whose every wire is down.
#[tokio::test]
async fn health_checker_reconnects_failed_wires_and_removes_dead_dests() {
    let network = two_wire_network();
    let (manager, peer, dest) = connected_pair(network.clone(), &network, 50).await;
    let transport = manager.transport(&dest).unwrap();

    peer.connection(1).close();
    eventually(
        Duration::from_secs(5),
        "the failed wire reconnected",
        || peer.accepted() == 4 && transport.healthy_wires() == vec![0, 1],
    )
    .await;
    assert!(
        Arc::ptr_eq(&manager.transport(&dest).unwrap(), &transport),
        "the transport was replaced instead of repaired"
    );

    peer.stop().await;
    eventually(
        Duration::from_secs(5),
        "the dead destination removed",
        || !manager.has_dest(&dest),
    )
    .await;
    assert_eq!(manager.dest_count(), 0);
}

/// A pair that fell back while its wire was down stays on the fallback wire after the
/// health checker reconnects its wire, so its envelopes queued there are not overtaken;
/// a pair that sent nothing meanwhile goes back to its preferred wire, and the peer sees
/// every pair's sequence numbers in order.
#[tokio::test]
async fn reconnected_wire_does_not_take_back_pairs_that_fell_back() {
    let network = two_wire_network();
    let (manager, mut peer, dest) = connected_pair(network.clone(), &network, 50).await;
    let transport = manager.transport(&dest).unwrap();
    let on_wire_0: Vec<u64> = (1..64)
        .filter(|&p| transport.wire_for(&tell(p, p, 0)) == Some(0))
        .take(4)
        .collect();
    assert_eq!(on_wire_0.len(), 4, "too few pairs prefer wire 0");
    let (moved, idle) = (&on_wire_0[..2], &on_wire_0[2..]);

    peer.connection(0).close();
    eventually(Duration::from_secs(5), "wire 0 marked failed", || {
        transport.healthy_wires() == vec![1]
    })
    .await;
    for &p in moved {
        manager.send(&dest, tell(p, p, 1)).await.unwrap();
    }
    eventually(Duration::from_secs(5), "wire 0 reconnected", || {
        transport.healthy_wires() == vec![0, 1]
    })
    .await;
    for &p in moved {
        assert_eq!(
            transport.wire_for(&tell(p, p, 0)),
            Some(1),
            "pair {p} moved back"
        );
    }
    for &p in idle {
        assert_eq!(
            transport.wire_for(&tell(p, p, 0)),
            Some(0),
            "pair {p} did not return"
        );
    }

    for seq in 2..=100 {
        for &p in &on_wire_0 {
            manager.send(&dest, tell(p, p, seq)).await.unwrap();
        }
    }
    let mut last: HashMap<u64, u64> = HashMap::new();
    while on_wire_0.iter().any(|p| last.get(p) != Some(&100)) {
        let (_, envelope) = peer.next().await;
        let (sender, _, seq) = pair_and_seq(&envelope);
        let previous = last.insert(sender, seq).unwrap_or(0);
        assert!(seq > previous, "pair {sender} got {seq} after {previous}");
    }
}

/// With three wires, the failure of one moves only the pairs that were on it: every pair
/// on the other two keeps its wire (rendezvous hashing, not `hash % healthy wires`).
#[tokio::test]
async fn a_failed_wire_moves_only_its_own_pairs() {
    let network = InprocNetwork::with_config(InprocConfig {
        wires_per_dest: 3,
        ..InprocConfig::default()
    });
    let mut peer = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let manager = manager(network.clone(), config(500, 60_000));
    let dest = Dest::new(Location::Local(1));
    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;
    let transport = manager.transport(&dest).unwrap();
    assert_eq!(transport.healthy_wires(), vec![0, 1, 2]);
    let before: Vec<_> = (0..300)
        .map(|p| transport.wire_for(&tell(p, p, 0)).unwrap())
        .collect();
    for wire in 0..3 {
        assert!(before.contains(&wire), "no pair on wire {wire}");
    }

    peer.connection(0).close();
    eventually(Duration::from_secs(5), "wire 0 marked failed", || {
        transport.healthy_wires() == vec![1, 2]
    })
    .await;
    for (p, &was) in before.iter().enumerate() {
        let now = transport.wire_for(&tell(p as u64, p as u64, 0)).unwrap();
        if was == 0 {
            assert_ne!(now, 0, "pair {p} stayed on the failed wire");
        } else {
            assert_eq!(now, was, "pair {p} moved off its healthy wire {was}");
        }
    }
}
