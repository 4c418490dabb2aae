//! Cluster workloads: remote actors through gateways between two OS processes, each
//! against a raw socket baseline between the same two processes, measured in the same run.
//!
//! The benchmark binary starts itself again as the peer process (see [`peer`]); both
//! processes run a proc attached to a gateway serving a loopback TCP port, and the peer
//! also serves the raw baseline listener (see [`raw`]).
//!
//! - `cluster_remote_tell`: 1,000,000 tells of a `u64` from one actor here to the
//!   [`Counter`] in the peer; the clock stops when the counter's `Done` report (a tell back)
//!   arrives. Baseline: the same count of length-prefixed postcard frames (a `u64`
//!   recipient and a `u64` payload) through a 64 KiB buffered writer, read and decoded by
//!   a task in the peer, which answers with the payloads' sum.
//! - `cluster_remote_ask`: 100,000 sequential asks, mean round trip and p50/p99, against a
//!   raw request and response of one `u64` frame each way.
//! - `cluster_remote_fan_in`: 8 actors here each send 1,000,000/8 tells to the one counter.
//!   Baseline: 8 writer tasks over 8 sockets, each read by its own task in the peer. The
//!   gateway carries the 8 senders over its one connection to the peer; the baseline uses
//!   a socket per sender, the fastest plain way to move the same frames, so the ratio
//!   charges the gateway for its multiplexing as well.
//!
//! Each side runs [`ROUNDS`] times, alternating, after one unmeasured warm-up (which also
//! opens the peer's connection back to this process); the median counts. Each report also
//! notes the CPU time both processes spent per message (see [`cpu`]), steadier than the
//! rates on a loaded machine. `--quick` runs a tenth of each count.

mod actors;
mod cpu;
pub(crate) mod peer;
mod raw;

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_core::{ActorRef, Location, Proc, ProcAddr, ProcId};
use plexus_gateway::{Attachment, Gateway, GatewayConfig, ServeHandle};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use self::actors::{Arm, Blast, Counter, Done, Echo, Notifier, Sender};
use self::cpu::{CpuMeter, CpuPerMessage};
use crate::report::Report;

const TELL: &str = "cluster_remote_tell";
const ASK: &str = "cluster_remote_ask";
const FAN_IN: &str = "cluster_remote_fan_in";

const TELLS: u64 = 1_000_000;
const ASKS: u64 = 100_000;
const FAN_IN_SENDERS: usize = 8;
/// Each side runs this many times, alternating, and the median counts.
const ROUNDS: usize = 3;
/// The bound on the peer becoming ready, and on its exit once told to.
const PEER_BOUND: Duration = Duration::from_secs(20);
/// The bound on any one measured run; far above what a healthy run takes.
const RUN_BOUND: Duration = Duration::from_secs(300);

/// Runs the cluster workloads that pass `filter`; `quick` divides every count by ten.
pub(crate) fn run(runtime: &Runtime, filter: &dyn Fn(&str) -> bool, quick: bool) -> Vec<Report> {
    if ![TELL, ASK, FAN_IN].into_iter().any(filter) {
        return Vec::new();
    }
    let scale = if quick { 10 } else { 1 };
    let mut peer = PeerProcess::start();
    let cluster = runtime.block_on(Cluster::connect(&peer));
    let mut reports = Vec::new();
    runtime.block_on(async {
        let mut cluster = cluster;
        cluster.warm_up().await;
        if filter(TELL) {
            reports.push(cluster.remote_tell(TELLS / scale).await);
        }
        if filter(ASK) {
            reports.push(cluster.remote_ask(ASKS / scale).await);
        }
        if filter(FAN_IN) {
            reports.push(cluster.remote_fan_in(TELLS / scale).await);
        }
        cluster.proc.shutdown().await;
    });
    peer.stop();
    reports
}

/// The peer process, and the stdin whose closing ends it.
struct PeerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: ProcAddr,
    raw: SocketAddr,
}

