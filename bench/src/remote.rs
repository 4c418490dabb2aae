//! Remote workloads over real loopback TCP, each against a raw socket baseline of the same
//! shape measured in the same run.
//!
//! - `remote_tell`: 1,000,000 small tells from one task to an actor on a peer [`Proc`]
//!   over one TCP connection: the plexus side builds each envelope, sends it through the
//!   connection worker (batching writer, reader, flow control with the default window)
//!   and the peer delivers it with [`Proc::deliver_remote`]; done when the actor has
//!   handled the last one. The baseline writes the same count of length-prefixed postcard
//!   frames (recipient `u64` + payload `u64`) through a buffered writer, and a task on
//!   the other end reads and decodes them.
//! - `remote_ask`: 100,000 sequential asks, round-trip time, against a raw request and
//!   response of one `u64` frame each over the same kind of socket.
//!
//! `--quick` runs a tenth of each count, for CI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome, Recipient};
use plexus_core::{
    Actor, ActorId, Context, DeliveryError, ExposureCache, Handler, MailboxGauge, Proc, ProcId,
    RemoteHandlers, RemoteMessage,
};
use plexus_transport::{
    ConnectionConfig, ConnectionHandle, ConnectionRef, FlowCache, FlowConfig, FlowTarget, Hello,
    Refused, Room, perform_handshake, spawn_connection, spawn_connection_with_flow,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::report::Report;

const TELLS: u64 = 1_000_000;
const ASKS: u64 = 100_000;
/// Each side runs this many times, alternating, and the median counts.
const ROUNDS: usize = 3;
const HANDSHAKE: Duration = Duration::from_secs(5);

/// The told and asked message.
#[derive(Serialize, Deserialize)]
struct Add(u64);

impl RemoteMessage for Add {
    const NAME: &'static str = "bench.Add";
}

/// Sums what it is told; reports to `done` once it has handled `expect` tells. Answers
/// an ask with its argument.
struct Summer {
    sum: u64,
    seen: u64,
    expect: u64,
    done: Option<oneshot::Sender<u64>>,
}

impl Actor for Summer {}

impl Handler<Add> for Summer {
    type Reply = u64;
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
        self.sum = self.sum.wrapping_add(n);
        self.seen += 1;
        if self.seen == self.expect
            && let Some(done) = self.done.take()
        {
            let _ = done.send(self.sum);
        }
        n
    }
}

/// The peer proc's actors as a flow target, as a gateway provides it: delivery through
/// `deliver_remote_cached` with each flow's cache, asks answered on the connection they
/// came from.
struct ProcTarget {
    proc: Proc,
    gauges: Mutex<HashMap<String, MailboxGauge>>,
}

