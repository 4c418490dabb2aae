//! The monitor's system actor: answers snapshot requests that arrive as ordinary remote
//! messages, so a console in another process reads a proc's monitor through the gateway
//! without any lower crate knowing about the monitor.
//!
//! ```text
//! console ── ask "plexus.monitor.SnapshotRequest" ──▶ proc's "$monitor" ── Snapshot ──▶ console
//! ```
//!
//! The request and its reply are postcard-encoded like every remote message; the reply is
//! the [`Snapshot`] itself.

use std::time::Duration;

use plexus_core::{
    Actor, ActorRef, Context, ExposeError, Handler, Proc, RemoteActor, RemoteHandlers,
    RemoteMessage, SpawnError,
};
use serde::{Deserialize, Serialize};

use crate::monitor::Monitor;
use crate::snapshot::Snapshot;

/// The name the monitor's system actor is spawned under on every proc it serves.
///
/// The `$` keeps it apart from application names, which by convention do not use it.
pub const MONITOR_ACTOR_NAME: &str = "$monitor";

/// Asks a proc's [`MonitorService`] for a [`Snapshot`] of its monitor.
///
/// The reply is the snapshot, postcard-encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotRequest {
    /// Actors stopped for at least this long are reaped before the snapshot (see
    /// [`Monitor::snapshot`]), in milliseconds.
    pub grave_window_ms: u64,
}

impl SnapshotRequest {
    /// A request that keeps stopped actors visible for `grave_window` (to the millisecond,
    /// saturating).
    pub fn new(grave_window: Duration) -> Self {
        SnapshotRequest {
            grave_window_ms: u64::try_from(grave_window.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The grave window asked for.
    pub fn grave_window(&self) -> Duration {
        Duration::from_millis(self.grave_window_ms)
    }
}

impl RemoteMessage for SnapshotRequest {
    const NAME: &'static str = "plexus.monitor.SnapshotRequest";
}

/// The system actor that answers [`SnapshotRequest`]s with its monitor's snapshot.
///
/// Spawn and expose it with [`Monitor::serve_on`]. It appears in its own snapshots like
/// any actor, handling the request that asked for them.
#[derive(Debug)]
pub struct MonitorService {
    monitor: Monitor,
}

impl MonitorService {
    /// A service answering with `monitor`'s snapshots.
    pub fn new(monitor: Monitor) -> Self {
        MonitorService { monitor }
    }
}

impl Actor for MonitorService {}

impl RemoteActor for MonitorService {
    /// The remote messages it accepts: [`SnapshotRequest`] as an ask. So a proc with a
    /// route reaches a served monitor with
    /// `proc.lookup_remote::<MonitorService>(&addr, MONITOR_ACTOR_NAME)` and asks it like
    /// any remote actor.
    fn remote_handlers() -> RemoteHandlers<MonitorService> {
        RemoteHandlers::new().ask::<SnapshotRequest>()
    }
}

impl Handler<SnapshotRequest> for MonitorService {
    type Reply = Snapshot;

    async fn handle(&mut self, request: SnapshotRequest, _ctx: &mut Context<Self>) -> Snapshot {
        self.monitor.snapshot(request.grave_window())
    }
}

/// Why [`Monitor::serve_on`] could not serve a proc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The system actor could not be spawned (the name is taken, the proc is shut down or
    /// no runtime runs).
    #[error("cannot spawn the monitor service: {0}")]
    Spawn(#[from] SpawnError),
    /// The system actor could not be exposed to remote messages.
    #[error("cannot expose the monitor service: {0}")]
    Expose(#[from] ExposeError),
}

impl Monitor {
    /// Spawns a [`MonitorService`] for this monitor on `proc` under
    /// [`MONITOR_ACTOR_NAME`] and exposes it, so that a [`SnapshotRequest`] delivered to
    /// that name (by a gateway, or [`Proc::deliver_remote`]) is answered with this
    /// monitor's snapshot.
    ///
    /// Serve each monitor once: a monitor installed on several procs answers for all of
    /// them from any one, and a console that merges two answers of one monitor counts its
    /// totals twice. Must be called within a tokio runtime.
    ///
    /// ```
    /// use plexus_core::{Proc, ProcId, RemoteMessage};
    /// use plexus_monitor::{MONITOR_ACTOR_NAME, Monitor, Snapshot, SnapshotRequest};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = Monitor::new();
    /// let proc = Proc::builder(ProcId::unique("app"))
    ///     .observer(monitor.observer())
    ///     .build();
    /// monitor.serve_on(&proc)?;
    ///
    /// // What a gateway does with a snapshot request that arrived for this proc.
    /// let (reply, answer) = tokio::sync::oneshot::channel();
    /// let request = postcard::to_allocvec(&SnapshotRequest::new(Duration::from_secs(10)))?;
    /// proc.deliver_remote(
    ///     MONITOR_ACTOR_NAME,
    ///     SnapshotRequest::NAME,
    ///     &request,
    ///     Some(Box::new(move |outcome| {
    ///         let _ = reply.send(outcome);
    ///     })),
    /// )?;
    /// let snapshot: Snapshot = postcard::from_bytes(&answer.await??)?;
    /// assert_eq!(snapshot.totals.alive, 1); // the service itself
    /// # Ok(()) }
    /// ```
    pub fn serve_on(&self, proc: &Proc) -> Result<ActorRef<MonitorService>, ServeError> {
        let service = proc.spawn(MONITOR_ACTOR_NAME, MonitorService::new(self.clone()))?;
        if let Err(error) = proc.expose_remote(&service) {
            // A service that cannot be reached is of no use; do not leave it running.
            service.stop();
            return Err(error.into());
        }
        tracing::debug!(proc = %proc.id(), actor = MONITOR_ACTOR_NAME, "monitor service exposed");
        Ok(service)
    }
}
