//! Deterministic fault scenarios of the reliability table (R4, R5, R6, R19) over the
//! turmoil network simulator: the real manager, handshake and connection workers run on
//! simulated hosts, in simulated time, while the test partitions, holds and crashes the
//! links between them. Every run prints its seed and is bounded in simulated time.
//!
//! The addresses are the simulator's own (192.168.0.0/16, resolved from host names);
//! nothing here opens a real socket.
//!
//! This file holds the harness: the settings of the table's tests, the simulated wire,
//! the server host that records what reaches it and answers requests, and the client's
//! streaming loop. The scenarios are in the modules named after them.
// The seed and the measured figures are printed so a failing run can be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod crash;
mod determinism;
mod hold;
mod partition;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome, Recipient};
use plexus_core::{ActorId, Location, ProcId, RemoteMessage};
use plexus_transport::{
    BackoffConfig, ConnectOnceConfig, ConnectionConfig, Dest, FlowConfig, FlowTarget, Hello,
    ManagerConfig, OutprocTransportManager, Refused, Room, Wire, WireBuilder, WireError,
    perform_handshake, spawn_connection_with_flow,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// The table's test defaults: ping interval, idle timeout, handshake timeout.
const PING: Duration = Duration::from_millis(250);
const IDLE: Duration = Duration::from_secs(1);
const HANDSHAKE: Duration = Duration::from_secs(2);
/// The table's flow window, in messages, announced by the server.
const WINDOW: u32 = 64;
/// How long one dial may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The port the server host listens on.
const PORT: u16 = 7000;
/// The name of the host the client streams to.
const SERVER: &str = "server";
/// The name of the host that streams.
const CLIENT: &str = "client";

/// A sequence number carried by the stream's tells.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Seq(u64);

impl RemoteMessage for Seq {
    const NAME: &'static str = "sim.Seq";
}

/// Simulated time since the simulation started, the same on every host.
fn now() -> Duration {
    turmoil::sim_elapsed().expect("called inside the simulation")
}

/// Settings of the manager: the table's reconnect backoff (50 ms doubling to a 1 s cap,
/// no jitter, so a seed replays exactly) and connection liveness.
fn manager_config() -> ManagerConfig {
    ManagerConfig {
        connect: ConnectOnceConfig {
            connect_timeout: CONNECT_TIMEOUT,
            backoff: BackoffConfig {
                base: Duration::from_millis(50),
                max: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.0,
            },
        },
        handshake_timeout: HANDSHAKE,
        connection: connection_config(),
        health_interval: Duration::from_millis(200),
    }
}

/// Connection settings of both ends: the table's ping and idle timeout.
fn connection_config() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: PING,
        idle_timeout: IDLE,
        ..ConnectionConfig::default()
    }
}

/// A tell of `Seq(seq)` from the client's streaming actor to the server's recipient.
fn tell(seq: u64) -> NetworkEnvelope {
    let from = ActorId::new(ProcId::new(CLIENT, 1), "streamer", 0);
    let to = ActorId::new(ProcId::new(SERVER, 1), "recipient", 0);
    NetworkEnvelope::message(
        Some(from),
        Recipient::Actor(to),
        EnvelopeKind::Regular,
        &Seq(seq),
    )
    .expect("a sequence number encodes")
}

/// The server's location as the client dials it.
fn server_dest() -> Dest {
    Dest::new(Location::Tcp(SocketAddr::new(
        turmoil::lookup(SERVER),
        PORT,
    )))
}

/// What the client's wires have read: the simulated time of the last byte.
#[derive(Clone, Default)]
struct LastByte(Arc<Mutex<Option<Duration>>>);

impl LastByte {
    fn get(&self) -> Option<Duration> {
        *self.0.lock().unwrap()
    }
}

/// A simulated TCP stream that notes when it last read a byte.
struct Noting {
    stream: turmoil::net::TcpStream,
    last_byte: LastByte,
}

impl AsyncRead for Noting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            *self.last_byte.0.lock().unwrap() = Some(now());
        }
        polled
    }
}

impl AsyncWrite for Noting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Opens simulated TCP wires to `tcp://` destinations.
#[derive(Clone, Default)]
struct SimWires {
    last_byte: LastByte,
}

#[async_trait]
impl WireBuilder for SimWires {
    async fn connect(&self, dest: &Dest) -> Result<Vec<Wire>, WireError> {
        let Location::Tcp(addr) = dest.location() else {
            return Err(WireError::Unsupported {
                dest: dest.clone(),
                builder: "sim",
            });
        };
        let stream = turmoil::net::TcpStream::connect(*addr)
            .await
            .map_err(|source| WireError::Connect {
                dest: dest.clone(),
                source,
            })?;
        let noting = Noting {
            stream,
            last_byte: self.last_byte.clone(),
        };
        Ok(vec![Wire::new(noting, format!("sim://{addr}"))])
    }
}

/// One tell as the server saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Arrival {
    seq: u64,
    /// Simulated time of its arrival.
    at: Duration,
    /// The launch of the server that received it.
    launch: u64,
}

