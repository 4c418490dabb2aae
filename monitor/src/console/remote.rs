//! Reading monitors in other processes through a gateway: the console's own proc
//! ([`ConsoleLink`]) attaches to a networked gateway, and one [`GatewaySource`] per
//! monitored proc asks that proc's [`MonitorService`] like any remote actor.
//!
//! ```text
//! GatewaySource ─ lookup_remote("$monitor") ─▶ ActorRef<MonitorService> ─ ask SnapshotRequest ─▶ Snapshot
//!        └────────── through the ConsoleLink's proc and its gateway ──────────┘
//! ```
//!
//! Gateways route by proc id, not by location, so a source is given a proc address
//! (`label#instance@tcp://host:port`); a monitored program prints or logs it. The ref
//! found by the lookup is kept until a fetch fails, then looked up again, so a restarted
//! program at the same proc address is found again without restarting the console.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use plexus_core::{ActorRef, AskError, Location, Proc, ProcAddr, ProcId};
use plexus_gateway::{Attachment, Gateway, GatewayConfig, RemoteRequestError};

use super::source::{SnapshotSource, SourceError};
use crate::service::{MONITOR_ACTOR_NAME, MonitorService, SnapshotRequest};
use crate::snapshot::Snapshot;
use crate::sync::lock;

/// How long a [`GatewaySource`] waits for one lookup or one snapshot by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The console's own proc, attached to a networked gateway: the sender of every
/// [`GatewaySource`]'s requests. Cloning shares it; the proc stays attached while any
/// clone or source made from it lives.
///
/// ```
/// use plexus_monitor::console::{ConsoleLink, SnapshotSource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let link = ConsoleLink::new()?;
/// let source = link.source("app#17@tcp://127.0.0.1:7000".parse()?);
/// assert_eq!(source.label(), "app#17@tcp://127.0.0.1:7000");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConsoleLink {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    proc: Proc,
    // Kept for as long as the proc sends: dropping either takes its route away.
    _attachment: Attachment,
    gateway: Gateway,
}

impl fmt::Debug for ConsoleLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleLink")
            .field("proc", self.inner.proc.id())
            .finish_non_exhaustive()
    }
}

impl ConsoleLink {
    /// A console proc on a gateway of its own that serves no location: it only dials out,
    /// and replies come back on the connections it opened. Must be called within a tokio
    /// runtime.
    pub fn new() -> Result<ConsoleLink, SourceError> {
        let gateway =
            Gateway::new(Location::Local(0), GatewayConfig::default()).map_err(setup_failed)?;
        ConsoleLink::on(&gateway)
    }

    /// A console proc attached to `gateway`, for a program that already runs one.
    pub fn on(gateway: &Gateway) -> Result<ConsoleLink, SourceError> {
        let proc = Proc::new(ProcId::unique("plexus-console"));
        let attachment = gateway.attach(&proc).map_err(setup_failed)?;
        Ok(ConsoleLink {
            inner: Arc::new(LinkInner {
                proc,
                _attachment: attachment,
                gateway: gateway.clone(),
            }),
        })
    }

    /// The console's proc.
    pub fn proc(&self) -> &Proc {
        &self.inner.proc
    }

    /// The procs attached at `location` that serve their monitor, as proc addresses:
    /// the gateway there lists its procs, and each is asked whether it serves
    /// [`MONITOR_ACTOR_NAME`]; those that do not are left out. Each step waits at most
    /// `timeout`.
    ///
    /// Fails with [`SourceError::Unreachable`] or [`SourceError::TimedOut`] when the
    /// location cannot be asked.
    pub async fn discover(
        &self,
        location: &Location,
        timeout: Duration,
    ) -> Result<Vec<ProcAddr>, SourceError> {
        let label = location.to_string();
        let procs = self
            .inner
            .gateway
            .list_procs(location, timeout)
            .await
            .map_err(|error| match error {
                RemoteRequestError::Timeout { after } => SourceError::TimedOut {
                    location: label.clone(),
                    after,
                },
                other => SourceError::Unreachable {
                    location: label.clone(),
                    reason: other.to_string(),
                },
            })?;
        let mut served = Vec::new();
        for proc in procs {
            let addr = ProcAddr::new(proc, location.clone());
            let lookup = self
                .inner
                .proc
                .lookup_remote::<MonitorService>(&addr, MONITOR_ACTOR_NAME);
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(_)) => served.push(addr),
                Ok(Err(error)) => {
                    tracing::debug!(%addr, %error, "proc serves no monitor, left out");
                }
                Err(_) => tracing::debug!(%addr, "no answer about a monitor, left out"),
            }
        }
        Ok(served)
    }

    /// A source reading the monitor served on the proc at `addr`, waiting
    /// [`DEFAULT_FETCH_TIMEOUT`] per request.
    pub fn source(&self, addr: ProcAddr) -> GatewaySource {
        GatewaySource {
            link: self.clone(),
            label: addr.to_string(),
            addr,
            timeout: DEFAULT_FETCH_TIMEOUT,
            service: Mutex::new(None),
        }
    }
}