impl FlowTarget for ProcTarget {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        // Only reached without a connection, which this benchmark never does.
        Err(Refused::Gone(envelope))
    }

    fn try_deliver_from(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
    ) -> Result<(), Refused> {
        self.deliver(envelope, from, None)
    }

    fn try_deliver_from_cached(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        // As the gateway does: the flow's cache holds its recipient's exposure.
        let exposure = cache.get_or_insert_with(ExposureCache::default);
        self.deliver(envelope, from, Some(exposure))
    }

    async fn wait_for_room(&self, recipient: &Recipient) -> Room {
        let Recipient::Actor(actor) = recipient else {
            return Room::Gone;
        };
        let gauge = self.gauges.lock().unwrap().get(actor.name()).cloned();
        let Some(gauge) = gauge else {
            return Room::Gone;
        };
        loop {
            if gauge.is_closed() {
                return Room::Gone;
            }
            if gauge
                .capacity()
                .is_none_or(|capacity| gauge.depth() < capacity)
            {
                return Room::Available;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

impl ProcTarget {
    /// Delivers `envelope` to its actor, through `cache` when the flow has one.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value, as the transport's trait requires"
    )]
    fn deliver(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
        cache: Option<&mut ExposureCache>,
    ) -> Result<(), Refused> {
        let Recipient::Actor(actor) = &envelope.recipient else {
            return Err(Refused::Gone(envelope));
        };
        let reply = envelope
            .kind
            .request_id()
            .map(|id| answer(id, &envelope, from));
        let delivered = match cache {
            Some(cache) => self.proc.deliver_remote_cached(
                cache,
                actor,
                &envelope.name,
                &envelope.payload,
                reply,
            ),
            None => {
                self.proc
                    .deliver_remote(actor.name(), &envelope.name, &envelope.payload, reply)
            }
        };
        match delivered {
            Ok(()) => Ok(()),
            // Tells only here (the asks are sequential and never find the mailbox full):
            // the pending delivery holds just the decoded message.
            Err(DeliveryError::Full { .. }) => Err(Refused::Full(envelope)),
            Err(_) => Err(Refused::Gone(envelope)),
        }
    }
}

/// The reply callback of ask `id`: a response on the connection it came from. Core calls it
/// on the answering actor's own task when the handler returns, so it must not wait.
fn answer(id: u64, request: &NetworkEnvelope, from: &ConnectionRef) -> plexus_core::RemoteReply {
    let from = from.clone();
    let recipient = request
        .sender
        .clone()
        .map_or(Recipient::Transport, Recipient::Actor);
    Box::new(move |outcome| {
        let (outcome, payload) = match outcome {
            Ok(payload) => (Outcome::Ok, Bytes::from(payload)),
            Err(_) => (Outcome::Failed, Bytes::new()),
        };
        let mut response = NetworkEnvelope::control(EnvelopeKind::Response {
            id,
            outcome,
            is_last: true,
        });
        response.recipient = recipient;
        response.payload = payload;
        if let Err(error) = from.try_send(response) {
            // The queue is full: wait for room off the actor's task.
            let response = error.into_envelope();
            tokio::spawn(async move {
                let _ = from.send(response).await;
            });
        }
    })
}

/// Runs the remote workloads that pass `filter`; `quick` divides every count by ten.
pub(crate) fn run(runtime: &Runtime, filter: &dyn Fn(&str) -> bool, quick: bool) -> Vec<Report> {
    let scale = if quick { 10 } else { 1 };
    let mut reports = Vec::new();
    if filter("remote_tell") {
        reports.push(remote_tell(runtime, TELLS / scale));
    }
    if filter("remote_ask") {
        reports.push(remote_ask(runtime, ASKS / scale));
    }
    reports
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Two ends of one loopback TCP connection, with nodelay as the TCP wire sets it.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let dialed = dialed.expect("connect");
    let accepted = accepted.expect("accept").0;
    dialed.set_nodelay(true).expect("nodelay");
    accepted.set_nodelay(true).expect("nodelay");
    (dialed, accepted)
}

/// A client connection to a peer proc serving `summer` (expecting `expect` tells) with
/// flow control over `deliver_remote`. Returns the client handle, the server handle (to
/// keep it open), the proc and the done signal.
async fn connected_peer(
    expect: u64,
) -> (
    ConnectionHandle,
    ConnectionHandle,
    Proc,
    oneshot::Receiver<u64>,
) {
    let proc = Proc::new(ProcId::unique("bench-server"));
    let (done_tx, done) = oneshot::channel();
    let summer = proc
        .spawn(
            "summer",
            Summer {
                sum: 0,
                seen: 0,
                expect,
                done: Some(done_tx),
            },
        )
        .expect("spawn");
    proc.expose(&summer, RemoteHandlers::new().ask::<Add>())
        .expect("expose");
    let target = Arc::new(ProcTarget {
        proc: proc.clone(),
        gauges: Mutex::new(HashMap::from([(
            "summer".to_owned(),
            summer.mailbox().expect("a local actor has a mailbox gauge"),
        )])),
    });
    let (mut client, mut server) = tcp_pair().await;
    let (at_client, at_server) = tokio::join!(
        perform_handshake(
            &mut client,
            Hello::new(ProcId::unique("bench-client"), 1),
            HANDSHAKE
        ),
        perform_handshake(
            &mut server,
            Hello::new(proc.id().clone(), 2).with_flow(FlowConfig::default()),
            HANDSHAKE
        ),
    );
    let client = spawn_connection(
        client,
        at_client.expect("handshake"),
        ConnectionConfig::default(),
        |_| {},
    )
    .expect("client connection");
    let server = spawn_connection_with_flow(
        server,
        at_server.expect("handshake"),
        ConnectionConfig::default(),
        |_| {},
        target,
    )
    .expect("server connection");
    (client, server, proc, done)
}

fn tell_envelope(from: &ActorId, to: &ActorId, n: u64, kind: EnvelopeKind) -> NetworkEnvelope {
    NetworkEnvelope::message(
        Some(from.clone()),
        Recipient::Actor(to.clone()),
        kind,
        &Add(n),
    )
    .expect("encode")
}

fn remote_tell(runtime: &Runtime, tells: u64) -> Report {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(runtime.block_on(async {
            let (client, _server, proc, done) = connected_peer(tells).await;
            let from = ActorId::new(ProcId::unique("bench-client"), "producer", 1);
            // The actor's own id: delivery checks its index, as the gateway's does.
            let to = proc
                .lookup::<Summer>("summer")
                .expect("summer")
                .id()
                .clone();
            let started = Instant::now();
            tokio::spawn(async move {
                for n in 0..tells {
                    client
                        .send(tell_envelope(&from, &to, n, EnvelopeKind::Regular))
                        .await
                        .expect("send");
                }
                client
            })
            .await
            .expect("sender task");
            let sum = done.await.expect("every tell handled");
            assert_eq!(sum, (0..tells).sum::<u64>());
            let rate = tells as f64 / started.elapsed().as_secs_f64();
            proc.shutdown().await;
            rate
        }));
        theirs.push(runtime.block_on(async {
            let (client, server) = tcp_pair().await;
            let started = Instant::now();
            let reader = tokio::spawn(read_frames(server, tells));
            tokio::spawn(async move {
                let mut writer = BufWriter::with_capacity(64 * 1024, client);
                let mut frame = [0u8; 32];
                for n in 0..tells {
                    let body = postcard::to_slice(&(7u64, n), &mut frame[4..]).expect("encode");
                    let len = body.len();
                    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
                    writer.write_all(&frame[..4 + len]).await.expect("write");
                }
                writer.flush().await.expect("flush");
                writer
            })
            .await
            .expect("writer task");
            assert_eq!(reader.await.expect("reader"), (0..tells).sum::<u64>());
            tells as f64 / started.elapsed().as_secs_f64()
        }));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new("remote_tell", "msg/s", ours, theirs, ours / theirs)
        .target(0.5)
        .note(format!(
            "{tells} tells, 1 task -> 1 actor on a peer proc over loopback TCP, connection worker + \
             deliver_remote, flow window {} msgs; baseline: length-prefixed postcard (u64, u64) \
             frames through a 64 KiB BufWriter, decoded by a reader task",
            FlowConfig::default().window_messages
        ))
}

/// Reads `count` frames of (recipient, payload) and returns the payloads' sum.
async fn read_frames(stream: TcpStream, count: u64) -> u64 {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut body = [0u8; 32];
    let mut sum = 0u64;
    for _ in 0..count {
        let len = reader.read_u32_le().await.expect("length") as usize;
        reader
            .read_exact(&mut body[..len])
            .await
            .expect("frame body");
        let (_recipient, payload): (u64, u64) = postcard::from_bytes(&body[..len]).expect("decode");
        sum = sum.wrapping_add(payload);
    }
    sum
}

fn remote_ask(runtime: &Runtime, asks: u64) -> Report {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(runtime.block_on(async {
            let (client, _server, proc, _done) = connected_peer(u64::MAX).await;
            let from = ActorId::new(ProcId::unique("bench-client"), "asker", 1);
            // The actor's own id: delivery checks its index, as the gateway's does.
            let to = proc
                .lookup::<Summer>("summer")
                .expect("summer")
                .id()
                .clone();
            let started = Instant::now();
            tokio::spawn(async move {
                for n in 0..asks {
                    let request = tell_envelope(&from, &to, n, EnvelopeKind::Regular);
                    let response = client
                        .request(request, Duration::from_secs(5))
                        .await
                        .expect("ask");
                    let echoed: u64 = postcard::from_bytes(&response.payload).expect("reply");
                    assert_eq!(echoed, n);
                }
            })
            .await
            .expect("asking task");
            let nanos = started.elapsed().as_nanos() as f64 / asks as f64;
            proc.shutdown().await;
            nanos
        }));
        theirs.push(runtime.block_on(async {
            let (client, server) = tcp_pair().await;
            let echo = tokio::spawn(echo_frames(server, asks));
            let started = Instant::now();
            tokio::spawn(async move {
                let (read, mut write) = client.into_split();
                let mut read = BufReader::new(read);
                let mut frame = [0u8; 16];
                let mut body = [0u8; 16];
                for n in 0..asks {
                    let len = postcard::to_slice(&n, &mut frame[4..])
                        .expect("encode")
                        .len();
                    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
                    write.write_all(&frame[..4 + len]).await.expect("write");
                    let len = read.read_u32_le().await.expect("length") as usize;
                    read.read_exact(&mut body[..len]).await.expect("body");
                    let echoed: u64 = postcard::from_bytes(&body[..len]).expect("decode");
                    assert_eq!(echoed, n);
                }
            })
            .await
            .expect("asking task");
            let nanos = started.elapsed().as_nanos() as f64 / asks as f64;
            echo.await.expect("echo task");
            nanos
        }));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new("remote_ask", "ns/ask", ours, theirs, theirs / ours)
        .target(0.7)
        .note(format!(
            "{asks} sequential asks to an actor on a peer proc over loopback TCP, reply through \
             deliver_remote's callback (called on the actor's task) on the arriving connection; \
             baseline: one u64 frame each way, echoed by a task"
        ))
}

/// Echoes `count` length-prefixed frames back on `stream`.
async fn echo_frames(stream: TcpStream, count: u64) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut frame = [0u8; 20];
    for _ in 0..count {
        let len = read.read_u32_le().await.expect("length") as usize;
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        read.read_exact(&mut frame[4..4 + len]).await.expect("body");
        write.write_all(&frame[..4 + len]).await.expect("write");
    }
}
