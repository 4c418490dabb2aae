//! Destination events: subscribers hear of a lost destination the moment it is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_core::Location;
use plexus_transport::{Dest, DestEvent, TcpConfig, TcpWireBuilder, TcpWireListener, WireListener};

use crate::{Peer, Requests, config, manager, tell, within};

/// A TCP peer that dies is reported lost by both subscriptions far sooner than any
/// timeout (idle 30 s, health check 60 s), and the destination leaves the table; the
/// next dial publishes `Connected` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tcp_peer_is_reported_lost_at_once() {
    let listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let Location::Tcp(addr) = listener.location().clone() else {
        panic!("a tcp listener has a tcp location");
    };
    let mut peer = Peer::serve(listener, Requests::Answer);
    let manager = Arc::new(manager(
        TcpWireBuilder::new(TcpConfig::default()),
        config(2_000, 60_000),
    ));
    let mut events = manager.subscribe();
    let mut lost = manager.subscribe_lost();
    let dest = Dest::new(Location::Tcp(addr));

    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;
    let connected = within(Duration::from_secs(5), "a connected event", events.recv())
        .await
        .unwrap();
    assert_eq!(connected, DestEvent::Connected(dest.clone()));

    let killed = Instant::now();
    peer.stop().await;
    let event = within(Duration::from_secs(5), "a lost event", events.recv())
        .await
        .unwrap();
    assert_eq!(event, DestEvent::Lost(dest.clone()));
    let lost_dest = within(Duration::from_secs(5), "a lost dest", lost.recv())
        .await
        .unwrap();
    assert_eq!(lost_dest, dest);
    let took = killed.elapsed();
    println!("loss of a killed tcp peer reported after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        !manager.has_dest(&dest),
        "a lost destination leaves the table"
    );
    // Exactly one loss per transport.
    assert!(events.try_recv().is_err());
}

/// Closing a destination publishes its loss once; closing it again publishes nothing.
#[tokio::test]
async fn closing_a_destination_reports_it_lost_once() {
    let network = plexus_transport::InprocNetwork::new();
    let mut peer = Peer::serve(network.bind(3).unwrap(), Requests::Answer);
    let manager = manager(network.clone(), config(2_000, 60_000));
    let mut lost = manager.subscribe_lost();
    let dest = Dest::new(Location::Local(3));
    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;

    assert!(manager.close_transport(&dest));
    let lost_dest = within(Duration::from_secs(5), "a lost dest", lost.recv())
        .await
        .unwrap();
    assert_eq!(lost_dest, dest);
    assert!(!manager.close_transport(&dest));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(lost.try_recv().is_err(), "a second loss was published");
}

/// With two wires, losing one is not losing the destination; losing both is.
#[tokio::test]
async fn a_destination_is_lost_only_with_its_last_wire() {
    let network = plexus_transport::InprocNetwork::with_config(plexus_transport::InprocConfig {
        wires_per_dest: 2,
        ..plexus_transport::InprocConfig::default()
    });
    let mut peer = Peer::serve(network.bind(4).unwrap(), Requests::Answer);
    let manager = manager(network.clone(), config(2_000, 60_000));
    let mut lost = manager.subscribe_lost();
    let dest = Dest::new(Location::Local(4));
    manager.send(&dest, tell(0, 0, 0)).await.unwrap();
    peer.next().await;
    crate::eventually(Duration::from_secs(5), "two accepted wires", || {
        peer.accepted() == 2
    })
    .await;

    peer.connection(0).close();
    let transport = manager.transport(&dest).unwrap();
    crate::eventually(Duration::from_secs(5), "wire 0 failed", || {
        transport.failed_wires().len() == 1
    })
    .await;
    assert!(lost.try_recv().is_err(), "one wire down is not a loss");

    peer.connection(1).close();
    let lost_dest = within(Duration::from_secs(5), "a lost dest", lost.recv())
        .await
        .unwrap();
    assert_eq!(lost_dest, dest);
    assert!(transport.is_lost());
}
