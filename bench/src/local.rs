//! Local messaging workloads, each against a raw tokio baseline of the same shape: a task
//! reading a bounded `tokio::sync::mpsc` of the same capacity, with `oneshot` replies.

use std::time::{Duration, Instant};

use plexus_core::{Actor, Context, DEFAULT_MAILBOX_CAPACITY, Handler, Mailbox, Proc, ProcId};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use crate::alloc;
use crate::report::Report;

const TELLS: u64 = 1_000_000;
const ASKS: usize = 100_000;
const FAN_IN_SENDERS: u64 = 8;
const FAN_IN_EACH: u64 = 200_000;
const SPAWNS: usize = 100_000;
/// `local_drain` fills a mailbox with this many tells, then times their handling.
const DRAIN_BATCH: u64 = 10_000;
const DRAIN_BATCHES: u64 = 100;
/// Each side runs this many times, alternating, and the median counts.
const ROUNDS: usize = 3;

/// Sums the numbers it is told; answers `Total` with the sum.
struct Summer(u64);

impl Actor for Summer {}

impl Handler<u64> for Summer {
    type Reply = u64;
    async fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) -> u64 {
        self.0 = self.0.wrapping_add(n);
        n
    }
}

struct Total;

impl Handler<Total> for Summer {
    type Reply = u64;
    async fn handle(&mut self, _: Total, _ctx: &mut Context<Self>) -> u64 {
        self.0
    }
}

struct Idle;
impl Actor for Idle {}

/// Holds the actor in its handler until the sender is dropped or fires, so tells pile up.
struct Gate(oneshot::Receiver<()>);

impl Handler<Gate> for Summer {
    type Reply = ();
    async fn handle(&mut self, Gate(open): Gate, _ctx: &mut Context<Self>) {
        let _ = open.await;
    }
}

/// Runs the local workloads that pass `filter`.
pub(crate) fn run(runtime: &Runtime, filter: &dyn Fn(&str) -> bool) -> Vec<Report> {
    let mut reports = Vec::new();
    if filter("local_tell") {
        reports.push(local_tell(runtime));
    }
    if filter("local_ask") {
        reports.push(local_ask(runtime));
    }
    if filter("local_fan_in") {
        reports.push(local_fan_in(runtime));
    }
    if filter("spawn") {
        reports.push(spawn(runtime));
    }
    if filter("local_drain") {
        reports.push(local_drain(runtime));
    }
    reports
}

/// The baseline's receiving task: sums what it reads until every sender is gone.
async fn sum_until_closed(mut rx: mpsc::Receiver<u64>) -> u64 {
    let mut sum = 0u64;
    while let Some(n) = rx.recv().await {
        sum = sum.wrapping_add(n);
    }
    sum
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn local_tell(runtime: &Runtime) -> Report {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        ours.push(runtime.block_on(async {
            let proc = Proc::new(ProcId::unique("bench"));
            let summer = proc
                .spawn(&format!("summer-{round}"), Summer(0))
                .expect("spawn");
            let sender = summer.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                for n in 0..TELLS {
                    sender.tell(n).await.expect("tell");
                }
            })
            .await
            .expect("sender task");
            let total = summer.ask(Total).await.expect("total");
            assert_eq!(total, (0..TELLS).sum::<u64>());
            let elapsed = started.elapsed();
            proc.shutdown().await;
            rate(TELLS, elapsed)
        }));
        theirs.push(runtime.block_on(async {
            let (tx, rx) = mpsc::channel::<u64>(DEFAULT_MAILBOX_CAPACITY);
            let started = Instant::now();
            let receiver = tokio::spawn(sum_until_closed(rx));
            tokio::spawn(async move {
                for n in 0..TELLS {
                    tx.send(n).await.expect("send");
                }
            })
            .await
            .expect("sender task");
            assert_eq!(receiver.await.expect("receiver"), (0..TELLS).sum::<u64>());
            rate(TELLS, started.elapsed())
        }));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new("local_tell", "msg/s", ours, theirs, ours / theirs)
        .target(0.7)
        .note(format!(
            "1 sender -> 1 actor, {TELLS} u64 tells, mailbox {DEFAULT_MAILBOX_CAPACITY}"
        ))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn local_ask(runtime: &Runtime) -> Report {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_p99, mut theirs_p99) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut latencies = runtime.block_on(async {
            let proc = Proc::new(ProcId::unique("bench"));
            let summer = proc
                .spawn(&format!("asked-{round}"), Summer(0))
                .expect("spawn");
            let latencies = tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ASKS);
                for n in 0..ASKS as u64 {
                    let started = Instant::now();
                    let echoed = summer.ask(n).await.expect("ask");
                    latencies.push(started.elapsed().as_nanos() as u64);
                    assert_eq!(echoed, n);
                }
                latencies
            })
            .await
            .expect("asker task");
            proc.shutdown().await;
            latencies
        });
        latencies.sort_unstable();
        ours.push(latencies.iter().sum::<u64>() as f64 / ASKS as f64);
        ours_p99.push(percentile(&latencies, 0.99) as f64);

        let mut latencies = runtime.block_on(async {
            let (tx, mut rx) =
                mpsc::channel::<(u64, oneshot::Sender<u64>)>(DEFAULT_MAILBOX_CAPACITY);
            tokio::spawn(async move {
                while let Some((n, reply)) = rx.recv().await {
                    let _ = reply.send(n);
                }
            });
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ASKS);
                for n in 0..ASKS as u64 {
                    let started = Instant::now();
                    let (reply, answer) = oneshot::channel();
                    tx.send((n, reply)).await.expect("send");
                    let echoed = answer.await.expect("reply");
                    latencies.push(started.elapsed().as_nanos() as u64);
                    assert_eq!(echoed, n);
                }
                latencies
            })
            .await
            .expect("asker task")
        });
        latencies.sort_unstable();
        theirs.push(latencies.iter().sum::<u64>() as f64 / ASKS as f64);
        theirs_p99.push(percentile(&latencies, 0.99) as f64);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new(
        "local_ask",
        "ns/round trip (ratio = baseline/plexus)",
        ours,
        theirs,
        theirs / ours,
    )
    .target(0.7)
    .note(format!(
        "{ASKS} sequential asks; p99 plexus {:.0} ns, baseline {:.0} ns",
        median(ours_p99),
        median(theirs_p99)
    ))
}

