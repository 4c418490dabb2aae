//! Runs the live console in this process over two procs with a monitor each: a busy
//! counter, a supervised worker that panics once, a handler stuck in a long job, and two
//! actors on different procs that ask each other inside their handlers, a deadlock that
//! only the merged view of both monitors shows.
//!
//! The `app` proc is read directly ([`LocalSource`]); the `edge` proc through its monitor
//! service, with the same encoded request and reply a gateway would carry
//! ([`ProcSource`]).
//!
//! Run with `cargo run -p plexus-monitor --features console --example console_local`;
//! quit with `q`.

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use plexus_core::{Actor, ActorRef, AskError, BoxError, ChildSpec, Context, Handler, Proc, ProcId};
use plexus_monitor::Monitor;
use plexus_monitor::console::{ConsoleOptions, LocalSource, ProcSource, SnapshotSource, run_live};

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

/// Panics on a job without input; its supervisor restarts it.
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

/// Takes an hour over each job, while more queue behind it.
struct Cruncher;

impl Actor for Cruncher {}

struct Crunch;

impl Handler<Crunch> for Cruncher {
    type Reply = ();
    async fn handle(&mut self, _: Crunch, _ctx: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Asks its peer inside its handler, with no time limit.
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
                peer.ask(onward).await?
            }
            None => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The panic below is part of the show; keep it off the screen.
    std::panic::set_hook(Box::new(|_| {}));

    let app_monitor = Monitor::new();
    let app = Proc::builder(ProcId::new("app", 1))
        .observer(app_monitor.observer())
        .build();
    let edge_monitor = Monitor::new();
    let edge = Proc::builder(ProcId::new("edge", 2))
        .observer(edge_monitor.observer())
        .build();
    edge_monitor.serve_on(&edge)?;

    let counter = app.spawn("counter", Counter(0))?;
    tokio::spawn(async move {
        let mut n = 0;
        while counter.tell(Add(n)).await.is_ok() {
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let supervisor = app.spawn("supervisor", Supervisor { worker: None })?;
    let worker = supervisor.ask(GetWorker).await?.ok_or("no worker")?;
    worker.tell(Job(None)).await?;
    worker.ask(Job(Some(21))).await?;

    let cruncher = edge.spawn("cruncher", Cruncher)?;
    for _ in 0..3 {
        cruncher.tell(Crunch).await?;
    }

    let alice = app.spawn("alice", Polite { peer: None })?;
    let bob = edge.spawn("bob", Polite { peer: None })?;
    alice.ask(Meet(bob.clone())).await?;
    bob.ask(Meet(alice.clone())).await?;
    // Alice asks Bob, Bob asks Alice back while Alice still waits: neither ever answers.
    alice.tell(AfterYou { rounds: 2 }).await?;

    let sources: Vec<Box<dyn SnapshotSource>> = vec![
        Box::new(LocalSource::with_label(app_monitor, "app")),
        Box::new(ProcSource::new(edge.clone())),
    ];
    let options = ConsoleOptions::default().refresh(Duration::from_millis(250));
    run_live(&sources, &options).await?;
    println!("console closed");
    // The deadlocked and crunching actors never finish their handlers, so the procs are
    // not shut down gracefully; leaving main tears their tasks down.
    Ok(())
}
