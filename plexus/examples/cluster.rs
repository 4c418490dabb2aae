//! A cluster of three OS processes on 127.0.0.1, used like one program.
//!
//! Run with `cargo run --release --example cluster`. The process you start is the
//! *director*: it serves a TCP location, starts three *node* processes (this same binary,
//! told its role through an environment variable), and then:
//!
//! 1. each node joins by telling the director refs to its `worker` and `spawner` actors
//!    (refs travel inside messages and work on the receiving side);
//! 2. the director tells and asks the workers, and has one node's worker tell another
//!    node's worker directly, with FIFO checked per sender;
//! 3. it kills node-2 with an ask still in flight there: the ask fails with
//!    `Disconnected` and the director's watch on node-2's worker fires with `Disconnected`;
//! 4. the director then restarts node-2's work elsewhere: node-3's spawner starts a new
//!    worker and replies with its ref, and the lost work is sent again;
//! 5. a summary is printed, the nodes are shut down, and everything exits by itself.
//!
//! Each node exits on its own when the director disappears, so no process is left behind.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::process::Stdio;
use std::time::{Duration, Instant};

use plexus::{
    Actor, ActorRef, AskError, BoxError, Context, Gateway, GatewayConfig, Handler, LinkDied,
    Location, Proc, ProcAddr, ProcId, RemoteActor, RemoteHandlers, RemoteMessage, StopReason,
};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// The role of a process: unset for the director, `node-N` for a node.
const ROLE_ENV: &str = "PLEXUS_CLUSTER_ROLE";
/// Where a node finds the director's proc (a `ProcAddr` in text form).
const DIRECTOR_ENV: &str = "PLEXUS_CLUSTER_DIRECTOR";
/// How many nodes the director starts.
const NODES: usize = 3;
/// Tells the director sends to each worker in the first round.
const TELLS_PER_WORKER: u64 = 10_000;
/// Tells node-1's worker sends straight to node-3's worker.
const RELAYED_TELLS: u64 = 5_000;
/// Asks the director makes of each worker.
const ASKS_PER_WORKER: u64 = 200;
/// The bound on the whole run.
const DEADLINE: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------------------
// Messages. Every message that crosses a process has a stable name.

/// A unit of work, numbered per sender so the worker can check FIFO order.
#[derive(Debug, Serialize, Deserialize)]
struct Work {
    from: String,
    seq: u64,
}
impl RemoteMessage for Work {
    const NAME: &'static str = "cluster.Work";
}

/// An ask: the square of a number, computed where the worker lives.
#[derive(Debug, Serialize, Deserialize)]
struct Square(u64);
impl RemoteMessage for Square {
    const NAME: &'static str = "cluster.Square";
}

/// Tells the worker to send `count` units of work straight to another worker.
#[derive(Debug, Serialize, Deserialize)]
struct Relay {
    to: ActorRef<Worker>,
    count: u64,
}
impl RemoteMessage for Relay {
    const NAME: &'static str = "cluster.Relay";
}

/// An ask that takes a long time: it is in flight when its node is killed.
#[derive(Debug, Serialize, Deserialize)]
struct Slow;
impl RemoteMessage for Slow {
    const NAME: &'static str = "cluster.Slow";
}

/// An ask for what the worker has received.
#[derive(Debug, Serialize, Deserialize)]
struct Report;
impl RemoteMessage for Report {
    const NAME: &'static str = "cluster.Report";
}

/// What a worker has received, per sender, and whether the order held.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    node: String,
    received: HashMap<String, u64>,
    out_of_order: u64,
}

/// Asks a node's spawner for a new worker; the reply is the new worker's ref.
#[derive(Debug, Serialize, Deserialize)]
struct SpawnWorker {
    name: String,
}
impl RemoteMessage for SpawnWorker {
    const NAME: &'static str = "cluster.SpawnWorker";
}

/// Tells a node to exit.
#[derive(Debug, Serialize, Deserialize)]
struct Shutdown;
impl RemoteMessage for Shutdown {
    const NAME: &'static str = "cluster.Shutdown";
}

/// A node introduces itself to the director with refs to its actors.
#[derive(Debug, Serialize, Deserialize)]
struct Join {
    node: String,
    worker: ActorRef<Worker>,
    spawner: ActorRef<Spawner>,
}
impl RemoteMessage for Join {
    const NAME: &'static str = "cluster.Join";
}

// ---------------------------------------------------------------------------------------
// Actors of a node.

/// Receives work and checks that each sender's units arrive in order.
struct Worker {
    node: String,
    next: HashMap<String, u64>,
    out_of_order: u64,
}

