//! Multi-process tests: real OS processes on 127.0.0.1, each with its own gateway.
//!
//! The test binary is its own child: run with `PLEXUS_CLUSTER_TEST_ROLE=node` it becomes a
//! node process (see [`node`]), otherwise it is the hub that starts nodes and runs the
//! scenarios. It uses no test harness (`harness = false` in `Cargo.toml`) so that a node
//! is one plain `main`, and each scenario is bounded by its own timeout.
//!
//! Scenarios (issue "gateway and remote actors end to end"):
//! - [`cluster_of_three`]: three processes, 100,000 tells each way between every pair
//!   with FIFO checked per pair, 10,000 asks, then one process killed: every pending ask
//!   resolves within 2 s and the watches on the killed process fire with `Disconnected`.
//! - [`ref_inside_a_message`]: a ref sent inside a message to another process is used
//!   there to reply.
//! - [`supervision::supervisor_moves_child_off_a_killed_node`]: a supervisor in the hub
//!   places its child on another node when the child's node process is killed.
//! - [`conversation::killed_participant_under_each_policy`]: a conversation whose
//!   participant's process is killed behaves under `Fail`, `RouteToNext` and `Compensate`
//!   as it does after a local crash, with the reason `Disconnected`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod actors;
mod conversation;
mod node;
mod supervision;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::join_all;
use plexus::{
    AskError, Gateway, GatewayConfig, Location, Proc, ProcAddr, ProcId, ServeHandle, StopReason,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use actors::{Blast, Collector, Echo, Hang, Report, Sink, WatchFor};

/// Set in a node process's environment.
const ROLE_ENV: &str = "PLEXUS_CLUSTER_TEST_ROLE";
/// Tells per ordered pair of processes.
const TELLS_PER_PAIR: u64 = 100_000;
/// Asks in the ask phase, spread over the nodes.
const ASKS: u64 = 10_000;
/// Asks in flight on the node that is killed.
const PENDING_ASKS: usize = 1_000;
/// The bound the issue sets on resolving pending asks after a kill.
const RESOLVE_BOUND: Duration = Duration::from_secs(2);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if std::env::var_os(ROLE_ENV).is_some() {
        if let Err(error) = runtime.block_on(node::run()) {
            eprintln!("node failed: {error}");
            std::process::exit(1);
        }
        return;
    }
    runtime.block_on(async {
        scenario("ref_inside_a_message", ref_inside_a_message()).await;
        scenario(
            "supervisor_moves_child_off_a_killed_node",
            supervision::supervisor_moves_child_off_a_killed_node(),
        )
        .await;
        scenario(
            "killed_participant_under_each_policy",
            conversation::killed_participant_under_each_policy(),
        )
        .await;
        scenario("cluster_of_three", cluster_of_three()).await;
    });
}

/// Runs one scenario under a time bound and reports it like a test.
async fn scenario(name: &str, body: impl Future<Output = ()>) {
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(240), body).await {
        Ok(()) => println!("test {name} ... ok ({:?})", started.elapsed()),
        Err(_) => panic!("test {name} did not finish within 240 s"),
    }
}

/// A started node process: its address, and the handles that end it.
struct NodeProcess {
    addr: ProcAddr,
    child: Child,
    /// Closing the node's stdin tells it to exit.
    _stdin: ChildStdin,
}

async fn start_node(label: &str) -> NodeProcess {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, label)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("READY ") {
                return addr.parse::<ProcAddr>().unwrap();
            }
        }
        panic!("node {label} exited before it was ready");
    })
    .await
    .unwrap_or_else(|_| panic!("node {label} not ready within 20 s"));
    // Keep draining the node's output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    NodeProcess {
        addr: ready,
        child,
        _stdin: stdin,
    }
}

/// The hub's own proc on a gateway serving a loopback TCP port.
struct Hub {
    proc: Proc,
    _gateway: Gateway,
    server: ServeHandle,
    _attachment: plexus::Attachment,
}

