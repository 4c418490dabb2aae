//! The actors both the hub and the nodes run, and the messages between them.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus::{
    Actor, ActorRef, Context, Handler, LinkDied, Proc, RemoteActor, RemoteHandlers, RemoteMessage,
    StopReason,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Asks that reached a [`Staller`] in this process.
static HANGING: AtomicU64 = AtomicU64::new(0);

macro_rules! remote_message {
    ($type:ty, $name:literal) => {
        impl RemoteMessage for $type {
            const NAME: &'static str = $name;
        }
    };
}

/// One numbered tell from one process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Tagged {
    pub(crate) from: String,
    pub(crate) seq: u64,
}
remote_message!(Tagged, "cluster-test.Tagged");

/// An ask answered with `n + 1`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Echo(pub(crate) u64);
remote_message!(Echo, "cluster-test.Echo");

/// An ask that is never answered while its process lives.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hang;
remote_message!(Hang, "cluster-test.Hang");

/// An ask for a [`SinkReport`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Report;
remote_message!(Report, "cluster-test.Report");

/// What a sink has received.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SinkReport {
    /// Tells received per sending process.
    pub(crate) received: HashMap<String, u64>,
    /// Tells whose sequence number was not the next one of their sender.
    pub(crate) out_of_order: u64,
    /// `Hang` asks that reached this process's staller.
    pub(crate) hanging: u64,
}

/// A tell answered by telling `Pong(n + 1)` to `reply_to`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReplyTo {
    pub(crate) n: u64,
    pub(crate) reply_to: ActorRef<Collector>,
}
remote_message!(ReplyTo, "cluster-test.ReplyTo");

/// The answer to a [`ReplyTo`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Pong(pub(crate) u64);
remote_message!(Pong, "cluster-test.Pong");

/// An ask to send `count` tagged tells to each target, interleaved; answered with the
/// number sent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Blast {
    pub(crate) targets: Vec<ActorRef<Sink>>,
    pub(crate) count: u64,
}
remote_message!(Blast, "cluster-test.Blast");

/// An ask to watch `target` from this process and tell `report_to` when it stops.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WatchAndReport {
    pub(crate) target: ActorRef<Sink>,
    pub(crate) report_to: ActorRef<Collector>,
}
remote_message!(WatchAndReport, "cluster-test.WatchAndReport");

/// A watch that fired: who watched, and the stop reason it saw.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Watched {
    pub(crate) who: String,
    pub(crate) reason: StopReason,
}
remote_message!(Watched, "cluster-test.Watched");

/// Counts tagged tells per sender and checks their order.
#[derive(Default)]
pub(crate) struct Sink {
    next: HashMap<String, u64>,
    out_of_order: u64,
}

impl Actor for Sink {}

impl Handler<Tagged> for Sink {
    type Reply = ();
    async fn handle(&mut self, tagged: Tagged, _ctx: &mut Context<Self>) {
        let next = self.next.entry(tagged.from).or_insert(0);
        if tagged.seq != *next {
            self.out_of_order += 1;
        }
        *next = tagged.seq + 1;
    }
}

impl Handler<Echo> for Sink {
    type Reply = u64;
    async fn handle(&mut self, Echo(n): Echo, _ctx: &mut Context<Self>) -> u64 {
        n + 1
    }
}

impl Handler<Report> for Sink {
    type Reply = SinkReport;
    async fn handle(&mut self, _: Report, _ctx: &mut Context<Self>) -> SinkReport {
        SinkReport {
            received: self.next.clone(),
            out_of_order: self.out_of_order,
            hanging: HANGING.load(Ordering::Relaxed),
        }
    }
}

impl Handler<ReplyTo> for Sink {
    type Reply = ();
    async fn handle(&mut self, request: ReplyTo, _ctx: &mut Context<Self>) {
        let _ = request.reply_to.tell(Pong(request.n + 1)).await;
    }
}

impl RemoteActor for Sink {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .tell::<Tagged>()
            .ask::<Echo>()
            .ask::<Report>()
            .tell::<ReplyTo>()
    }
}

/// Takes `Hang` asks and sits on each for a minute.
pub(crate) struct Staller;