impl PeerProcess {
    /// Starts this binary as the peer and waits for its `READY` line.
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this binary's path"))
            .env(peer::ROLE_ENV, peer::PEER_ROLE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the peer process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the peer's stdout");
        // A thread reads the peer's stdout, so waiting for READY is bounded and the peer
        // never blocks on a full pipe afterwards.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("READY ")
                    && let Some(ready_tx) = ready_tx.take()
                {
                    let _ = ready_tx.send(rest.to_owned());
                }
            }
        });
        let line = match ready.recv_timeout(PEER_BOUND) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                panic!("the cluster peer did not print READY within {PEER_BOUND:?}: {error}");
            }
        };
        let (addr, raw) = line
            .rsplit_once(' ')
            .expect("READY <proc address> <raw address>");
        PeerProcess {
            child,
            stdin,
            addr: addr.parse().expect("the peer's proc address"),
            raw: raw.parse().expect("the peer's raw listener address"),
        }
    }

    /// Closes the peer's stdin and waits for it to exit, killing it after [`PEER_BOUND`].
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + PEER_BOUND;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => panic!("the cluster peer exited with {status}"),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("the cluster peer did not exit within {PEER_BOUND:?}");
                }
            }
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // Reached with the child still running only when a workload panicked.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// This process's side: a proc on a gateway serving a loopback port (the peer tells the
/// notifier through it), the senders, and refs to the peer's counter.
struct Cluster {
    proc: Proc,
    _gateway: Gateway,
    _server: ServeHandle,
    _attachment: Attachment,
    counter: ActorRef<Counter>,
    notifier: ActorRef<Notifier>,
    reports: mpsc::UnboundedReceiver<Done>,
    senders: Vec<ActorRef<Sender>>,
    raw: SocketAddr,
    cpu: CpuMeter,
}

impl Cluster {
    async fn connect(peer: &PeerProcess) -> Self {
        let gateway =
            Gateway::new(Location::Local(0), GatewayConfig::default()).expect("a gateway");
        let server = gateway
            .serve("tcp://127.0.0.1:0".parse().expect("a location"))
            .await
            .expect("serve a loopback port");
        let proc = Proc::new(ProcId::unique("bench-driver"));
        let attachment = gateway.attach(&proc).expect("attach");
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let notifier = proc
            .spawn(
                "notifier",
                Notifier {
                    reports: reports_tx,
                },
            )
            .expect("spawn the notifier");
        proc.expose_remote(&notifier).expect("expose the notifier");
        let senders = (0..FAN_IN_SENDERS)
            .map(|i| {
                proc.spawn(&format!("sender-{i}"), Sender)
                    .expect("spawn a sender")
            })
            .collect();
        let counter = tokio::time::timeout(
            PEER_BOUND,
            proc.lookup_remote::<Counter>(&peer.addr, peer::COUNTER),
        )
        .await
        .expect("the peer's counter found in time")
        .expect("the peer's counter");
        Cluster {
            proc,
            _gateway: gateway,
            _server: server,
            _attachment: attachment,
            counter,
            notifier,
            reports,
            senders,
            raw: peer.raw,
            cpu: CpuMeter::new(peer.child.id()),
        }
    }

    /// One small run of each kind, unmeasured: connections opened (the peer's back to
    /// us included), buffers and codec tables warm.
    async fn warm_up(&mut self) {
        self.plexus_tells(FAN_IN_SENDERS, 10_000).await;
        self.raw_tells(FAN_IN_SENDERS, 10_000).await;
        self.plexus_asks(1_000).await;
        self.raw_asks(1_000).await;
    }