async fn hub() -> Hub {
    let gateway = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
    let server = gateway
        .serve("tcp://127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proc = Proc::new(ProcId::unique("hub"));
    let attachment = gateway.attach(&proc).unwrap();
    Hub {
        proc,
        _gateway: gateway,
        server,
        _attachment: attachment,
    }
}

async fn ref_inside_a_message() {
    let hub = hub().await;
    let node = start_node("echo-node").await;
    let (collector, mut seen) = Collector::spawn(&hub.proc);
    let sink = hub
        .proc
        .lookup_remote::<Sink>(&node.addr, "sink")
        .await
        .unwrap();
    // The node gets a ref to the hub's collector inside the message and replies with it.
    sink.tell(actors::ReplyTo {
        n: 41,
        reply_to: collector.clone(),
    })
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), seen.pongs.recv())
        .await
        .expect("a reply through the ref within 10 s")
        .unwrap();
    assert_eq!(reply, 42, "the node replied through the ref it received");
    assert!(
        hub.server.connection_count() >= 1,
        "the node dialed the hub back"
    );
}

async fn cluster_of_three() {
    let hub = hub().await;
    let mut a = start_node("node-a").await;
    let mut b = start_node("node-b").await;
    let hub_sink = hub.proc.spawn("sink", Sink::default()).unwrap();
    hub.proc.expose_remote(&hub_sink).unwrap();
    let hub_driver = hub
        .proc
        .spawn("driver", actors::Driver::new("hub"))
        .unwrap();
    let (collector, mut seen) = Collector::spawn(&hub.proc);

    let sink_of = |addr: &ProcAddr| {
        let proc = hub.proc.clone();
        let addr = addr.clone();
        async move { proc.lookup_remote::<Sink>(&addr, "sink").await.unwrap() }
    };
    let driver_of = |addr: &ProcAddr| {
        let proc = hub.proc.clone();
        let addr = addr.clone();
        async move {
            proc.lookup_remote::<actors::Driver>(&addr, "driver")
                .await
                .unwrap()
        }
    };
    let hub_sink_remote = hub_sink.clone();
    let (a_sink, b_sink) = (sink_of(&a.addr).await, sink_of(&b.addr).await);
    let (a_driver, b_driver) = (driver_of(&a.addr).await, driver_of(&b.addr).await);

    // 1. 100,000 tells each way between every pair, all at once.
    let started = Instant::now();
    let blasts = [
        (hub_driver.clone(), vec![a_sink.clone(), b_sink.clone()]),
        (
            a_driver.clone(),
            vec![hub_sink_remote.clone(), b_sink.clone()],
        ),
        (
            b_driver.clone(),
            vec![hub_sink_remote.clone(), a_sink.clone()],
        ),
    ];
    let sent = join_all(blasts.into_iter().map(|(driver, targets)| async move {
        driver
            .ask_timeout(
                Blast {
                    targets,
                    count: TELLS_PER_PAIR,
                },
                Duration::from_secs(180),
            )
            .await
    }))
    .await;
    for outcome in sent {
        assert_eq!(
            outcome.unwrap(),
            Ok(2 * TELLS_PER_PAIR),
            "every driver sent all its tells"
        );
    }
    // Every sink must see 100,000 from each of the two other processes, in order.
    for (name, sink) in [("hub", &hub_sink), ("node-a", &a_sink), ("node-b", &b_sink)] {
        let deadline = Instant::now() + Duration::from_secs(120);
        let report = loop {
            let report = sink
                .ask_timeout(Report, Duration::from_secs(10))
                .await
                .unwrap();
            let done = report.received.len() == 2
                && report.received.values().all(|&n| n == TELLS_PER_PAIR);
            if done || Instant::now() > deadline {
                break report;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(report.out_of_order, 0, "{name}: tells arrived out of order");
        assert_eq!(
            report.received.len(),
            2,
            "{name}: senders seen {:?}",
            report.received
        );
        for (sender, count) in &report.received {
            assert_eq!(*count, TELLS_PER_PAIR, "{name}: from {sender}");
        }
    }
    let tells = 6 * TELLS_PER_PAIR;
    let elapsed = started.elapsed();
    println!(
        "  {tells} tells over 6 ordered pairs in {elapsed:?} ({:.0} msg/s), FIFO held per pair",
        tells as f64 / elapsed.as_secs_f64()
    );

    // 2. 10,000 asks, half to each node, 100 at a time.
    let started = Instant::now();
    for batch in 0..ASKS / 100 {
        let asks = (0..100).map(|i| {
            let n = batch * 100 + i;
            let sink = if n % 2 == 0 { &a_sink } else { &b_sink };
            async move { (n, sink.ask_timeout(Echo(n), Duration::from_secs(10)).await) }
        });
        for (n, reply) in join_all(asks).await {
            assert_eq!(reply.unwrap(), n + 1, "ask {n} got its own reply");
        }
    }
    println!("  {ASKS} asks answered in {:?}", started.elapsed());

    // 3. Watches on node-b's sink: one from the hub, one from node-a (reported to the hub).
    hub.proc
        .spawn("watcher", actors::Watcher::new(collector.clone(), "hub"))
        .unwrap()
        .tell(WatchFor(b_sink.clone()))
        .await
        .unwrap();
    a_driver
        .ask_timeout(
            actors::WatchAndReport {
                target: b_sink.clone(),
                report_to: collector.clone(),
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // 4. 1,000 asks in flight on node-b, then SIGKILL it.
    let b_staller = hub
        .proc
        .lookup_remote::<actors::Staller>(&b.addr, "staller")
        .await
        .unwrap();
    let pending: Vec<_> = (0..PENDING_ASKS)
        .map(|_| {
            let staller = b_staller.clone();
            tokio::spawn(async move {
                let outcome = staller.ask_timeout(Hang, Duration::from_secs(30)).await;
                (outcome, Instant::now())
            })
        })
        .collect();
    // Kill node-b once its staller sits on the first ask; the others wait behind it in
    // its mailbox, in the gateways' flow queues or for credit at the hub.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = b_sink
            .ask_timeout(Report, Duration::from_secs(5))
            .await
            .unwrap();
        if report.hanging > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Hang ask reached node-b within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.child.start_kill().unwrap();
    let killed = Instant::now();
    let _ = b.child.wait().await;

    let mut disconnected = 0;
    let mut latest = Duration::ZERO;
    for task in pending {
        let (outcome, at) = task.await.unwrap();
        latest = latest.max(at.saturating_duration_since(killed));
        match outcome {
            Err(AskError::Disconnected { .. }) => disconnected += 1,
            other => panic!("a pending ask on the killed node ended with {other:?}"),
        }
    }
    println!(
        "  {disconnected} pending asks failed Disconnected, the last {latest:?} after the kill"
    );
    assert_eq!(disconnected, PENDING_ASKS);
    assert!(
        latest < RESOLVE_BOUND,
        "pending asks took {latest:?} to resolve (bound {RESOLVE_BOUND:?})"
    );

    // 5. Both watches fire, once each, with Disconnected.
    let mut fired = Vec::new();
    while fired.len() < 2 {
        let (who, reason) = tokio::time::timeout(RESOLVE_BOUND, seen.watches.recv())
            .await
            .expect("both watches fire within 2 s")
            .unwrap();
        fired.push((who, reason));
    }
    fired.sort_by(|x, y| x.0.cmp(&y.0));
    println!("  watches fired: {fired:?}");
    assert_eq!(
        fired.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["hub", "node-a"]
    );
    for (who, reason) in &fired {
        assert!(
            matches!(reason, StopReason::Disconnected),
            "{who}'s watch fired with {reason}, not Disconnected"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(seen.watches.try_recv().is_err(), "a watch fired twice");

    // node-a is still fine.
    assert_eq!(
        a_sink
            .ask_timeout(Echo(1), Duration::from_secs(5))
            .await
            .unwrap(),
        2
    );
    drop(a.child.start_kill());
}