fn local_fan_in(runtime: &Runtime) -> Report {
    let count = FAN_IN_SENDERS * FAN_IN_EACH;
    let expected: u64 = (0..FAN_IN_SENDERS)
        .map(|_| (0..FAN_IN_EACH).sum::<u64>())
        .sum();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        ours.push(runtime.block_on(async {
            let proc = Proc::new(ProcId::unique("bench"));
            let summer = proc
                .spawn(&format!("fan-in-{round}"), Summer(0))
                .expect("spawn");
            let started = Instant::now();
            let senders: Vec<_> = (0..FAN_IN_SENDERS)
                .map(|_| {
                    let summer = summer.clone();
                    tokio::spawn(async move {
                        for n in 0..FAN_IN_EACH {
                            summer.tell(n).await.expect("tell");
                        }
                    })
                })
                .collect();
            for sender in senders {
                sender.await.expect("sender task");
            }
            assert_eq!(summer.ask(Total).await.expect("total"), expected);
            let elapsed = started.elapsed();
            proc.shutdown().await;
            rate(count, elapsed)
        }));
        theirs.push(runtime.block_on(async {
            let (tx, rx) = mpsc::channel::<u64>(DEFAULT_MAILBOX_CAPACITY);
            let started = Instant::now();
            let receiver = tokio::spawn(sum_until_closed(rx));
            let senders: Vec<_> = (0..FAN_IN_SENDERS)
                .map(|_| {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        for n in 0..FAN_IN_EACH {
                            tx.send(n).await.expect("send");
                        }
                    })
                })
                .collect();
            drop(tx);
            for sender in senders {
                sender.await.expect("sender task");
            }
            assert_eq!(receiver.await.expect("receiver"), expected);
            rate(count, started.elapsed())
        }));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new("local_fan_in", "msg/s", ours, theirs, ours / theirs)
        .target(0.7)
        .note(format!(
            "{FAN_IN_SENDERS} senders x {FAN_IN_EACH} -> 1 actor"
        ))
}

fn spawn(runtime: &Runtime) -> Report {
    let names: Vec<String> = (0..SPAWNS).map(|i| format!("idle-{i}")).collect();
    // One untimed round weighs the idle actors: counting allocations slows every thread,
    // so the timed rounds run with the counter off.
    let bytes = spawn_and_stop(runtime, &names, true).1;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(spawn_and_stop(runtime, &names, false).0);
        theirs.push(spawn_baseline(runtime));
    }
    let buffer = mailbox_buffer_bytes();
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new("spawn", "actors/s", ours, theirs, ours / theirs).note(format!(
        "spawn+stop {SPAWNS}; target >= 500000 actors/s: {}; {bytes:.0} bytes per idle actor, of \
         which {buffer:.0} are the mailbox buffer: {:.0} beyond it (target <= 1024: {})",
        if ours >= 500_000.0 { "met" } else { "NOT met" },
        bytes - buffer,
        if bytes - buffer <= 1024.0 {
            "met"
        } else {
            "NOT met"
        },
    ))
}

