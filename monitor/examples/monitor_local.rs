//! Installs a monitor on a proc, runs a few actors (a busy counter, a supervised worker
//! that panics once, a handler stuck behind a queue, and two actors that ask each other
//! inside their handlers), then prints the table and the deadlock the monitor finds.
//!
//! Run with `cargo run -p plexus-monitor --example monitor_local`.

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use plexus_core::{Actor, ActorRef, AskError, BoxError, ChildSpec, Context, Handler, Proc, ProcId};
use plexus_monitor::{Monitor, TableOptions, render_table_with};
use tokio::sync::oneshot;

/// Counts what it is told.
struct Counter(u64);

impl Actor for Counter {}

struct Add(u64);

impl Handler<Add> for Counter {
    type Reply = u64;
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
        self.0 += n;
        self.0
    }
}

struct Reset;

impl Handler<Reset> for Counter {
    type Reply = ();
    async fn handle(&mut self, _: Reset, _ctx: &mut Context<Self>) {
        self.0 = 0;
    }
}

/// Supervises one worker.
struct Supervisor {
    worker: Option<ActorRef<Worker>>,
}

impl Actor for Supervisor {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.worker = Some(ctx.spawn_child(ChildSpec::new("worker", || Worker))?);
        Ok(())
    }
}

struct GetWorker;

impl Handler<GetWorker> for Supervisor {
    type Reply = Option<ActorRef<Worker>>;
    async fn handle(&mut self, _: GetWorker, _ctx: &mut Context<Self>) -> Self::Reply {
        self.worker.clone()
    }
}

/// Panics on a bad job; its supervisor restarts it.
struct Worker;

impl Actor for Worker {}

struct Job(Option<u32>);

impl Handler<Job> for Worker {
    type Reply = u32;
    async fn handle(&mut self, Job(job): Job, _ctx: &mut Context<Self>) -> u32 {
        match job {
            Some(n) => n * 2,
            None => panic!("a job without input"),
        }
    }
}

/// Holds in its handler until released, while messages queue behind it.
struct Stuck;

impl Actor for Stuck {}

struct Wait(oneshot::Receiver<()>);

impl Handler<Wait> for Stuck {
    type Reply = ();
    async fn handle(&mut self, Wait(release): Wait, _ctx: &mut Context<Self>) {
        let _ = release.await;
    }
}

struct Poke;

impl Handler<Poke> for Stuck {
    type Reply = ();
    async fn handle(&mut self, _: Poke, _ctx: &mut Context<Self>) {}
}

/// Asks its peer inside its handler; two of them asking each other deadlock until the
/// ask times out.
struct Polite {
    peer: Option<ActorRef<Polite>>,
}

impl Actor for Polite {}

struct Meet(ActorRef<Polite>);

impl Handler<Meet> for Polite {
    type Reply = ();
    async fn handle(&mut self, Meet(peer): Meet, _ctx: &mut Context<Self>) {
        self.peer = Some(peer);
    }
}

/// "After you": asked on to the peer until `rounds` runs out.
struct AfterYou {
    rounds: u32,
}

impl Handler<AfterYou> for Polite {
    type Reply = Result<(), AskError>;
    async fn handle(&mut self, msg: AfterYou, _ctx: &mut Context<Self>) -> Self::Reply {
        match self.peer.clone().filter(|_| msg.rounds > 0) {
            Some(peer) => {
                let onward = AfterYou {
                    rounds: msg.rounds - 1,
                };
                peer.ask_timeout(onward, Duration::from_secs(2)).await?
            }
            None => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let monitor = Monitor::new();
    let proc = Proc::builder(ProcId::new("example", 1))
        .observer(monitor.observer())
        .build();

    let counter = proc.spawn("counter", Counter(0))?;
    for n in 0..100 {
        counter.tell(Add(n)).await?;
    }
    counter.tell(Reset).await?;

    let supervisor = proc.spawn("supervisor", Supervisor { worker: None })?;
    let worker = supervisor.ask(GetWorker).await?.ok_or("no worker")?;
    // The default panic hook prints this panic; the supervisor restarts the worker.
    worker.tell(Job(None)).await?;
    println!(
        "worker answered {} after its restart",
        worker.ask(Job(Some(21))).await?
    );

    let stuck = proc.spawn("stuck", Stuck)?;
    let (release, hold) = oneshot::channel();
    stuck.tell(Wait(hold)).await?;
    for _ in 0..7 {
        stuck.tell(Poke).await?;
    }

    let alice = proc.spawn("alice", Polite { peer: None })?;
    let bob = proc.spawn("bob", Polite { peer: None })?;
    alice.ask(Meet(bob.clone())).await?;
    bob.ask(Meet(alice.clone())).await?;
    // Alice asks Bob, Bob asks Alice back while Alice still waits: a deadlock until
    // Alice's ask times out.
    let politeness = tokio::spawn({
        let alice = alice.clone();
        async move { alice.ask(AfterYou { rounds: 2 }).await }
    });

    tokio::time::sleep(Duration::from_millis(600)).await;
    let snapshot = monitor.snapshot(Duration::from_secs(30));
    let options = TableOptions::default().slow_handler(Duration::from_millis(500));
    println!();
    print!("{}", render_table_with(&snapshot, &options));
    println!();
    for deadlock in monitor.deadlocks() {
        println!("deadlock found: {deadlock}");
    }

    println!();
    match politeness.await?.and_then(|inner| inner) {
        Ok(()) => println!("the polite exchange completed"),
        Err(error) => println!("the deadlock broke when an ask gave up: {error}"),
    }
    let _ = release.send(());
    stuck.ask(Poke).await?;
    proc.shutdown().await;
    let after = monitor.snapshot(Duration::from_secs(30));
    println!(
        "after shutdown: {} deadlocks, {} alive, {} stopped, {} messages handled",
        after.deadlocks().len(),
        after.totals.alive,
        after.totals.stopped,
        after.totals.messages
    );
    Ok(())
}
