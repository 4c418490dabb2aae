//! Integration tests of the handshake and the connection worker, over real loopback TCP
//! and in-memory pipes. Modules are named after the promise they check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod answer;
mod cancel;
mod disconnect;
mod fifo;
mod flow;
mod handshake;
mod liveness;
mod skipped;

use std::future::Future;
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{ActorId, ProcId, RemoteMessage};
use plexus_transport::{
    ConnectionConfig, ConnectionHandle, Hello, Negotiated, perform_handshake, spawn_connection,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The handshake timeout of every test.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A small test message.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Num(u64);

impl RemoteMessage for Num {
    const NAME: &'static str = "conn.Num";
}

/// A tell of `Num(n)` to an actor of proc `b`.
fn num(n: u64) -> NetworkEnvelope {
    let to = ActorId::new(ProcId::new("b", 1), "sink", 0);
    NetworkEnvelope::message(None, Recipient::Actor(to), EnvelopeKind::Regular, &Num(n)).unwrap()
}

/// Awaits `future` for at most `limit`, failing the test with `what` if it does not finish.
async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {limit:?}"),
    }
}

/// Two ends of one loopback TCP connection: (dialler, acceptor).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let dialled = dialled.unwrap();
    dialled.set_nodelay(true).unwrap();
    (dialled, accepted.unwrap().0)
}

/// Runs the handshake on both ends at once, as procs `a` (launch 1) and `b` (launch 2).
async fn shake<S: AsyncRead + AsyncWrite + Unpin>(
    a: &mut S,
    b: &mut S,
) -> (Negotiated, Negotiated) {
    let (na, nb) = tokio::join!(
        perform_handshake(a, Hello::new(ProcId::new("a", 1), 1), HANDSHAKE_TIMEOUT),
        perform_handshake(b, Hello::new(ProcId::new("b", 1), 2), HANDSHAKE_TIMEOUT),
    );
    (na.unwrap(), nb.unwrap())
}

/// A connection over `stream` whose inbound envelopes arrive on the returned receiver.
fn connect<S>(
    stream: S,
    negotiated: Negotiated,
    config: ConnectionConfig,
) -> (ConnectionHandle, mpsc::UnboundedReceiver<NetworkEnvelope>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = spawn_connection(stream, negotiated, config, move |envelope| {
        let _ = tx.send(envelope);
    })
    .unwrap();
    (handle, rx)
}

/// A connection on the dialling end of a loopback TCP pair and the raw accepted stream,
/// after the handshake, for tests that play a misbehaving peer by hand.
async fn connection_and_raw_peer(
    config: ConnectionConfig,
) -> (
    ConnectionHandle,
    mpsc::UnboundedReceiver<NetworkEnvelope>,
    TcpStream,
) {
    let (mut a, mut b) = tcp_pair().await;
    let (na, _) = shake(&mut a, &mut b).await;
    let (handle, rx) = connect(a, na, config);
    (handle, rx, b)
}

/// Settings with short timers for liveness tests.
fn fast_config(ping_interval_ms: u64, idle_timeout_ms: u64) -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_millis(ping_interval_ms),
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        ..ConnectionConfig::default()
    }
}

/// Waits until `connection` reports closed, failing the test after 5 s.
async fn eventually_closed(connection: &plexus_transport::ConnectionRef) {
    within(
        Duration::from_secs(5),
        "the reference seeing the close",
        async {
            while !connection.is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
}

/// One frame holding one envelope body given as raw bytes (at most 255 of them).
fn skipped_frame(envelope: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(envelope.len() + 6);
    // Body: the flags byte, the envelope's one-byte length prefix and the envelope.
    frame.extend_from_slice(&(envelope.len() as u32 + 2).to_le_bytes());
    frame.push(0);
    frame.push(envelope.len() as u8);
    frame.extend_from_slice(envelope);
    frame
}