impl Actor for Staller {}

impl Handler<Hang> for Staller {
    type Reply = ();
    async fn handle(&mut self, _: Hang, _ctx: &mut Context<Self>) {
        HANGING.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

impl RemoteActor for Staller {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Hang>()
    }
}

/// Sends tells on request, and starts watchers in its process.
pub(crate) struct Driver {
    label: String,
}

impl Driver {
    pub(crate) fn new(label: &str) -> Self {
        Driver {
            label: label.to_owned(),
        }
    }
}

impl Actor for Driver {}

impl Handler<Blast> for Driver {
    type Reply = Result<u64, String>;
    async fn handle(&mut self, blast: Blast, _ctx: &mut Context<Self>) -> Result<u64, String> {
        let mut sent = 0;
        for seq in 0..blast.count {
            for target in &blast.targets {
                let tagged = Tagged {
                    from: self.label.clone(),
                    seq,
                };
                target.tell(tagged).await.map_err(|e| e.to_string())?;
                sent += 1;
            }
        }
        Ok(sent)
    }
}

impl Handler<WatchAndReport> for Driver {
    type Reply = ();
    async fn handle(&mut self, request: WatchAndReport, ctx: &mut Context<Self>) {
        let watcher = Watcher::new(request.report_to, &self.label);
        if let Ok(watcher) = ctx.proc().spawn("watcher", watcher) {
            let _ = watcher.tell(WatchFor(request.target)).await;
        }
    }
}

impl RemoteActor for Driver {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().ask::<Blast>().ask::<WatchAndReport>()
    }
}

/// Starts watching a sink (a local message).
pub(crate) struct WatchFor(pub(crate) ActorRef<Sink>);

/// Watches one actor and reports its stop to a collector.
pub(crate) struct Watcher {
    report_to: ActorRef<Collector>,
    label: String,
}

impl Watcher {
    pub(crate) fn new(report_to: ActorRef<Collector>, label: &str) -> Self {
        Watcher {
            report_to,
            label: label.to_owned(),
        }
    }
}

impl Actor for Watcher {
    async fn on_link_died(
        &mut self,
        _ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        let watched = Watched {
            who: self.label.clone(),
            reason: died.reason,
        };
        let _ = self.report_to.tell(watched).await;
        ControlFlow::Continue(())
    }
}

impl Handler<WatchFor> for Watcher {
    type Reply = ();
    async fn handle(&mut self, WatchFor(target): WatchFor, ctx: &mut Context<Self>) {
        ctx.watch(&target);
    }
}

/// Collects pongs and fired watches for the hub's test code.
pub(crate) struct Collector {
    pongs: mpsc::UnboundedSender<u64>,
    watches: mpsc::UnboundedSender<(String, StopReason)>,
}

/// The receiving ends of a [`Collector`].
pub(crate) struct Seen {
    pub(crate) pongs: mpsc::UnboundedReceiver<u64>,
    pub(crate) watches: mpsc::UnboundedReceiver<(String, StopReason)>,
}

impl Collector {
    /// Spawns a collector on `proc`, exposed for remote senders.
    pub(crate) fn spawn(proc: &Proc) -> (ActorRef<Collector>, Seen) {
        let (pongs, pongs_rx) = mpsc::unbounded_channel();
        let (watches, watches_rx) = mpsc::unbounded_channel();
        let collector = proc
            .spawn("collector", Collector { pongs, watches })
            .expect("spawn the collector");
        proc.expose_remote(&collector)
            .expect("expose the collector");
        let seen = Seen {
            pongs: pongs_rx,
            watches: watches_rx,
        };
        (collector, seen)
    }
}

impl Actor for Collector {}

impl Handler<Pong> for Collector {
    type Reply = ();
    async fn handle(&mut self, Pong(n): Pong, _ctx: &mut Context<Self>) {
        let _ = self.pongs.send(n);
    }
}

impl Handler<Watched> for Collector {
    type Reply = ();
    async fn handle(&mut self, watched: Watched, _ctx: &mut Context<Self>) {
        let _ = self.watches.send((watched.who, watched.reason));
    }
}

impl RemoteActor for Collector {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Pong>().tell::<Watched>()
    }
}