    async fn remote_tell(&mut self, tells: u64) -> Report {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let before = self.cpu.sample();
            ours.push(self.plexus_tells(1, tells).await);
            ours_cpu.push(self.cpu.per_message(before, tells));
            let before = self.cpu.sample();
            theirs.push(self.raw_tells(1, tells).await);
            theirs_cpu.push(self.cpu.per_message(before, tells));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        let report = Report::new(TELL, "msg/s", ours, theirs, ours / theirs)
            .target(0.5)
            .note(format!(
                "{tells} tells, 1 actor -> 1 actor in a peer OS process through two gateways \
                 over loopback TCP, done when the peer's report arrives; baseline: \
                 length-prefixed postcard (u64, u64) frames through a 64 KiB BufWriter to a \
                 decoding task in the peer, done when its sum arrives"
            ));
        with_cpu(report, &ours_cpu, &theirs_cpu)
    }

    async fn remote_fan_in(&mut self, tells: u64) -> Report {
        let tells = tells - tells % FAN_IN_SENDERS as u64;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let before = self.cpu.sample();
            ours.push(self.plexus_tells(FAN_IN_SENDERS, tells).await);
            ours_cpu.push(self.cpu.per_message(before, tells));
            let before = self.cpu.sample();
            theirs.push(self.raw_tells(FAN_IN_SENDERS, tells).await);
            theirs_cpu.push(self.cpu.per_message(before, tells));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        let report = Report::new(FAN_IN, "msg/s", ours, theirs, ours / theirs)
            .target(0.5)
            .note(format!(
                "{tells} tells, {FAN_IN_SENDERS} actors -> 1 actor in a peer OS process over \
                 the gateways' one connection; baseline: {FAN_IN_SENDERS} writers over \
                 {FAN_IN_SENDERS} sockets, each decoded by its own task in the peer"
            ));
        with_cpu(report, &ours_cpu, &theirs_cpu)
    }