impl Worker {
    fn new(node: &str) -> Self {
        Worker {
            node: node.to_owned(),
            next: HashMap::new(),
            out_of_order: 0,
        }
    }
}

impl Actor for Worker {}

impl Handler<Work> for Worker {
    type Reply = ();
    async fn handle(&mut self, work: Work, _ctx: &mut Context<Self>) {
        let next = self.next.entry(work.from).or_insert(0);
        if work.seq != *next {
            self.out_of_order += 1;
        }
        *next = work.seq + 1;
    }
}

impl Handler<Square> for Worker {
    type Reply = u64;
    async fn handle(&mut self, Square(n): Square, _ctx: &mut Context<Self>) -> u64 {
        n * n
    }
}

impl Handler<Relay> for Worker {
    type Reply = ();
    async fn handle(&mut self, relay: Relay, _ctx: &mut Context<Self>) {
        let from = format!("{}/worker", self.node);
        for seq in 0..relay.count {
            let work = Work {
                from: from.clone(),
                seq,
            };
            if let Err(error) = relay.to.tell(work).await {
                eprintln!("  [{}] relay stopped: {error}", self.node);
                return;
            }
        }
    }
}

impl Handler<Slow> for Worker {
    type Reply = ();
    async fn handle(&mut self, _: Slow, _ctx: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

impl Handler<Report> for Worker {
    type Reply = Tally;
    async fn handle(&mut self, _: Report, _ctx: &mut Context<Self>) -> Tally {
        Tally {
            node: self.node.clone(),
            // `next` is one past the last sequence number, so it is the count received.
            received: self.next.clone(),
            out_of_order: self.out_of_order,
        }
    }
}

impl RemoteActor for Worker {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .tell::<Work>()
            .ask::<Square>()
            .tell::<Relay>()
            .ask::<Slow>()
            .ask::<Report>()
    }
}

/// Starts workers on its node when asked, and ends the node on `Shutdown`.
struct Spawner {
    node: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Actor for Spawner {}

impl Handler<SpawnWorker> for Spawner {
    type Reply = Option<ActorRef<Worker>>;
    async fn handle(
        &mut self,
        request: SpawnWorker,
        ctx: &mut Context<Self>,
    ) -> Option<ActorRef<Worker>> {
        let proc = ctx.proc().clone();
        let worker = proc.spawn(&request.name, Worker::new(&self.node)).ok()?;
        proc.expose_remote(&worker).ok()?;
        println!("  [{}] spawned {} on request", self.node, worker.id());
        Some(worker)
    }
}

impl Handler<Shutdown> for Spawner {
    type Reply = ();
    async fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl RemoteActor for Spawner {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .ask::<SpawnWorker>()
            .tell::<Shutdown>()
    }
}

// ---------------------------------------------------------------------------------------
// The director's actor: collects joins, watches the workers and moves lost work.

/// What the director's actor reports to the director's main task.
enum Event {
    Joined(Join),
    /// A watched worker stopped; `replacement` is the worker started elsewhere, if any.
    WorkerLost {
        id: String,
        reason: StopReason,
        after: Duration,
        replacement: Option<ActorRef<Worker>>,
    },
}

struct Director {
    events: mpsc::UnboundedSender<Event>,
    /// The spawner of every node that joined, by node name.
    spawners: Vec<(String, ActorRef<Spawner>)>,
    /// Which node each watched worker lives on.
    workers: HashMap<String, String>,
    /// Set by the main task just before it kills a node, to time the watch.
    killed_at: Option<Instant>,
    /// Set when the run is over: the nodes are being shut down on purpose.
    standing_down: bool,
}

impl Actor for Director {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        if self.standing_down {
            return ControlFlow::Continue(());
        }
        let after = self.killed_at.map(|t| t.elapsed()).unwrap_or_default();
        let id = died.id.to_string();
        let lost_node = self.workers.remove(&id).unwrap_or_default();
        // Restart the work on the first other node still known.
        let mut replacement = None;
        for (node, spawner) in &self.spawners {
            if *node == lost_node {
                continue;
            }
            let request = SpawnWorker {
                name: format!("worker-for-{lost_node}"),
            };
            match spawner.ask_timeout(request, Duration::from_secs(5)).await {
                Ok(Some(worker)) => {
                    replacement = Some(worker);
                    break;
                }
                Ok(None) => eprintln!("  [director] {node} could not spawn a worker"),
                Err(error) => eprintln!("  [director] {node} did not answer: {error}"),
            }
        }
        let _ = self.events.send(Event::WorkerLost {
            id,
            reason: died.reason,
            after,
            replacement,
        });
        ControlFlow::Continue(())
    }
}

impl Handler<Join> for Director {
    type Reply = ();
    async fn handle(&mut self, join: Join, ctx: &mut Context<Self>) {
        ctx.watch(&join.worker);
        self.workers
            .insert(join.worker.id().to_string(), join.node.clone());
        self.spawners
            .push((join.node.clone(), join.spawner.clone()));
        let _ = self.events.send(Event::Joined(join));
    }
}

/// Sent by the director's main task just before it kills a node.
struct Killing;

impl Handler<Killing> for Director {
    type Reply = ();
    async fn handle(&mut self, _: Killing, _ctx: &mut Context<Self>) {
        self.killed_at = Some(Instant::now());
    }
}

/// Sent by the director's main task before it shuts the nodes down: those stops are
/// expected, so no work is moved.
struct StandDown;

impl Handler<StandDown> for Director {
    type Reply = ();
    async fn handle(&mut self, _: StandDown, _ctx: &mut Context<Self>) {
        self.standing_down = true;
    }
}

impl RemoteActor for Director {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Join>()
    }
}

// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match std::env::var(ROLE_ENV) {
        Ok(node) => run_node(&node).await,
        Err(_) => match timeout(DEADLINE, run_director()).await {
            Ok(result) => result,
            Err(_) => Err(format!("the cluster did not finish within {DEADLINE:?}").into()),
        },
    }
}

/// A gateway serving a fresh loopback TCP port, with `proc` attached.
async fn networked(
    proc: &Proc,
) -> Result<(Gateway, plexus::ServeHandle, plexus::Attachment), BoxError> {
    let gateway = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    let server = gateway.serve("tcp://127.0.0.1:0".parse()?).await?;
    let attachment = gateway.attach(proc)?;
    Ok((gateway, server, attachment))
}

async fn run_node(node: &str) -> Result<(), BoxError> {
    let director: ProcAddr = std::env::var(DIRECTOR_ENV)?.parse()?;
    let proc = Proc::new(ProcId::unique(node.to_owned()));
    let (_gateway, server, _attachment) = networked(&proc).await?;

    let worker = proc.spawn("worker", Worker::new(node))?;
    proc.expose_remote(&worker)?;
    let (shutdown_tx, shutdown) = oneshot::channel();
    let spawner = proc.spawn(
        "spawner",
        Spawner {
            node: node.to_owned(),
            shutdown: Some(shutdown_tx),
        },
    )?;
    proc.expose_remote(&spawner)?;

    let director = proc
        .lookup_remote::<Director>(&director, "director")
        .await?;
    director
        .tell(Join {
            node: node.to_owned(),
            worker,
            spawner,
        })
        .await?;
    println!(
        "  [{node}] pid {} serving {}",
        std::process::id(),
        server.location()
    );

    // Run until told to stop, or until the director is gone.
    tokio::select! {
        _ = shutdown => println!("  [{node}] shutting down"),
        reason = director.wait_for_stop() => println!("  [{node}] director gone ({reason}), exiting"),
    }
    proc.shutdown().await;
    Ok(())
}

