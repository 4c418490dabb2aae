//! Wires: round trips over every built-in transport, and errors that name the dest.

use std::time::Duration;

use plexus_core::Location;
use plexus_transport::{
    Dest, InprocNetwork, TcpConfig, TcpWireBuilder, TcpWireListener, Wire, WireBuilder, WireError,
    WireListener,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

/// Sends a message each way and checks both arrive intact.
async fn round_trip(mut client: Wire, mut server: Wire) {
    let exchange = async {
        client.write_all(b"ping from client").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0; 16];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping from client");
        server.write_all(b"pong").await.unwrap();
        server.flush().await.unwrap();
        let mut buf = [0; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // A closed end reads as EOF on the other.
        drop(server);
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    };
    timeout(BOUND, exchange)
        .await
        .expect("round trip did not finish");
}

/// Dials and accepts `count` wires concurrently.
async fn dial(
    builder: &impl WireBuilder,
    listener: &mut impl WireListener,
    count: usize,
) -> (Vec<Wire>, Vec<Wire>) {
    let dest = Dest::new(listener.location().clone());
    let accept_all = async {
        let mut accepted = Vec::new();
        for _ in 0..count {
            accepted.push(listener.accept().await.unwrap());
        }
        accepted
    };
    let (dialed, accepted) = timeout(BOUND, async {
        tokio::join!(builder.connect(&dest), accept_all)
    })
    .await
    .expect("dial and accept did not finish");
    (dialed.unwrap(), accepted)
}

/// Bytes written on a dialed TCP wire (with explicit buffer sizes) arrive on the accepted
/// one and back, and the dialed wire names its dest as the peer.
#[tokio::test]
async fn tcp_round_trip_on_loopback() {
    let mut listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let builder = TcpWireBuilder::new(TcpConfig {
        send_buffer_size: Some(64 * 1024),
        recv_buffer_size: Some(64 * 1024),
        ..TcpConfig::default()
    });
    let (mut dialed, mut accepted) = dial(&builder, &mut listener, 1).await;
    let client = dialed.remove(0);
    assert_eq!(client.peer(), listener.location().to_string());
    assert!(accepted[0].peer().starts_with("tcp://127.0.0.1:"));
    round_trip(client, accepted.remove(0)).await;
}

/// `wires_per_dest` opens that many independent wires in one `connect`.
#[tokio::test]
async fn tcp_opens_wires_per_dest() {
    let mut listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let builder = TcpWireBuilder::new(TcpConfig {
        wires_per_dest: 3,
        ..TcpConfig::default()
    });
    let (dialed, accepted) = dial(&builder, &mut listener, 3).await;
    assert_eq!(dialed.len(), 3);
    assert_eq!(accepted.len(), 3);
}

/// Dialing a closed port fails with `Connect`, whose message names the dest.
#[tokio::test]
async fn tcp_closed_port_names_the_dest() {
    let listener = TcpWireListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dest = Dest::new(listener.location().clone());
    drop(listener);
    let error = timeout(BOUND, TcpWireBuilder::default().connect(&dest))
        .await
        .expect("dialing a closed port hung")
        .unwrap_err();
    assert!(matches!(error, WireError::Connect { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&dest.to_string()),
        "error does not name the dest: {error}"
    );
}

/// A dial that the peer never completes gives up at the connect timeout with `Timeout`.
/// The peer is a listener with a full accept queue, whose SYNs the kernel drops.
#[tokio::test]
async fn tcp_connect_timeout_is_honoured() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let dest = Dest::new(Location::Tcp(addr));
    // Fill the accept queue; the listener never accepts.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        match timeout(Duration::from_millis(200), socket.connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let connect_timeout = Duration::from_millis(300);
    let builder = TcpWireBuilder::new(TcpConfig {
        connect_timeout,
        ..TcpConfig::default()
    });
    let started = std::time::Instant::now();
    let error = timeout(BOUND, builder.connect(&dest))
        .await
        .expect("the connect timeout was not honoured")
        .unwrap_err();
    let elapsed = started.elapsed();
    match &error {
        WireError::Timeout { dest: d, timeout } => {
            assert_eq!(d, &dest);
            assert_eq!(*timeout, connect_timeout);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed >= connect_timeout, "gave up early: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(3),
        "gave up late: {elapsed:?}"
    );
    assert!(error.to_string().contains(&dest.to_string()));
    drop(listener);
}

/// A builder asked for a location of another scheme refuses with `Unsupported`.
#[tokio::test]
async fn builders_refuse_other_schemes() {
    let error = TcpWireBuilder::default()
        .connect(&"local:1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WireError::Unsupported { builder: "tcp", .. }),
        "{error:?}"
    );
    let error = InprocNetwork::new()
        .connect(&"tcp://127.0.0.1:9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, WireError::Unsupported { .. }), "{error:?}");
}

/// An in-process wire carries bytes both ways between the dialer and the listener.
#[tokio::test]
async fn inproc_round_trip() {
    let network = InprocNetwork::new();
    let mut listener = network.bind(3).unwrap();
    let (mut dialed, mut accepted) = dial(&network, &mut listener, 1).await;
    assert_eq!(dialed[0].peer(), "local:3");
    round_trip(dialed.remove(0), accepted.remove(0)).await;
}

/// Dialing an unbound number is `Refused` naming the dest; a bound number cannot be bound
/// twice; dropping the listener unbinds it so dials are refused and it can be bound again.
#[tokio::test]
async fn inproc_refuses_unbound_numbers() {
    let network = InprocNetwork::new();
    let dest: Dest = "local:9".parse().unwrap();
    let error = network.connect(&dest).await.unwrap_err();
    assert!(matches!(error, WireError::Refused { .. }), "{error:?}");
    assert!(error.to_string().contains("local:9"), "{error}");

    let listener = network.bind(9).unwrap();
    match network.bind(9) {
        Err(WireError::Bind { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
        }
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    assert!(network.is_bound(9));
    drop(listener);
    assert!(!network.is_bound(9));
    assert!(matches!(
        network.connect(&dest).await,
        Err(WireError::Refused { .. })
    ));
    let mut listener = network.bind(9).unwrap();
    let (dialed, _accepted) = dial(&network, &mut listener, 1).await;
    assert_eq!(dialed.len(), 1);
}

#[cfg(all(unix, feature = "unix"))]
mod unix {
    use plexus_transport::{UnixConfig, UnixWireBuilder, UnixWireListener};

    use super::*;

    /// Bytes cross a unix socket in a temp dir both ways.
    #[tokio::test]
    async fn unix_round_trip_in_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut listener = UnixWireListener::bind(dir.path().join("gw.sock")).unwrap();
        let builder = UnixWireBuilder::new(UnixConfig {
            wires_per_dest: 2,
            ..UnixConfig::default()
        });
        let (mut dialed, mut accepted) = dial(&builder, &mut listener, 2).await;
        assert_eq!(dialed.len(), 2);
        round_trip(dialed.remove(1), accepted.remove(1)).await;
        round_trip(dialed.remove(0), accepted.remove(0)).await;
    }

    /// Dialing a path where nothing listens fails with `Connect` naming the dest.
    #[tokio::test]
    async fn unix_missing_socket_names_the_dest() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Dest::new(Location::Unix(dir.path().join("absent.sock")));
        let error = UnixWireBuilder::default().connect(&dest).await.unwrap_err();
        assert!(matches!(error, WireError::Connect { .. }), "{error:?}");
        assert!(error.to_string().contains(&dest.to_string()), "{error}");
    }
}
