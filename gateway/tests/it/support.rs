//! Shared fixtures: a recording actor exposed to remote tells, a counting forwarder and
//! envelope builders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{
    Actor, ActorId, Context, Handler, Location, Proc, RemoteHandlers, RemoteMessage,
};
use plexus_gateway::{Forwarder, PostError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen at once.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A remote tell carrying a number.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ping(pub(crate) u64);

impl RemoteMessage for Ping {
    const NAME: &'static str = "test.Ping";
}

/// Reports every ping it handles, tagged with its proc's label.
pub(crate) struct Recorder {
    pub(crate) tag: &'static str,
    pub(crate) seen: mpsc::UnboundedSender<(&'static str, u64)>,
}

impl Actor for Recorder {}

impl Handler<Ping> for Recorder {
    type Reply = ();

    async fn handle(&mut self, Ping(n): Ping, _ctx: &mut Context<Self>) {
        let _ = self.seen.send((self.tag, n));
    }
}

/// Spawns a recorder named `recorder` on `proc` and exposes it to remote pings.
pub(crate) fn spawn_recorder(
    proc: &Proc,
    tag: &'static str,
    seen: mpsc::UnboundedSender<(&'static str, u64)>,
) -> ActorId {
    let recorder = proc.spawn("recorder", Recorder { tag, seen }).unwrap();
    proc.expose(&recorder, RemoteHandlers::new().tell::<Ping>())
        .unwrap();
    recorder.id().clone()
}

/// A tell of `Ping(n)` to `actor`.
pub(crate) fn ping(actor: ActorId, n: u64) -> NetworkEnvelope {
    NetworkEnvelope::message(
        None,
        Recipient::Actor(actor),
        EnvelopeKind::Regular,
        &Ping(n),
    )
    .unwrap()
}

/// A forwarder that counts and keeps what it is given.
#[derive(Default)]
pub(crate) struct CountingForwarder {
    pub(crate) count: AtomicUsize,
    pub(crate) taken: std::sync::Mutex<Vec<(Location, NetworkEnvelope)>>,
}

impl CountingForwarder {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(CountingForwarder::default())
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Forwarder for CountingForwarder {
    fn forward(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.taken.lock().unwrap().push((dest.clone(), envelope));
        Ok(())
    }
}

/// A location nothing in these tests serves: where envelopes for unknown procs are sent.
pub(crate) fn elsewhere() -> Location {
    "tcp://127.0.0.1:9".parse().unwrap()
}

/// An ask whose reply is its number plus one.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Echo(pub(crate) u64);

impl RemoteMessage for Echo {
    const NAME: &'static str = "test.Echo";
}

/// An ask its handler sits on for a minute before answering.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stall;

impl RemoteMessage for Stall {
    const NAME: &'static str = "test.Stall";
}

/// Answers echoes; stalls on request.
pub(crate) struct Echoer;

impl Actor for Echoer {}

impl Handler<Echo> for Echoer {
    type Reply = u64;

    async fn handle(&mut self, Echo(n): Echo, _ctx: &mut Context<Self>) -> u64 {
        n + 1
    }
}

impl Handler<Stall> for Echoer {
    type Reply = ();

    async fn handle(&mut self, _: Stall, _ctx: &mut Context<Self>) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Spawns an echoer named `echo` on `proc` and exposes its asks.
pub(crate) fn spawn_echoer(proc: &Proc) -> ActorId {
    let echoer = proc.spawn("echo", Echoer).unwrap();
    proc.expose(&echoer, RemoteHandlers::new().ask::<Echo>().ask::<Stall>())
        .unwrap();
    echoer.id().clone()
}

/// An ask envelope carrying `message` for `actor`.
pub(crate) fn ask<M: RemoteMessage>(actor: ActorId, message: &M) -> NetworkEnvelope {
    NetworkEnvelope::message(
        None,
        Recipient::Actor(actor),
        EnvelopeKind::Request { id: 0 },
        message,
    )
    .unwrap()
}

/// A networked gateway with short timeouts, sharing `network` for `local:` locations.
pub(crate) fn networked(network: &plexus_transport::InprocNetwork) -> plexus_gateway::Gateway {
    let config = plexus_gateway::GatewayConfig {
        inproc: Some(network.clone()),
        ..plexus_gateway::GatewayConfig::default()
    };
    plexus_gateway::Gateway::new(Location::Local(0), config).unwrap()
}

/// The loopback TCP location with a port picked by the system.
pub(crate) fn any_tcp() -> Location {
    "tcp://127.0.0.1:0".parse().unwrap()
}