async fn run_director() -> Result<(), BoxError> {
    let started = Instant::now();
    let proc = Proc::new(ProcId::unique("director"));
    let (_gateway, server, _attachment) = networked(&proc).await?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let director = proc.spawn(
        "director",
        Director {
            events: events_tx,
            spawners: Vec::new(),
            workers: HashMap::new(),
            killed_at: None,
            standing_down: false,
        },
    )?;
    proc.expose_remote(&director)?;
    let address = ProcAddr::new(proc.id().clone(), server.location().clone());
    println!("director {} serving {}", proc.id(), server.location());

    // 1. Start the nodes and wait for each to join.
    let mut children: HashMap<String, Child> = HashMap::new();
    for n in 1..=NODES {
        let node = format!("node-{n}");
        let child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, &node)
            .env(DIRECTOR_ENV, address.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        children.insert(node, child);
    }
    let mut nodes: Vec<Join> = Vec::new();
    while nodes.len() < NODES {
        match timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(Event::Joined(join))) => {
                println!("joined: {} (worker {})", join.node, join.worker.id());
                nodes.push(join);
            }
            Ok(Some(Event::WorkerLost { id, reason, .. })) => {
                return Err(format!("worker {id} lost before the run: {reason}").into());
            }
            Ok(None) | Err(_) => return Err("the nodes did not all join within 10 s".into()),
        }
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let worker_of = |name: &str| {
        nodes
            .iter()
            .find(|join| join.node == name)
            .map(|join| join.worker.clone())
            .ok_or_else(|| format!("{name} did not join"))
    };

    // 2. Tells and asks across processes.
    let round = Instant::now();
    for join in &nodes {
        for seq in 0..TELLS_PER_WORKER {
            join.worker
                .tell(Work {
                    from: "director".into(),
                    seq,
                })
                .await?;
        }
    }
    worker_of("node-1")?
        .tell(Relay {
            to: worker_of("node-3")?,
            count: RELAYED_TELLS,
        })
        .await?;
    let mut asks_ok = 0u64;
    for join in &nodes {
        for n in 0..ASKS_PER_WORKER {
            if join
                .worker
                .ask_timeout(Square(n), Duration::from_secs(5))
                .await?
                == n * n
            {
                asks_ok += 1;
            }
        }
    }
    // The relay runs on node-1 while we ask; wait until node-3 has all of it.
    let node3 = worker_of("node-3")?;
    let tally3 = loop {
        let tally = node3.ask_timeout(Report, Duration::from_secs(5)).await?;
        let relayed = tally.received.get("node-1/worker").copied().unwrap_or(0);
        if relayed == RELAYED_TELLS || round.elapsed() > Duration::from_secs(10) {
            break tally;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut tells_delivered = 0;
    let mut out_of_order = 0;
    for join in &nodes {
        let tally = if join.node == "node-3" {
            &tally3
        } else {
            &join
                .worker
                .ask_timeout(Report, Duration::from_secs(5))
                .await?
        };
        tells_delivered += tally.received.values().sum::<u64>();
        out_of_order += tally.out_of_order;
        println!(
            "  {} received {:?}, out of order: {}",
            tally.node, tally.received, tally.out_of_order
        );
    }
    let tells_sent = TELLS_PER_WORKER * NODES as u64 + RELAYED_TELLS;
    println!(
        "round 1: {tells_sent} tells sent, {tells_delivered} delivered in order per sender \
         ({out_of_order} out of order), {asks_ok} asks answered, in {:?}",
        round.elapsed()
    );

    // 3. Kill node-2 with an ask in flight there.
    let node2 = worker_of("node-2")?;
    let pending = tokio::spawn({
        let node2 = node2.clone();
        async move {
            let asked = Instant::now();
            let outcome = node2.ask_timeout(Slow, Duration::from_secs(20)).await;
            (outcome, asked.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    director.tell(Killing).await?;
    let killed = Instant::now();
    if let Some(child) = children.get_mut("node-2") {
        child.start_kill()?;
        println!("killed node-2 (pid {:?})", child.id());
    }
    let (outcome, waited) = pending.await?;
    let ask_outcome = match outcome {
        Err(AskError::Disconnected { .. }) => "Disconnected".to_owned(),
        other => format!("{other:?}"),
    };
    println!(
        "  the ask in flight on node-2 ended with {ask_outcome} {:?} after the kill (it waited {waited:?} in all)",
        killed.elapsed()
    );

    // 4. The watch fires, and the work moves to another node.
    let (lost, replacement) = match timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(Event::WorkerLost {
            id,
            reason,
            after,
            replacement,
        })) => {
            println!("  watch fired: {id} stopped with {reason}, {after:?} after the kill");
            (format!("{id}: {reason}"), replacement)
        }
        _ => return Err("the watch on node-2's worker did not fire within 5 s".into()),
    };
    let replacement = replacement.ok_or("no node could take over node-2's work")?;
    println!("  node-2's work restarted on {}", replacement.id());
    for seq in 0..TELLS_PER_WORKER {
        replacement
            .tell(Work {
                from: "director".into(),
                seq,
            })
            .await?;
    }
    let redone = replacement
        .ask_timeout(Report, Duration::from_secs(5))
        .await?;
    let redone_count = redone.received.get("director").copied().unwrap_or(0);

    // 5. Summary and shutdown.
    println!();
    println!("summary");
    println!("  processes:          1 director + {NODES} nodes on 127.0.0.1");
    println!(
        "  tells:              {tells_sent} sent, {tells_delivered} delivered, {out_of_order} out of order"
    );
    println!("  asks:               {asks_ok} answered");
    println!("  killed:             node-2; in-flight ask -> {ask_outcome}");
    println!("  watch:              {lost}");
    println!(
        "  restarted work:     {} ({redone_count} of {TELLS_PER_WORKER} units redone)",
        replacement.id()
    );
    director.ask(StandDown).await?;
    for join in &nodes {
        if join.node != "node-2" {
            let _ = join.spawner.tell(Shutdown).await;
        }
    }
    for (node, mut child) in children {
        match timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) => println!("  {node} exited: {status}"),
            _ => {
                let _ = child.kill().await;
                println!("  {node} killed after not exiting in 5 s");
            }
        }
    }
    println!("  total time:         {:?}", started.elapsed());
    proc.shutdown().await;
    Ok(())
}