/// What the server host records, shared with the test (hosts run in this process).
#[derive(Clone, Default)]
struct ServerLog {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// Incremented on every start of the server host, so a restart is a new launch.
    launches: Arc<AtomicU64>,
    /// Why each of the server's connections ended, with the simulated time.
    closes: Arc<Mutex<Vec<(Duration, String)>>>,
}

impl ServerLog {
    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    fn closes(&self) -> Vec<(Duration, String)> {
        self.closes.lock().unwrap().clone()
    }
}

/// The server's receiving end of one connection, as its inbound handler and its flow
/// target: records tells, queues request ids to be answered, and always has room.
struct Recorder {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    launch: u64,
    answers: mpsc::UnboundedSender<u64>,
}

impl Recorder {
    fn take(&self, envelope: NetworkEnvelope) {
        if let Some(id) = envelope.kind.request_id() {
            let _ = self.answers.send(id);
        } else if let Ok(Seq(seq)) = envelope.decode_as::<Seq>() {
            self.arrivals.lock().unwrap().push(Arrival {
                seq,
                at: now(),
                launch: self.launch,
            });
        }
    }
}

impl FlowTarget for Recorder {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        self.take(envelope);
        Ok(())
    }

    async fn wait_for_room(&self, _recipient: &Recipient) -> Room {
        Room::Available
    }
}

/// Runs the server host: accepts connections, handshakes as proc `server` (a new launch
/// id per start) with the table's flow window, records every tell and answers every
/// request `Ok`.
async fn serve(log: ServerLog) -> turmoil::Result {
    let launch = log.launches.fetch_add(1, Ordering::SeqCst) + 1;
    let listener =
        turmoil::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT))
            .await?;
    loop {
        let (stream, from) = listener.accept().await?;
        let log = log.clone();
        tokio::spawn(async move {
            let mut wire = Wire::new(stream, format!("sim://{from}"));
            let hello = Hello::new(ProcId::new(SERVER, 1), launch).with_flow(FlowConfig {
                window_messages: WINDOW,
                ..FlowConfig::default()
            });
            let Ok(negotiated) = perform_handshake(&mut wire, hello, HANDSHAKE).await else {
                return;
            };
            let (answer_tx, mut answers) = mpsc::unbounded_channel();
            let recorder = Arc::new(Recorder {
                arrivals: log.arrivals.clone(),
                launch,
                answers: answer_tx,
            });
            let inbound = {
                let recorder = recorder.clone();
                move |envelope: NetworkEnvelope| recorder.take(envelope)
            };
            let Ok(connection) = spawn_connection_with_flow(
                wire,
                negotiated,
                connection_config(),
                inbound,
                recorder,
            ) else {
                return;
            };
            let (watched, closes) = (connection.clone(), log.closes.clone());
            tokio::spawn(async move {
                let reason = watched.closed().await;
                closes.lock().unwrap().push((now(), reason.to_string()));
            });
            while let Some(id) = answers.recv().await {
                let answer = EnvelopeKind::Response {
                    id,
                    outcome: Outcome::Ok,
                    is_last: true,
                };
                if connection
                    .send(NetworkEnvelope::control(answer))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The client's view of one run.
#[derive(Debug, Default)]
struct Stream {
    /// Sequence numbers the manager accepted (queued on a connection), in order.
    accepted: Vec<u64>,
    /// When each of `accepted` was accepted.
    accepted_at: Vec<Duration>,
    /// Sends refused while no connection could be made.
    refused: usize,
    /// The longest one accepted send waited.
    longest_send: Duration,
}

/// Sends one tell every `every` until `until` (simulated time), retrying a refused number
/// after a short pause, so the numbers accepted are 0, 1, 2, ... without a hole.
async fn stream(
    manager: &OutprocTransportManager,
    dest: &Dest,
    every: Duration,
    until: Duration,
) -> Stream {
    let mut stream = Stream::default();
    let mut seq = 0;
    while now() < until {
        let started = now();
        match manager.send(dest, tell(seq)).await {
            Ok(()) => {
                stream.longest_send = stream.longest_send.max(now() - started);
                stream.accepted.push(seq);
                stream.accepted_at.push(now());
                seq += 1;
                tokio::time::sleep(every).await;
            }
            Err(_) => {
                stream.refused += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stream
}

/// Checks that `arrivals` hold no reordering and no duplicate (strictly increasing
/// sequence numbers) and returns the gaps as (last before, first after) pairs.
fn gaps(arrivals: &[Arrival]) -> Vec<(u64, u64)> {
    for pair in arrivals.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "reordered or duplicated: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    arrivals
        .windows(2)
        .filter(|pair| pair[1].seq != pair[0].seq + 1)
        .map(|pair| (pair[0].seq, pair[1].seq))
        .collect()
}

/// A simulation with the given seed, a 1 ms tick and link latencies of 1-5 ms, bounded
/// at `duration` of simulated time.
fn simulation<'a>(seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    println!("simulation seed {seed}");
    turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .simulation_duration(duration)
        .build()
}

/// A manager on the client host that dials over simulated TCP.
fn client_manager(wires: SimWires) -> OutprocTransportManager {
    OutprocTransportManager::new(
        wires,
        Hello::new(ProcId::new(CLIENT, 1), 1),
        manager_config(),
        |_: NetworkEnvelope| {},
    )
    .expect("the test settings are valid")
}
