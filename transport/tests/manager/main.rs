//! Integration tests of the outbound transport manager over in-process wires and real
//! loopback TCP. Modules are named after the promise they check; this file holds the
//! peer they talk to and the wire builders that count or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connect_once;
mod disconnect;
mod duplicate;
mod events;
mod health;
mod inproc;
mod slow_fast;
mod table;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome, Recipient};
use plexus_core::{ActorId, ProcId, RemoteMessage};
use plexus_transport::{
    BackoffConfig, ConnectOnceConfig, ConnectionConfig, ConnectionHandle, Dest, Hello,
    ManagerConfig, OutprocTransportManager, Wire, WireBuilder, WireError, WireListener,
    perform_handshake, spawn_connection,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The handshake timeout of every peer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A sequence number carried by test tells.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Seq(u64);

impl RemoteMessage for Seq {
    const NAME: &'static str = "manager.Seq";
}

/// A tell of `Seq(seq)` from local actor `sender` to peer actor `recipient`.
fn tell(sender: u64, recipient: u64, seq: u64) -> NetworkEnvelope {
    let from = ActorId::new(ProcId::new("local", 1), "sender", sender);
    let to = ActorId::new(ProcId::new("peer", 1), "recipient", recipient);
    NetworkEnvelope::message(
        Some(from),
        Recipient::Actor(to),
        EnvelopeKind::Regular,
        &Seq(seq),
    )
    .unwrap()
}

/// The (sender index, recipient index, sequence number) of an envelope made by [`tell`].
fn pair_and_seq(envelope: &NetworkEnvelope) -> (u64, u64, u64) {
    let sender = envelope.sender.as_ref().unwrap().index();
    let Recipient::Actor(recipient) = &envelope.recipient else {
        panic!("not an actor recipient: {envelope:?}");
    };
    (
        sender,
        recipient.index(),
        envelope.decode_as::<Seq>().unwrap().0,
    )
}

/// Awaits `future` for at most `limit`, failing the test with `what` if it does not finish.
async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {limit:?}"),
    }
}

/// Polls `condition` every 5 ms until it holds, failing the test with `what` after `limit`.
async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    within(limit, what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Manager settings with short bounds: connect timeout `connect_ms`, a 100 ms backoff
/// without jitter, and the health checker every `health_ms`.
fn config(connect_ms: u64, health_ms: u64) -> ManagerConfig {
    ManagerConfig {
        connect: ConnectOnceConfig {
            connect_timeout: Duration::from_millis(connect_ms),
            backoff: BackoffConfig {
                base: Duration::from_millis(100),
                max: Duration::from_millis(400),
                multiplier: 2.0,
                jitter: 0.0,
            },
        },
        health_interval: Duration::from_millis(health_ms),
        ..ManagerConfig::default()
    }
}

/// A manager of proc `local` that drops what peers send back.
fn manager(builder: impl WireBuilder + 'static, config: ManagerConfig) -> OutprocTransportManager {
    OutprocTransportManager::new(
        builder,
        Hello::new(ProcId::new("local", 1), 1),
        config,
        |_: NetworkEnvelope| {},
    )
    .unwrap()
}

/// How a [`Peer`] treats requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requests {
    /// Answers each with an `Ok` response.
    Answer,
    /// Leaves them unanswered, so they stay in flight.
    Ignore,
}

/// The far end of the manager's wires: accepts, handshakes as proc `peer` and records
/// every envelope with the index of the connection (in accept order) it came on.
struct Peer {
    received: mpsc::UnboundedReceiver<(usize, NetworkEnvelope)>,
    connections: Arc<Mutex<Vec<ConnectionHandle>>>,
    accept: JoinHandle<()>,
}

