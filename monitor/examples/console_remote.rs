//! A monitored program for `plexus-console` to read from another process: a proc on a
//! gateway serving a loopback TCP location, with its monitor served, that prints its proc
//! address and runs until its stdin closes or its time is up.
//!
//! Two scenes:
//! - by default, `shop`: a busy counter, a cruncher stuck for an hour in each job with
//!   more queued, and alice and bob, who ask each other inside their handlers (a
//!   deadlock);
//! - with `--ring`, `ring`: one actor, `ring`, exposed to remote asks. Given
//!   `--peer <PROC>` (the address another `--ring` process printed), it introduces itself
//!   to the peer's `ring` and starts an ask that goes there and is asked back: a deadlock
//!   across two processes, each of which sees only its own half.
//!
//! ```text
//! cargo run -p plexus-monitor --features console --example console_remote
//! #   PROC shop#1234@tcp://127.0.0.1:40001
//! cargo run -p plexus-monitor --features console --bin plexus-console -- shop#1234@tcp://127.0.0.1:40001
//! ```
//!
//! Options: `--ring`, `--peer <PROC>`, `--listen <LOCATION>` (default
//! `tcp://127.0.0.1:0`), `--for <SECONDS>` (default 600).

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::io::Read;
use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, AskError, Context, Handler, Location, Proc, ProcAddr, ProcId, RemoteActor,
    RemoteHandlers, RemoteMessage,
};
use plexus_gateway::{Gateway, GatewayConfig};
use plexus_monitor::Monitor;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Counts what it is told.
struct Counter(u64);

impl Actor for Counter {}

struct Add(u64);

impl Handler<Add> for Counter {
    type Reply = ();
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) {
        self.0 += n;
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

/// Asks its peer inside its handler, with no time limit. In the shop both live in this
/// proc; in the ring scene the peer is in another process.
struct Polite {
    peer: Option<ActorRef<Polite>>,
}

impl Actor for Polite {}

/// Take this actor as your peer; answered once taken, so the sender knows.
#[derive(Serialize, Deserialize)]
struct Meet(ActorRef<Polite>);

impl RemoteMessage for Meet {
    const NAME: &'static str = "console-remote.Meet";
}

impl Handler<Meet> for Polite {
    type Reply = ();
    async fn handle(&mut self, Meet(peer): Meet, _ctx: &mut Context<Self>) {
        self.peer = Some(peer);
    }
}

/// "After you": asked on to the peer until `rounds` runs out.
#[derive(Serialize, Deserialize)]
struct AfterYou {
    rounds: u32,
}

impl RemoteMessage for AfterYou {
    const NAME: &'static str = "console-remote.AfterYou";
}

impl Handler<AfterYou> for Polite {
    // The reply crosses processes, so the error travels as text.
    type Reply = Result<(), String>;
    async fn handle(&mut self, msg: AfterYou, _ctx: &mut Context<Self>) -> Self::Reply {
        match self.peer.clone().filter(|_| msg.rounds > 0) {
            Some(peer) => {
                let onward = AfterYou {
                    rounds: msg.rounds - 1,
                };
                let reply: Result<Result<(), String>, AskError> = peer.ask(onward).await;
                reply.map_err(|error| error.to_string())?
            }
            None => Ok(()),
        }
    }
}

impl RemoteActor for Polite {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Meet>().ask::<AfterYou>()
    }
}

/// The command line.
struct Options {
    ring: bool,
    peer: Option<ProcAddr>,
    listen: Location,
    run_for: Duration,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        ring: false,
        peer: None,
        listen: "tcp://127.0.0.1:0".parse()?,
        run_for: Duration::from_secs(600),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("`{arg}` needs a value"));
        match arg.as_str() {
            "--ring" => options.ring = true,
            "--peer" => options.peer = Some(value()?.parse()?),
            "--listen" => options.listen = value()?.parse()?,
            "--for" => options.run_for = Duration::from_secs(value()?.parse()?),
            _ => return Err(format!("unknown argument `{arg}`").into()),
        }
    }
    if options.peer.is_some() && !options.ring {
        return Err("`--peer` goes with `--ring`".into());
    }
    Ok(options)
}

/// Resolves when stdin reaches its end (or cannot be read).
fn stdin_closed() -> oneshot::Receiver<()> {
    let (closed, on_close) = oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = closed.send(());
    });
    on_close
}

/// The shop: a busy counter, a stuck cruncher and a two-actor deadlock.
async fn shop(proc: &Proc) -> Result<(), Box<dyn Error>> {
    let counter = proc.spawn("counter", Counter(0))?;
    tokio::spawn(async move {
        let mut n = 0;
        while counter.tell(Add(n)).await.is_ok() {
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let cruncher = proc.spawn("cruncher", Cruncher)?;
    for _ in 0..3 {
        cruncher.tell(Crunch).await?;
    }

    let alice = proc.spawn("alice", Polite { peer: None })?;
    let bob = proc.spawn("bob", Polite { peer: None })?;
    alice.ask(Meet(bob.clone())).await?;
    bob.ask(Meet(alice.clone())).await?;
    // Alice asks Bob, Bob asks Alice back while Alice still waits: neither ever answers.
    alice.tell(AfterYou { rounds: 2 }).await?;
    Ok(())
}

/// The ring: one exposed actor; with a peer, the first half of a cross-process cycle.
async fn ring(proc: &Proc, peer: Option<&ProcAddr>) -> Result<(), Box<dyn Error>> {
    let ring = proc.spawn("ring", Polite { peer: None })?;
    proc.expose_remote(&ring)?;
    if let Some(peer) = peer {
        let theirs = tokio::time::timeout(
            Duration::from_secs(10),
            proc.lookup_remote::<Polite>(peer, "ring"),
        )
        .await??;
        // An ask, so the peer holds our ref before the cycle's first ask reaches it.
        tokio::time::timeout(Duration::from_secs(10), theirs.ask(Meet(ring.clone()))).await??;
        ring.ask(Meet(theirs)).await?;
        // Ours asks theirs, theirs asks ours back while ours still waits.
        ring.tell(AfterYou { rounds: 2 }).await?;
        println!("CYCLE {} -> {}", ring.id(), peer);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let gateway = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    let server = gateway.serve(options.listen.clone()).await?;
    let monitor = Monitor::new();
    let label = if options.ring { "ring" } else { "shop" };
    let proc = Proc::builder(ProcId::unique(label))
        .observer(monitor.observer())
        .build();
    let _attachment = gateway.attach(&proc)?;
    monitor.serve_on(&proc)?;

    let addr = ProcAddr::new(proc.id().clone(), server.location().clone());
    println!("PROC {addr}");
    if options.ring {
        ring(&proc, options.peer.as_ref()).await?;
    } else {
        shop(&proc).await?;
    }
    println!("watch it with: plexus-console {addr}");

    tokio::select! {
        _ = stdin_closed() => {}
        () = tokio::time::sleep(options.run_for) => {}
    }
    // The deadlocked and crunching actors never finish their handlers, so the proc is not
    // shut down gracefully; leaving main tears their tasks down.
    Ok(())
}