/// Spawns `names.len()` idle actors and stops them all, from a worker thread as actors do
/// (not from outside the runtime, which would wake a parked worker for every spawn).
/// Returns actors per second and, when `weigh` is set, heap bytes per idle actor.
fn spawn_and_stop(runtime: &Runtime, names: &[String], weigh: bool) -> (f64, f64) {
    let names = names.to_vec();
    runtime
        .block_on(runtime.spawn(async move {
            let proc = Proc::new(ProcId::unique("bench"));
            let mut refs = Vec::with_capacity(names.len());
            alloc::set_counting(weigh);
            let before = alloc::live_bytes();
            let started = Instant::now();
            for name in &names {
                refs.push(proc.spawn(name, Idle).expect("spawn"));
            }
            let spawned = started.elapsed();
            let mut bytes = 0.0;
            if weigh {
                // Let every actor run its start and park idle before weighing them.
                tokio::time::sleep(Duration::from_millis(20)).await;
                bytes = (alloc::live_bytes() - before) as f64 / names.len() as f64;
                alloc::set_counting(false);
            }
            let stopping = Instant::now();
            for actor in &refs {
                actor.stop();
            }
            for actor in &refs {
                actor.wait_for_stop().await;
            }
            (
                rate(names.len() as u64, spawned + stopping.elapsed()),
                bytes,
            )
        }))
        .expect("spawn workload")
}

/// The baseline of `spawn`: a tokio task per actor, parked on its own bounded channel.
fn spawn_baseline(runtime: &Runtime) -> f64 {
    runtime
        .block_on(runtime.spawn(async {
            let started = Instant::now();
            let mut tasks = Vec::with_capacity(SPAWNS);
            for _ in 0..SPAWNS {
                let (tx, mut rx) = mpsc::channel::<u64>(DEFAULT_MAILBOX_CAPACITY);
                tasks.push((
                    tx,
                    tokio::spawn(async move { while rx.recv().await.is_some() {} }),
                ));
            }
            for (tx, task) in tasks {
                drop(tx);
                task.await.expect("baseline task");
            }
            rate(SPAWNS as u64, started.elapsed())
        }))
        .expect("baseline workload")
}

/// Heap bytes of one empty mailbox channel with plexus's slot size: five words (an inline
/// small-message envelope plus its tag; plexus-core pins this size in a unit test).
fn mailbox_buffer_bytes() -> f64 {
    const CHANNELS: usize = 1000;
    let mut channels = Vec::with_capacity(CHANNELS);
    alloc::set_counting(true);
    let before = alloc::live_bytes();
    channels.extend((0..CHANNELS).map(|_| mpsc::unbounded_channel::<[usize; 5]>()));
    let bytes = (alloc::live_bytes() - before) as f64 / CHANNELS as f64;
    alloc::set_counting(false);
    drop(channels);
    bytes
}

/// How fast one actor handles tells that are already in its mailbox: no sender competes
/// and no wake-up is needed, so this is the most any path ending in one actor can deliver
/// (`remote_tell` and `cluster_remote_tell` among them). The baseline is a task draining a
/// tokio channel filled the same way.
fn local_drain(runtime: &Runtime) -> Report {
    let total = DRAIN_BATCH * DRAIN_BATCHES;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        ours.push(runtime.block_on(async {
            let proc = Proc::new(ProcId::unique("bench"));
            let summer = proc
                .spawn_with(
                    &format!("drained-{round}"),
                    Summer(0),
                    Mailbox::Bounded(2 * DRAIN_BATCH as usize),
                )
                .expect("spawn");
            let mut draining = Duration::ZERO;
            for _ in 0..DRAIN_BATCHES {
                let (open, gate) = oneshot::channel();
                summer.tell(Gate(gate)).await.expect("gate");
                for n in 0..DRAIN_BATCH {
                    summer.tell(n).await.expect("tell");
                }
                let started = Instant::now();
                let _ = open.send(());
                summer.ask(Total).await.expect("total");
                draining += started.elapsed();
            }
            let sum = summer.ask(Total).await.expect("total");
            assert_eq!(sum, DRAIN_BATCHES * (0..DRAIN_BATCH).sum::<u64>());
            proc.shutdown().await;
            rate(total, draining)
        }));
        theirs.push(runtime.block_on(async {
            let mut draining = Duration::ZERO;
            let mut sum = 0u64;
            for _ in 0..DRAIN_BATCHES {
                let (tx, rx) = mpsc::channel::<u64>(2 * DRAIN_BATCH as usize);
                for n in 0..DRAIN_BATCH {
                    tx.send(n).await.expect("send");
                }
                drop(tx);
                let started = Instant::now();
                sum = sum.wrapping_add(tokio::spawn(sum_until_closed(rx)).await.expect("receiver"));
                draining += started.elapsed();
            }
            assert_eq!(sum, DRAIN_BATCHES * (0..DRAIN_BATCH).sum::<u64>());
            rate(total, draining)
        }));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    Report::new("local_drain", "msg/s", ours, theirs, ours / theirs).note(format!(
        "1 actor handles {DRAIN_BATCH} u64 tells already in its mailbox, {DRAIN_BATCHES} times; \
         no target: the ceiling of any tell path that ends in one actor"
    ))
}
