//! Test actors and helpers shared by the integration tests.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::{Actor, Context, Handler};
use tokio::sync::oneshot;

/// Fails the test with `what` if `future` does not finish within 10 seconds.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting: {what}"),
    }
}

/// Records every `Record` it handles; holds on `Hold` until released.
#[derive(Default)]
pub(crate) struct Recorder {
    pub seen: Arc<Mutex<Vec<(usize, u64)>>>,
}

impl Actor for Recorder {}

/// A message tagged with its sender and its sequence number.
pub(crate) struct Record(pub usize, pub u64);

impl Handler<Record> for Recorder {
    type Reply = ();
    async fn handle(&mut self, Record(sender, seq): Record, _ctx: &mut Context<Self>) {
        self.seen.lock().unwrap().push((sender, seq));
    }
}

/// Blocks the actor until the sender half is dropped or fired.
pub(crate) struct Hold(pub oneshot::Receiver<()>);

impl Handler<Hold> for Recorder {
    type Reply = ();
    async fn handle(&mut self, Hold(release): Hold, _ctx: &mut Context<Self>) {
        let _ = release.await;
    }
}

/// Returns how many records were seen.
pub(crate) struct Count;

impl Handler<Count> for Recorder {
    type Reply = usize;
    async fn handle(&mut self, _: Count, _ctx: &mut Context<Self>) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Panics in its handler on `Crash`; answers `Ping` with its restart count.
pub(crate) struct Crashy;

impl Actor for Crashy {}

/// Makes the handler panic.
pub(crate) struct Crash;

impl Handler<Crash> for Crashy {
    type Reply = ();
    async fn handle(&mut self, _: Crash, _ctx: &mut Context<Self>) {
        panic!("crash requested");
    }
}

/// Answered with the actor's restart count.
pub(crate) struct Ping;

impl Handler<Ping> for Crashy {
    type Reply = u32;
    async fn handle(&mut self, _: Ping, ctx: &mut Context<Self>) -> u32 {
        ctx.restart_count()
    }
}