    async fn remote_ask(&mut self, asks: u64) -> Report {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let before = self.cpu.sample();
            ours.push(Latency::of(self.plexus_asks(asks).await));
            ours_cpu.push(self.cpu.per_message(before, asks));
            let before = self.cpu.sample();
            theirs.push(Latency::of(self.raw_asks(asks).await));
            theirs_cpu.push(self.cpu.per_message(before, asks));
        }
        let (ours, theirs) = (Latency::median(ours), Latency::median(theirs));
        let report = Report::new(
            ASK,
            "ns/ask",
            ours.mean,
            theirs.mean,
            theirs.mean / ours.mean,
        )
        .target(0.7)
        .note(format!(
            "{asks} sequential asks from a task to an actor in a peer OS process through \
                 two gateways over loopback TCP; p50/p99 {:.1}/{:.1} us, baseline {:.1}/{:.1} \
                 us (p50 ratio {:.3}); baseline: one u64 frame each way, echoed by a task in \
                 the peer",
            ours.p50 / 1e3,
            ours.p99 / 1e3,
            theirs.p50 / 1e3,
            theirs.p99 / 1e3,
            theirs.p50 / ours.p50
        ));
        with_cpu(report, &ours_cpu, &theirs_cpu)
    }

    /// `tells` tells to the counter from the first `senders` senders (each a contiguous
    /// share), in messages per second until the counter reports it has seen them all.
    async fn plexus_tells(&mut self, senders: usize, tells: u64) -> f64 {
        let share = tells / senders as u64;
        let total = share * senders as u64;
        self.counter
            .ask(Arm {
                expect: total,
                notify: self.notifier.clone(),
            })
            .await
            .expect("arm the counter");
        let started = Instant::now();
        let blasts: Vec<_> = self.senders[..senders]
            .iter()
            .zip(0u64..)
            .map(|(sender, i)| {
                let sender = sender.clone();
                let blast = Blast {
                    target: self.counter.clone(),
                    range: i * share..(i + 1) * share,
                };
                tokio::spawn(async move { sender.ask(blast).await })
            })
            .collect();
        let done = tokio::time::timeout(RUN_BOUND, self.reports.recv())
            .await
            .expect("the counter's report within the run bound")
            .expect("the notifier is alive");
        let rate = total as f64 / started.elapsed().as_secs_f64();
        for blast in blasts {
            let sent = blast
                .await
                .expect("a sender's ask")
                .expect("a sender's reply");
            assert_eq!(sent, Ok(share), "every sender sent its share");
        }
        assert_eq!(done.seen, total, "the counter saw every tell");
        assert_eq!(done.sum, (0..total).sum::<u64>(), "and every payload");
        rate
    }

    /// The raw baseline of [`Cluster::plexus_tells`]: one writer per socket.
    async fn raw_tells(&self, sockets: usize, tells: u64) -> f64 {
        let share = tells / sockets as u64;
        let total = share * sockets as u64;
        let mut streams = Vec::new();
        for _ in 0..sockets {
            streams.push(raw::connect(self.raw).await.expect("connect to the peer"));
        }
        let started = Instant::now();
        let writers: Vec<_> = streams
            .into_iter()
            .zip(0u64..)
            .map(|(stream, i)| tokio::spawn(raw::tell(stream, i * share..(i + 1) * share)))
            .collect();
        let mut sum = 0u64;
        for writer in writers {
            let decoded = tokio::time::timeout(RUN_BOUND, writer)
                .await
                .expect("the raw tells within the run bound")
                .expect("a raw writer")
                .expect("raw tells");
            sum = sum.wrapping_add(decoded);
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        assert_eq!(sum, (0..total).sum::<u64>(), "the peer decoded every frame");
        rate
    }

    /// `asks` sequential asks from one task; each one's round trip in nanoseconds.
    async fn plexus_asks(&self, asks: u64) -> Vec<u64> {
        let counter = self.counter.clone();
        let asking = tokio::spawn(async move {
            let mut times = Vec::with_capacity(asks as usize);
            for n in 0..asks {
                let started = Instant::now();
                let echoed = counter.ask(Echo(n)).await.expect("an ask");
                times.push(started.elapsed().as_nanos() as u64);
                assert_eq!(echoed, n, "ask {n} got its own reply");
            }
            times
        });
        tokio::time::timeout(RUN_BOUND, asking)
            .await
            .expect("the asks within the run bound")
            .expect("the asking task")
    }

    /// The raw baseline of [`Cluster::plexus_asks`].
    async fn raw_asks(&self, asks: u64) -> Vec<u64> {
        let stream = raw::connect(self.raw).await.expect("connect to the peer");
        tokio::time::timeout(RUN_BOUND, tokio::spawn(raw::ask(stream, asks)))
            .await
            .expect("the raw asks within the run bound")
            .expect("the raw asking task")
            .expect("raw asks")
    }
}

/// Adds the CPU note, when both processes' CPU time could be read.
fn with_cpu(
    report: Report,
    plexus: &[Option<CpuPerMessage>],
    baseline: &[Option<CpuPerMessage>],
) -> Report {
    match cpu::note(plexus, baseline) {
        Some(note) => report.note(note),
        None => report,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Round-trip figures of one run, in nanoseconds.
struct Latency {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Latency {
    fn of(mut times: Vec<u64>) -> Self {
        times.sort_unstable();
        let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction) as usize] as f64;
        Latency {
            mean: times.iter().sum::<u64>() as f64 / times.len() as f64,
            p50: at(0.5),
            p99: at(0.99),
        }
    }

    /// The median of each figure over the runs.
    fn median(runs: Vec<Latency>) -> Self {
        let figure = |pick: fn(&Latency) -> f64| median(runs.iter().map(pick).collect());
        Latency {
            mean: figure(|l| l.mean),
            p50: figure(|l| l.p50),
            p99: figure(|l| l.p99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles pick the value at their rank among the sorted times, whatever the order
    /// the times came in.
    #[test]
    fn latency_percentiles_follow_the_sorted_times() {
        let times: Vec<u64> = (1..=100).rev().collect();
        let latency = Latency::of(times);
        assert_eq!(latency.mean, 50.5);
        assert_eq!(latency.p50, 50.0);
        assert_eq!(latency.p99, 99.0);
    }
}
