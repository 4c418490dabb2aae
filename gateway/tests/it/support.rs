//! Shared fixtures: a recording actor exposed to remote tells, a counting forwarder and
//! envelope builders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{Actor, ActorId, Context, Handler, Proc, RemoteHandlers, RemoteMessage};
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
    pub(crate) taken: std::sync::Mutex<Vec<NetworkEnvelope>>,
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
    fn forward(&self, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.taken.lock().unwrap().push(envelope);
        Ok(())
    }
}
