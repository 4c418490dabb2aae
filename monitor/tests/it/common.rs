//! Helpers and test actors shared by the integration tests.

use std::future::Future;
use std::time::Duration;

use plexus_core::{Actor, Context, Handler, Proc, ProcId};
use plexus_monitor::Monitor;
use tokio::sync::oneshot;

/// Fails the test with `what` if `future` does not finish within 10 seconds.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting: {what}"),
    }
}

/// Polls `condition` every few milliseconds; fails the test with `what` if it does not
/// hold within 10 seconds.
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A proc with a fresh monitor installed.
pub(crate) fn monitored(label: &str) -> (Monitor, Proc) {
    let monitor = Monitor::new();
    let proc = Proc::builder(ProcId::unique(label))
        .observer(monitor.observer())
        .build();
    (monitor, proc)
}

/// Holds in its handler until released; answers `Hold` with nothing.
pub(crate) struct Gate;

impl Actor for Gate {}

/// Blocks the handler until the sender half fires or is dropped.
pub(crate) struct Hold(pub oneshot::Receiver<()>);

impl Handler<Hold> for Gate {
    type Reply = ();
    async fn handle(&mut self, Hold(release): Hold, _ctx: &mut Context<Self>) {
        let _ = release.await;
    }
}

/// Counted and otherwise ignored.
pub(crate) struct Note;

impl Handler<Note> for Gate {
    type Reply = ();
    async fn handle(&mut self, _: Note, _ctx: &mut Context<Self>) {}
}

/// Answered at once.
pub(crate) struct Ping;

impl Handler<Ping> for Gate {
    type Reply = ();
    async fn handle(&mut self, _: Ping, _ctx: &mut Context<Self>) {}
}