/// The console's gateway or proc could not be set up.
fn setup_failed(error: impl fmt::Display) -> SourceError {
    SourceError::Gateway {
        reason: error.to_string(),
    }
}

/// Reads the monitor served (see [`Monitor::serve_on`](crate::Monitor::serve_on)) on one
/// proc of another process, through a [`ConsoleLink`]. Labelled with the proc address.
///
/// The first fetch looks the service up by [`MONITOR_ACTOR_NAME`]; later fetches reuse
/// the ref until one fails. Route and ask failures map to [`SourceError`]s:
/// a lost or unknown destination is `Unreachable`, a proc without a served monitor (or
/// whose service stopped) `Refused`, a reply that is not a snapshot `Decode`, and no
/// answer within the timeout `TimedOut`.
///
/// ```
/// use plexus_core::{Location, Proc, ProcAddr, ProcId};
/// use plexus_gateway::{Gateway, GatewayConfig};
/// use plexus_monitor::Monitor;
/// use plexus_monitor::console::{ConsoleLink, SnapshotSource};
/// use std::time::Duration;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The monitored side, usually another process: a served monitor on a TCP gateway.
/// let gateway = Gateway::new(Location::Local(0), GatewayConfig::default())?;
/// let server = gateway.serve("tcp://127.0.0.1:0".parse()?).await?;
/// let monitor = Monitor::new();
/// let app = Proc::builder(ProcId::unique("app")).observer(monitor.observer()).build();
/// let _attachment = gateway.attach(&app)?;
/// monitor.serve_on(&app)?;
/// let addr = ProcAddr::new(app.id().clone(), server.location().clone());
///
/// // The console side.
/// let source = ConsoleLink::new()?.source(addr).timeout(Duration::from_secs(5));
/// let snapshot = source.fetch(Duration::from_secs(10)).await?;
/// assert_eq!(snapshot.actors[0].id.name(), "$monitor");
/// # Ok(()) }
/// ```
pub struct GatewaySource {
    link: ConsoleLink,
    addr: ProcAddr,
    label: String,
    timeout: Duration,
    service: Mutex<Option<ActorRef<MonitorService>>>,
}

impl fmt::Debug for GatewaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewaySource")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GatewaySource {
    /// Sets how long one lookup and one snapshot request may each take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The proc address read.
    pub fn addr(&self) -> &ProcAddr {
        &self.addr
    }

    /// The cached ref to the service, or a fresh lookup.
    async fn service(&self) -> Result<ActorRef<MonitorService>, SourceError> {
        if let Some(service) = lock(&self.service).clone() {
            return Ok(service);
        }
        let lookup = self
            .link
            .proc()
            .lookup_remote::<MonitorService>(&self.addr, MONITOR_ACTOR_NAME);
        let service = tokio::time::timeout(self.timeout, lookup)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|error| self.ask_failed(error))?;
        *lock(&self.service) = Some(service.clone());
        Ok(service)
    }

    async fn fetch_once(&self, grave_window: Duration) -> Result<Snapshot, SourceError> {
        let service = self.service().await?;
        let outcome = service
            .ask_timeout(SnapshotRequest::new(grave_window), self.timeout)
            .await;
        outcome.map_err(|error| self.ask_failed(error))
    }

    fn timed_out(&self) -> SourceError {
        SourceError::TimedOut {
            location: self.label.clone(),
            after: self.timeout,
        }
    }

    /// The source's form of a failed lookup or ask. Any failure forgets the ref: the
    /// service may have been replaced, and the next fetch looks it up again.
    fn ask_failed(&self, error: AskError) -> SourceError {
        *lock(&self.service) = None;
        let location = self.label.clone();
        match error {
            AskError::Timeout { .. } => self.timed_out(),
            AskError::Unroutable { .. } | AskError::Disconnected { .. } => {
                SourceError::Unreachable {
                    location,
                    reason: error.to_string(),
                }
            }
            AskError::Decode { reason, .. } => SourceError::Decode { location, reason },
            // NotFound, NotExposed, Unhandled, Closed, Panicked, Encode and whatever
            // comes later: the other side was reached and gave no snapshot.
            other => SourceError::Refused {
                location,
                reason: other.to_string(),
            },
        }
    }
}

impl SnapshotSource for GatewaySource {
    fn label(&self) -> &str {
        &self.label
    }

    fn fetch(&self, grave_window: Duration) -> BoxFuture<'_, Result<Snapshot, SourceError>> {
        self.fetch_once(grave_window).boxed()
    }
}
