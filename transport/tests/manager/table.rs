//! The destination table: listing, closing one destination and closing all.

use std::time::Duration;

use plexus_core::Location;
use plexus_transport::{Dest, InprocNetwork};

use crate::{Peer, Requests, config, manager, tell, within};

/// `list_dests`, `has_dest` and `dest_count` report the connected destinations;
/// `close_transport` closes one (its peer sees the connection end) and reports whether it
/// had one; `close_all` closes the rest; a send afterwards dials again.
#[tokio::test]
async fn close_transport_close_all_and_listing_behave() {
    let network = InprocNetwork::new();
    let mut one = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let mut two = Peer::serve(network.bind(2).unwrap(), Requests::Answer);
    let manager = manager(network, config(2_000, 60_000));
    let (d1, d2) = (Dest::new(Location::Local(1)), Dest::new(Location::Local(2)));
    assert_eq!(manager.dest_count(), 0);
    assert!(manager.list_dests().is_empty());

    manager.send(&d1, tell(0, 0, 0)).await.unwrap();
    manager.send(&d2, tell(0, 0, 0)).await.unwrap();
    one.next().await;
    two.next().await;
    let mut listed = manager.list_dests();
    listed.sort();
    assert_eq!(listed, vec![d1.clone(), d2.clone()]);
    assert!(manager.has_dest(&d1) && manager.has_dest(&d2));
    assert!(!manager.has_dest(&Dest::new(Location::Local(3))));
    assert_eq!(manager.dest_count(), 2);

    assert!(manager.close_transport(&d1));
    assert!(
        !manager.close_transport(&d1),
        "closing twice found a transport"
    );
    within(
        Duration::from_secs(5),
        "peer one seeing the close",
        one.connection(0).closed(),
    )
    .await;
    assert_eq!(manager.list_dests(), vec![d2.clone()]);
    assert!(!manager.has_dest(&d1));
    assert_eq!(manager.dest_count(), 1);
    assert!(
        two.connection(0).close_reason().is_none(),
        "closing one closed the other"
    );

    manager.close_all();
    within(
        Duration::from_secs(5),
        "peer two seeing the close",
        two.connection(0).closed(),
    )
    .await;
    assert_eq!(manager.dest_count(), 0);
    assert!(manager.list_dests().is_empty());

    manager.send(&d1, tell(0, 0, 1)).await.unwrap();
    let (connection, _) = one.next().await;
    assert_eq!(
        connection, 1,
        "the send after close_transport did not dial a new connection"
    );
    assert_eq!(manager.dest_count(), 1);
}

/// Dropping the manager closes the connections of its destinations: the peer sees each
/// one end, so nothing is left running (the health checker and the wire watchers hold
/// no strong reference that would keep them open).
#[tokio::test]
async fn dropping_the_manager_closes_its_connections() {
    let network = InprocNetwork::new();
    let mut peer = Peer::serve(network.bind(1).unwrap(), Requests::Answer);
    let manager = manager(network, config(2_000, 50));
    let dest = Dest::new(Location::Local(1));
    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;

    drop(manager);
    within(
        Duration::from_secs(5),
        "the peer seeing the connection end",
        peer.connection(0).closed(),
    )
    .await;
}

/// `close_transport` over TCP right after 5,000 sends were queued loses none of them
/// and keeps their order across the close (design 3, promise 1): the closed connection
/// writes out its queue, the sends after the close go on a new connection that is only
/// dialed once the old one has ended, so the peer sees all 10,000 exactly once and in
/// the order sent, the old connection's before the new one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_transport_writes_out_its_queue() {
    use plexus_transport::{TcpConfig, TcpWireBuilder, TcpWireListener, WireListener};

    let listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dest = Dest::new(listener.location().clone());
    let mut peer = Peer::serve(listener, Requests::Answer);
    // The drain of the closed connection is cut off after half the connect timeout; a
    // loaded 2-core machine can take over a second to write 5,000 envelopes, so the
    // bound here is generous: the test checks that nothing is lost, not how fast.
    let manager = manager(
        TcpWireBuilder::new(TcpConfig::default()),
        config(30_000, 60_000),
    );
    const EACH: u64 = 5_000;
    for seq in 0..EACH {
        manager.send(&dest, tell(0, 0, seq)).await.unwrap();
    }
    assert!(manager.close_transport(&dest));
    for seq in EACH..2 * EACH {
        manager.send(&dest, tell(0, 0, seq)).await.unwrap();
    }
    for expected in 0..2 * EACH {
        let (connection, envelope) =
            within(Duration::from_secs(10), "the next envelope", peer.next()).await;
        let seq = crate::pair_and_seq(&envelope).2;
        assert_eq!(
            seq, expected,
            "out of order (seq {seq} on connection {connection})"
        );
        let on = usize::from(seq >= EACH);
        assert_eq!(connection, on, "{seq} came on connection {connection}");
    }
}
