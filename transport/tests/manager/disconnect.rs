//! Losing the peer: in-flight requests fail at once, and the peer's return reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_codec::EnvelopeKind;
use plexus_core::Location;
use plexus_transport::{
    Dest, InprocNetwork, RequestError, TcpConfig, TcpWireBuilder, TcpWireListener, TransportError,
    WireListener,
};

use crate::{Peer, Requests, config, manager, tell, within};

/// Sends to `dest` until one succeeds (sends fail fast while the destination backs off),
/// failing the test after 5 s.
async fn send_until_connected(manager: &plexus_transport::OutprocTransportManager, dest: &Dest) {
    within(Duration::from_secs(5), "a send reconnecting", async {
        loop {
            match manager.send(dest, tell(0, 0, 0)).await {
                Ok(()) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
}

/// Killing a TCP peer while 50 requests are in flight fails every one with
/// `Disconnected` far before its 30 s timeout; once a new listener serves the same port,
/// a send reconnects and a request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_peer_fails_in_flight_requests_and_its_return_reconnects() {
    let listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let Location::Tcp(addr) = listener.location().clone() else {
        panic!("a tcp listener has a tcp location");
    };
    let mut peer = Peer::serve(listener, Requests::Ignore);
    let manager = Arc::new(manager(
        TcpWireBuilder::new(TcpConfig::default()),
        config(2_000, 60_000),
    ));
    let dest = Dest::new(Location::Tcp(addr));

    let requests: Vec<_> = (0..50)
        .map(|n| {
            let (manager, dest) = (manager.clone(), dest.clone());
            tokio::spawn(async move {
                manager
                    .request(&dest, tell(n, 0, n), Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    for _ in 0..50 {
        let (_, envelope) = peer.next().await;
        assert!(matches!(envelope.kind, EnvelopeKind::Request { .. }));
    }

    let killed = Instant::now();
    peer.stop().await;
    for request in requests {
        let outcome = within(Duration::from_secs(5), "a request failing", request)
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
    }
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );

    let mut peer = Peer::serve(rebind(addr).await, Requests::Answer);
    send_until_connected(&manager, &dest).await;
    peer.next().await;
    let response = manager
        .request(&dest, tell(0, 0, 1), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(response.kind, EnvelopeKind::Response { .. }));
}

/// Binds `addr` again, retrying briefly in case the old socket is still releasing it.
async fn rebind(addr: SocketAddr) -> TcpWireListener {
    within(Duration::from_secs(5), "the port bound again", async {
        loop {
            match TcpWireListener::bind(addr).await {
                Ok(listener) => return listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
}

/// The same over in-process wires: requests in flight fail with `Disconnected` when the
/// peer dies, and a new listener at the same number is reached by the next sends.
#[tokio::test]
async fn in_process_peer_returning_at_the_same_number_is_reconnected() {
    let network = InprocNetwork::new();
    let mut peer = Peer::serve(network.bind(5).unwrap(), Requests::Ignore);
    let manager = Arc::new(manager(network.clone(), config(2_000, 60_000)));
    let dest = Dest::new(Location::Local(5));
    let request = {
        let (manager, dest) = (manager.clone(), dest.clone());
        tokio::spawn(async move {
            manager
                .request(&dest, tell(0, 0, 0), Duration::from_secs(30))
                .await
        })
    };
    peer.next().await;
    peer.stop().await;
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

    let mut peer = Peer::serve(network.bind(5).unwrap(), Requests::Answer);
    send_until_connected(&manager, &dest).await;
    let (connection, _) = peer.next().await;
    assert_eq!(connection, 0);
}
