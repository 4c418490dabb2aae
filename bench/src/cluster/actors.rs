//! The actors and messages of the cluster workloads: the counter in the peer process, the
//! notifier it reports to and the senders of the fan-in in the driving process.

use plexus_core::{Actor, ActorRef, Context, Handler, RemoteActor, RemoteHandlers, RemoteMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One small tell: the payload is summed by the [`Counter`].
#[derive(Serialize, Deserialize)]
pub(crate) struct Add(pub(crate) u64);

impl RemoteMessage for Add {
    const NAME: &'static str = "bench.cluster.Add";
}

/// An ask answered with its argument.
#[derive(Serialize, Deserialize)]
pub(crate) struct Echo(pub(crate) u64);

impl RemoteMessage for Echo {
    const NAME: &'static str = "bench.cluster.Echo";
}

/// An ask that resets the [`Counter`] and makes it tell `notify` once it has handled
/// `expect` more tells. An ask, so the driver knows the counter is armed before it starts
/// the clock.
#[derive(Serialize, Deserialize)]
pub(crate) struct Arm {
    pub(crate) expect: u64,
    pub(crate) notify: ActorRef<Notifier>,
}

impl RemoteMessage for Arm {
    const NAME: &'static str = "bench.cluster.Arm";
}

/// What the counter reports when it has seen what it was armed for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Done {
    pub(crate) seen: u64,
    pub(crate) sum: u64,
}

impl RemoteMessage for Done {
    const NAME: &'static str = "bench.cluster.Done";
}

/// The one actor of the peer process: sums tells, echoes asks.
#[derive(Default)]
pub(crate) struct Counter {
    sum: u64,
    seen: u64,
    expect: u64,
    notify: Option<ActorRef<Notifier>>,
}

impl Actor for Counter {}

impl Handler<Add> for Counter {
    type Reply = ();
    async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) {
        self.sum = self.sum.wrapping_add(n);
        self.seen += 1;
        if self.seen == self.expect
            && let Some(notify) = self.notify.take()
        {
            let done = Done {
                seen: self.seen,
                sum: self.sum,
            };
            if let Err(error) = notify.tell(done).await {
                eprintln!("cluster peer: the done report was not sent: {error}");
            }
        }
    }
}

impl Handler<Echo> for Counter {
    type Reply = u64;
    async fn handle(&mut self, Echo(n): Echo, _ctx: &mut Context<Self>) -> u64 {
        n
    }
}

impl Handler<Arm> for Counter {
    type Reply = ();
    async fn handle(&mut self, arm: Arm, _ctx: &mut Context<Self>) {
        self.sum = 0;
        self.seen = 0;
        self.expect = arm.expect;
        self.notify = Some(arm.notify);
    }
}

impl RemoteActor for Counter {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new()
            .tell::<Add>()
            .ask::<Echo>()
            .ask::<Arm>()
    }
}

/// The driver's end of the counter's reports: passes each [`Done`] to the driver's code.
pub(crate) struct Notifier {
    pub(crate) reports: mpsc::UnboundedSender<Done>,
}

impl Actor for Notifier {}

impl Handler<Done> for Notifier {
    type Reply = ();
    async fn handle(&mut self, done: Done, _ctx: &mut Context<Self>) {
        // The receiver goes away only when the driver is done with the cluster.
        let _ = self.reports.send(done);
    }
}

impl RemoteActor for Notifier {
    fn remote_handlers() -> RemoteHandlers<Self> {
        RemoteHandlers::new().tell::<Done>()
    }
}

/// A local ask to a [`Sender`]: tell `Add(n)` to `target` for every `n` in `range`.
pub(crate) struct Blast {
    pub(crate) target: ActorRef<Counter>,
    pub(crate) range: std::ops::Range<u64>,
}

/// One of the fan-in's senders in the driving process.
pub(crate) struct Sender;

impl Actor for Sender {}

impl Handler<Blast> for Sender {
    type Reply = Result<u64, String>;
    async fn handle(&mut self, blast: Blast, _ctx: &mut Context<Self>) -> Result<u64, String> {
        let mut sent = 0;
        for n in blast.range {
            blast
                .target
                .tell(Add(n))
                .await
                .map_err(|error| error.to_string())?;
            sent += 1;
        }
        Ok(sent)
    }
}