impl Peer {
    /// Serves `listener` until [`stop`](Self::stop).
    fn serve(mut listener: impl WireListener + 'static, requests: Requests) -> Peer {
        let (tx, received) = mpsc::unbounded_channel();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let table = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok(wire) = listener.accept().await {
                // Wires are accepted one at a time, so the next index is the table's length.
                let index = table.lock().unwrap().len();
                let Some(connection) = accept_one(wire, index, tx.clone(), requests).await else {
                    continue;
                };
                table.lock().unwrap().push(connection);
            }
        });
        Peer {
            received,
            connections,
            accept,
        }
    }

    /// How many connections were accepted so far.
    fn accepted(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// Connection `index`, in accept order.
    fn connection(&self, index: usize) -> ConnectionHandle {
        self.connections.lock().unwrap()[index].clone()
    }

    /// Receives the next envelope, failing the test after 5 s.
    async fn next(&mut self) -> (usize, NetworkEnvelope) {
        within(
            Duration::from_secs(5),
            "an envelope at the peer",
            self.received.recv(),
        )
        .await
        .unwrap()
    }

    /// Kills the peer: stops accepting (dropping the listener) and closes every connection.
    async fn stop(self) {
        self.accept.abort();
        let _ = self.accept.await;
        let connections: Vec<_> = self.connections.lock().unwrap().clone();
        for connection in connections {
            connection.close();
            within(
                Duration::from_secs(5),
                "the peer's close",
                connection.closed(),
            )
            .await;
        }
    }
}

/// Handshakes `wire` and runs a connection over it whose envelopes go to `tx`.
async fn accept_one(
    mut wire: Wire,
    index: usize,
    tx: mpsc::UnboundedSender<(usize, NetworkEnvelope)>,
    requests: Requests,
) -> Option<ConnectionHandle> {
    let hello = Hello::new(ProcId::new("peer", 1), 2);
    let negotiated = perform_handshake(&mut wire, hello, HANDSHAKE_TIMEOUT)
        .await
        .ok()?;
    // The envelope is recorded inside the inbound handler itself, in the order the
    // reader hands it over: a task between the reader and `tx` would let one
    // connection's backlog be overtaken by a later connection's envelopes, a reordering
    // of the harness, not of the transport. Answers need an await, so a task sends them;
    // their order does not matter.
    let (answer_tx, mut answers) = mpsc::unbounded_channel();
    let connection = spawn_connection(
        wire,
        negotiated,
        ConnectionConfig::default(),
        move |envelope: NetworkEnvelope| {
            if let (Requests::Answer, Some(id)) = (requests, envelope.kind.request_id()) {
                let _ = answer_tx.send(id);
            }
            let _ = tx.send((index, envelope));
        },
    )
    .unwrap();
    let responder = connection.clone();
    tokio::spawn(async move {
        while let Some(id) = answers.recv().await {
            let answer = EnvelopeKind::Response {
                id,
                outcome: Outcome::Ok,
                is_last: true,
            };
            if responder
                .send(NetworkEnvelope::control(answer))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Some(connection)
}

/// What a [`TestBuilder`] does on its calls after the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Later {
    /// Passes them to the inner builder too.
    Connect,
    /// Never returns from them.
    Hang,
}

/// Wraps a builder, counts its calls, and can delay the first, fail all or hang later
/// ones.
#[derive(Clone)]
struct TestBuilder {
    inner: Option<Arc<dyn WireBuilder>>,
    calls: Arc<AtomicUsize>,
    delay: Duration,
    later: Later,
}

impl TestBuilder {
    /// Counts the calls to `inner`, the first delayed by `delay` so that concurrent first
    /// sends pile up on one attempt.
    fn counting(inner: impl WireBuilder + 'static, delay: Duration) -> Self {
        TestBuilder {
            inner: Some(Arc::new(inner)),
            calls: Arc::new(AtomicUsize::new(0)),
            delay,
            later: Later::Connect,
        }
    }

    /// Fails every call with `Refused`, the first after `delay`.
    fn failing(delay: Duration) -> Self {
        TestBuilder {
            inner: None,
            calls: Arc::new(AtomicUsize::new(0)),
            delay,
            later: Later::Connect,
        }
    }

    /// This builder, hanging on every call after the first.
    fn hanging_later(mut self) -> Self {
        self.later = Later::Hang;
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl WireBuilder for TestBuilder {
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError> {
        let previous = self.calls.fetch_add(1, Ordering::SeqCst);
        if previous == 0 {
            tokio::time::sleep(self.delay).await;
        } else if self.later == Later::Hang {
            std::future::pending::<()>().await;
        }
        match &self.inner {
            Some(inner) => inner.connect(dest).await,
            None => Err(WireError::Refused {
                dest: dest.clone(),
                reason: "the test builder refuses",
            }),
        }
    }
}
