//! The gateway itself: attached procs, the way out, served locations, posting and
//! flushing.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
use plexus_core::{
    ActorId, ExposureCache, Location, Outbound, Proc, ProcId, RemoteAskError, TellError,
    UndeliverableReason, UndeliveredRemote,
};
use plexus_transport::{FlowCache, Hello, OutprocTransportManager};
use tokio::sync::oneshot;

use crate::config::GatewayConfig;
use crate::egress::{NetworkEgress, flush_queues, header_of};
use crate::error::{AttachError, GatewayError, PostError, RemoteRequestError};
use crate::flow::GatewayTarget;
use crate::ingress::Ingress;
use crate::link::{Link, ReplyPath, reply_on};
use crate::location::{LocationStack, LocationToken};
use crate::protocol;
use crate::route::{GatewayRoute, envelope_of};
use crate::wires::SchemeWireBuilder;

/// Where a gateway sends every envelope that is not for one of its attached procs: in a
/// networked gateway, the outproc transport manager, which dials the destination.
///
/// `forward` is called on the posting thread (often a connection reader) and must not
/// block or wait: it queues the envelope or fails at once.
pub trait Forwarder: Send + Sync + 'static {
    /// Takes an envelope for a proc this gateway does not hold, to be sent to the gateway
    /// at `dest`.
    fn forward(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError>;

    /// Resolves once every envelope forwarded before the call has been handed to a wire
    /// or bounced. The default is for forwarders that queue nothing.
    fn flush(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The connectivity boundary of one or more procs (design section 7).
///
/// Procs [`attach`](Gateway::attach) to it. [`post`](Gateway::post) hands an envelope
/// for an actor of an attached, live proc straight to that proc's
/// [`deliver_remote`](Proc::deliver_remote), with no serialization beyond the payload
/// already in the envelope; [`post_to`](Gateway::post_to) does the same and hands every
/// other envelope to the way out (the outproc transport manager of a gateway built with
/// [`Gateway::new`], or a custom [`Forwarder`]), or bounces it as
/// [`PostError::Unroutable`] when the gateway is isolated. Cloning is cheap: clones share
/// one gateway.
///
/// **Routing invariant:** an envelope is delivered to an attached proc only when its
/// recipient's [`ProcId`] is that proc's id; an envelope for a proc that is not attached
/// never reaches an attached proc, whatever its actor name.
///
/// ```
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
/// use plexus_core::{ActorId, Location, Proc, ProcId};
/// use plexus_gateway::{Gateway, PostError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let gateway = Gateway::isolated(Location::Local(1));
/// let proc = Proc::new(ProcId::unique("app"));
/// let _attachment = gateway.attach(&proc)?;
/// assert!(gateway.is_attached(proc.id()));
///
/// // Nobody here holds proc "elsewhere#7", and an isolated gateway forwards nothing.
/// let stranger = ActorId::new(ProcId::new("elsewhere", 7), "worker", 0);
/// let envelope = NetworkEnvelope {
///     sender: None,
///     recipient: Recipient::Actor(stranger),
///     trace_id: 0,
///     hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
///     kind: EnvelopeKind::Regular,
///     name: "app.Work".to_owned().into(),
///     payload: Default::default(),
/// };
/// let elsewhere: Location = "tcp://127.0.0.1:7000".parse()?;
/// assert!(matches!(gateway.post_to(&elsewhere, envelope), Err(PostError::Unroutable { .. })));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

/// A handle that does not keep its gateway alive; see [`Gateway::downgrade`].
#[derive(Clone)]
pub struct WeakGateway {
    inner: Weak<Inner>,
}

/// Counters of a gateway, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayStats {
    /// Envelopes handed to an attached proc of this gateway (tells and requests).
    pub delivered: u64,
    /// Envelopes handed to the way out: the forwarder, or the link of a proxied proc.
    pub forwarded: u64,
    /// Tells that could not be delivered or sent, logged and reported; includes the
    /// notices of refused tells of attached procs that came back from peers.
    pub bounced: u64,
}

/// The attached procs, hashed with foldhash: looked up on every tell.
type Procs = HashMap<ProcId, Entry, foldhash::fast::RandomState>;
pub(crate) struct Inner {
    /// Attached procs by id: local ones weakly (the [`Attachment`] owns the handle, so a
    /// dropped attachment leaves a dead entry), proxied ones by the link they are reached
    /// through (dead once it closes).
    procs: RwLock<Procs>,
    /// Bumped whenever the table may change (under its write lock), so a resolution
    /// cached by a flow ([`Inner::target_cached`]) is known to be current.
    procs_generation: AtomicU64,
    locations: Mutex<LocationStack>,
    egress: Egress,
    pub(crate) ingress: Arc<Ingress>,
    pub(crate) config: GatewayConfig,
    /// What this gateway announces in every handshake.
    pub(crate) hello: Hello,
    /// Every link opened by this gateway (accepted or dialed for a proxy attach), so
    /// that dropping the gateway closes them and the peers' requests fail at once.
    links: Mutex<Vec<Weak<Link>>>,
    /// Dropped with the gateway: its servers see their receivers close and end.
    shutdown: tokio::sync::watch::Sender<()>,
    /// How many accepted connections are open from each location their peers
    /// advertised: the last one closing is a lost peer, unless a dialed transport to
    /// the location is still healthy.
    accepted_from: Mutex<HashMap<Location, usize>>,
    delivered: AtomicU64,
    forwarded: AtomicU64,
    bounced: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let links = std::mem::take(self.links.get_mut().unwrap_or_else(PoisonError::into_inner));
        for link in links.iter().filter_map(Weak::upgrade) {
            link.connection.close();
        }
        // The lane tasks share the manager and would keep its connections open until
        // they idle out: close them now (after what is queued on them), so the peers
        // notice at once that this gateway is gone.
        if let Egress::Network(network) = &self.egress {
            network.manager().close_all();
        }
    }
}

enum Entry {
    Local(Weak<Attached>),
    Proxy(Arc<Link>),
}

impl Entry {
    fn is_live(&self) -> bool {
        match self {
            Entry::Local(entry) => entry.strong_count() > 0,
            Entry::Proxy(link) => link.is_open(),
        }
    }
}

/// What [`Gateway::tell_now`] did with a route's tell.
pub(crate) enum TellNow {
    /// Handed on without waiting.
    Sent,
    /// Delivered here, refused or failed at once, with the destination it was for.
    Done(Location, Result<(), PostError>),
    /// It waits for room, a dial or its send's outcome: on this egress, for this
    /// destination.
    Wait(Arc<NetworkEgress>, Location, NetworkEnvelope),
}

/// What `post_here` did with an envelope.
enum Here {
    /// Delivered here, or bounced.
    Done(Result<(), PostError>),
    /// To leave towards its destination.
    Leave(NetworkEnvelope),
}

/// A flow's memory of its recipient's local proc: valid while the table is at
/// `generation`, and only while the attachment lives.
struct CachedTarget {
    generation: u64,
    attached: Weak<Attached>,
    /// The recipient's exposure in that proc.
    exposures: ExposureCache,
}

/// Where an envelope for an attached proc goes.
pub(crate) enum Target {
    Local(Arc<Attached>),
    Proxy(Arc<Link>),
}

pub(crate) enum Egress {
    Isolated,
    Custom(Arc<dyn Forwarder>),
    Network(Arc<NetworkEgress>),
}

/// What an attachment shares with the gateway's table.
pub(crate) struct Attached {
    pub(crate) proc: Proc,
    /// The location of the remote gateway the proc is attached through, if any: its refs
    /// advertise that location rather than this gateway's.
    pub(crate) advertised: OnceLock<Location>,
    /// The route installed on the proc, removed again at detach.
    route: OnceLock<Arc<GatewayRoute>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let (Some(route), Some(installed)) = (self.route.get(), self.proc.route()) {
            // A later attachment elsewhere may have installed its own route: keep that.
            if crate::route::is_same(&installed, route) {
                self.proc.set_route(None);
            }
        }
    }
}

/// Keeps a proc attached to a gateway; dropping it (or calling
/// [`detach`](Attachment::detach)) detaches the proc. After that, envelopes for the proc
/// are treated like those for any other unknown proc.
#[must_use = "the proc is detached when the attachment is dropped"]
pub struct Attachment {
    entry: Arc<Attached>,
}

/// Keeps a location recorded as served; dropping it (or calling
/// [`stop`](ServeGuard::stop)) removes the location from the gateway's advertised-location
/// stack.
#[must_use = "the location stops being served when the guard is dropped"]
pub struct ServeGuard {
    gateway: Weak<Inner>,
    token: LocationToken,
    location: Location,
}

static GLOBAL: OnceLock<Gateway> = OnceLock::new();

impl Gateway {
    /// A gateway with no way out: envelopes for procs that are not attached bounce with
    /// [`PostError::Unroutable`]. `reserved` is advertised while no location is served.
    pub fn isolated(reserved: Location) -> Self {
        Gateway {
            inner: Arc::new(Inner::new(
                reserved,
                GatewayConfig::default(),
                Egress::Isolated,
            )),
        }
    }

    /// A gateway that hands envelopes for procs that are not attached to `forwarder`.
    /// `reserved` is advertised while no location is served. It serves `local:` locations
    /// only with an in-process network, and requests to other gateways fail with
    /// [`RemoteRequestError::Unroutable`]; it is meant for tests and custom routing.
    pub fn with_forwarder(reserved: Location, forwarder: Arc<dyn Forwarder>) -> Self {
        Gateway {
            inner: Arc::new(Inner::new(
                reserved,
                GatewayConfig::default(),
                Egress::Custom(forwarder),
            )),
        }
    }

    /// A networked gateway: envelopes for procs that are not attached go to the gateway at
    /// their destination's location through an [`OutprocTransportManager`] that dials by
    /// scheme (`tcp://`, `unix://` with the `unix` feature, `local:N` over
    /// `config.inproc`). `reserved` is advertised while no location is served.
    ///
    /// Must be called inside a tokio runtime (the manager runs a health checker); fails
    /// with [`GatewayError::NoRuntime`] otherwise, and with [`GatewayError::Config`] when
    /// the transport settings are out of bounds.
    ///
    /// ```
    /// use plexus_core::Location;
    /// use plexus_gateway::{Gateway, GatewayConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let gateway = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    /// let server = gateway.serve("tcp://127.0.0.1:0".parse()?).await?;
    /// // Port 0 was replaced by the port actually bound.
    /// assert_ne!(server.location().to_string(), "tcp://127.0.0.1:0");
    /// assert_eq!(&gateway.default_location(), server.location());
    /// server.stop();
    /// assert_eq!(gateway.default_location(), Location::Local(0));
    /// # Ok(()) }
    /// ```
    pub fn new(reserved: Location, config: GatewayConfig) -> Result<Self, GatewayError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GatewayError::NoRuntime);
        }
        let mut failure = None;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let mut inner = Inner::new(reserved, config, Egress::Isolated);
            match network_egress(weak, &inner.config, &inner.hello) {
                Ok(egress) => inner.egress = Egress::Network(Arc::new(egress)),
                Err(error) => failure = Some(error),
            }
            inner
        });
        if let Some(error) = failure {
            return Err(error);
        }
        if let Egress::Network(network) = &inner.egress {
            watch_lost(&inner, network.manager().subscribe_lost());
        }
        Ok(Gateway { inner })
    }

    /// The process-wide gateway, built on first use with [`GatewayConfig::default`] and
    /// the reserved location `local:0`; later calls return clones of it.
    ///
    /// The first call must run inside a tokio runtime, whose tasks then carry the
    /// gateway's network traffic: use it from one long-lived runtime. A first call outside
    /// any runtime fails with [`GatewayError::NoRuntime`] and builds nothing.
    ///
    /// ```
    /// use plexus_core::{Proc, ProcId};
    /// use plexus_gateway::Gateway;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proc = Proc::new(ProcId::unique("app"));
    /// let _attachment = Gateway::global()?.attach(&proc)?;
    /// // Every caller gets the same gateway.
    /// assert!(Gateway::global()?.is_attached(proc.id()));
    /// # Ok(()) }
    /// ```
    pub fn global() -> Result<Gateway, GatewayError> {
        if let Some(gateway) = GLOBAL.get() {
            return Ok(gateway.clone());
        }
        let built = Gateway::new(Location::Local(0), GatewayConfig::default())?;
        // Two first calls may race; the loser's gateway is dropped unused.
        Ok(GLOBAL.get_or_init(|| built).clone())
    }

    /// Attaches `proc`: from now on envelopes for its actors are delivered to it directly.
    ///
    /// Fails with [`AttachError::AlreadyAttached`] while another proc with the same id is
    /// attached (directly or through a proxy); a dead entry is replaced silently.
    ///
    /// The proc gets this gateway as its [`RemoteRoute`](plexus_core::RemoteRoute)
    /// (removed again when the attachment is dropped), so its remote refs send through
    /// it; its local location is the gateway's [`default_location`](Gateway::default_location).
    pub fn attach(&self, proc: &Proc) -> Result<Attachment, AttachError> {
        let entry = Arc::new(Attached {
            proc: proc.clone(),
            advertised: OnceLock::new(),
            route: OnceLock::new(),
        });
        self.inner
            .insert(proc.id().clone(), Entry::Local(Arc::downgrade(&entry)))?;
        let route = Arc::new(GatewayRoute {
            gateway: Arc::downgrade(&self.inner),
            entry: Arc::downgrade(&entry),
            fallback: self.default_location(),
            origin: proc.id().clone(),
        });
        let _ = entry.route.set(Arc::clone(&route));
        proc.set_route(Some(route));
        tracing::debug!(proc = %proc.id(), "proc attached to gateway");
        Ok(Attachment { entry })
    }

    /// Whether a live proc with this id is attached, directly or through a proxy.
    pub fn is_attached(&self, proc: &ProcId) -> bool {
        self.inner.target(proc).is_some()
    }

    /// The live procs attached to this gateway, directly or through a proxy, sorted.
    pub fn attached_procs(&self) -> Vec<ProcId> {
        self.inner.attached_procs()
    }

    /// The live procs attached to the gateway reached at `location`, sorted; this
    /// gateway's own when `location` is one of its own. It is how a tool given only a
    /// location (the console) learns which procs to address.
    ///
    /// Fails like [`request_to`](Gateway::request_to): unreachable, disconnected, timed
    /// out; a reply that does not decode is [`RemoteAskError::Decode`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use plexus_core::{Location, Proc, ProcId};
    /// use plexus_gateway::{Gateway, GatewayConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    /// let served = server.serve("tcp://127.0.0.1:0".parse()?).await?;
    /// let proc = Proc::new(ProcId::unique("app"));
    /// let _attachment = server.attach(&proc)?;
    ///
    /// let client = Gateway::new(Location::Local(0), GatewayConfig::default())?;
    /// let procs = client.list_procs(served.location(), Duration::from_secs(5)).await?;
    /// assert_eq!(procs, vec![proc.id().clone()]);
    /// # Ok(()) }
    /// ```
    pub async fn list_procs(
        &self,
        location: &Location,
        timeout: Duration,
    ) -> Result<Vec<ProcId>, RemoteRequestError> {
        if self.inner.is_own(location) {
            return Ok(self.inner.attached_procs());
        }
        let Egress::Network(network) = &self.inner.egress else {
            return Err(RemoteRequestError::Unreachable {
                dest: location.clone(),
                reason: "this gateway is isolated".to_owned(),
            });
        };
        let network = Arc::clone(network);
        let reply = network
            .request(location, protocol::list_procs_request(), timeout, None)
            .await?;
        postcard::from_bytes(&reply).map_err(|error| {
            RemoteRequestError::Remote(RemoteAskError::Decode {
                message: protocol::LIST_PROCS.to_owned(),
                reason: error.to_string(),
            })
        })
    }

    /// Delivers one envelope to an attached proc without waiting; see the type's
    /// documentation.
    ///
    /// An envelope for an actor of a proc attached here goes to its
    /// [`deliver_remote`](Proc::deliver_remote) (a refusal comes back as
    /// [`PostError::Delivery`]); one for a proc attached through a proxy goes to the
    /// connection it is reached through. Only tells (`regular` envelopes) are taken here;
    /// requests go through [`request_to`](Gateway::request_to). Without a location there
    /// is no way on: any other envelope bounces as [`PostError::Unroutable`] or
    /// [`PostError::Unaddressed`]; use [`post_to`](Gateway::post_to) to route it.
    pub fn post(&self, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.inner.post(None, envelope)
    }

    /// Routes one envelope towards the gateway at `dest` without waiting.
    ///
    /// An envelope for an attached proc is delivered here as by [`post`](Gateway::post),
    /// whatever `dest` says (no network between procs of one gateway). Any other goes to
    /// the way out (spending one hop), unless `dest` is one of this gateway's own
    /// locations or the gateway is isolated: then it bounces as
    /// [`PostError::Unroutable`]. A networked gateway queues it for `dest` and fails with
    /// [`PostError::Full`] when that queue is full; a send that fails later is bounced
    /// (logged, counted in [`GatewayStats::bounced`]).
    pub fn post_to(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.inner.post(Some(dest), envelope)
    }

    /// Routes one tell towards the gateway at `dest` like [`post_to`](Gateway::post_to),
    /// but waits for room in the destination's queue instead of failing with
    /// [`PostError::Full`] (design 3.3: an awaited tell waits for transport room).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call queued nothing.
    pub async fn send_to(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
    ) -> Result<(), PostError> {
        self.send_from(dest, envelope, None).await
    }

    /// [`send_to`](Gateway::send_to) for a tell of the attached proc `origin`, whose
    /// undeliverable handler hears of it if it is lost after this returned.
    pub(crate) async fn send_from(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        origin: Option<&ProcId>,
    ) -> Result<(), PostError> {
        let network = match &self.inner.egress {
            Egress::Network(network) => Arc::clone(network),
            _ => return self.inner.post_from(Some(dest), envelope, origin),
        };
        let mut envelope = match self.inner.post_here(Some(dest), envelope) {
            Here::Done(outcome) => return outcome,
            Here::Leave(envelope) => envelope,
        };
        spend_hop(&mut envelope)?;
        self.inner.forwarded.fetch_add(1, Ordering::Relaxed);
        network.send(dest, envelope, origin).await
    }

    /// The part of [`send_from`](Gateway::send_from) that needs no waiting, for a route's
    /// tell: delivers to an attached proc, refuses, or queues on a lane whose destination
    /// is connected, and says how that went. Hands the tell back (its hop spent, already
    /// counted as forwarded) with the egress to wait on when it must wait for room, a dial
    /// or the outcome of its send.
    #[allow(
        clippy::result_large_err,
        reason = "the tell is handed back by value to be sent on the waiting path"
    )]
    pub(crate) fn send_now(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        origin: &ProcId,
    ) -> Result<Result<(), PostError>, (Arc<NetworkEgress>, NetworkEnvelope)> {
        let Egress::Network(network) = &self.inner.egress else {
            return Ok(self.inner.post_from(Some(dest), envelope, Some(origin)));
        };
        let mut envelope = match self.inner.post_here(Some(dest), envelope) {
            Here::Done(outcome) => return Ok(outcome),
            Here::Leave(envelope) => envelope,
        };
        if let Err(error) = spend_hop(&mut envelope) {
            return Ok(Err(error));
        }
        self.inner.forwarded.fetch_add(1, Ordering::Relaxed);
        match network.push_connected(dest, Some(origin), envelope) {
            Ok(()) => Ok(Ok(())),
            Err(envelope) => Err((Arc::clone(network), envelope)),
        }
    }

    /// [`send_now`](Gateway::send_now) for a route's tell from the attached proc `origin`,
    /// still an [`Outbound`]. The common tell (networked gateway, recipient's proc not
    /// attached here, a location not this gateway's own) is checked on the borrowed
    /// message and becomes an envelope only in its lane's queue, instead of being built
    /// first and copied through every call on the way; any other takes `send_now`.
    pub(crate) fn tell_now(&self, message: Outbound, origin: &ProcId) -> TellNow {
        if let Egress::Network(network) = &self.inner.egress
            && self.inner.target(message.recipient.actor.proc()).is_none()
            && !self.inner.is_own(&message.recipient.location)
        {
            self.inner.forwarded.fetch_add(1, Ordering::Relaxed);
            return match network.push_outbound(message, origin) {
                Ok(()) => TellNow::Sent,
                Err((location, envelope)) => TellNow::Wait(Arc::clone(network), location, envelope),
            };
        }
        let (location, envelope) = envelope_of(message, EnvelopeKind::Regular);
        match self.send_now(&location, envelope, origin) {
            Ok(outcome) => TellNow::Done(location, outcome),
            Err((network, envelope)) => TellNow::Wait(network, location, envelope),
        }
    }

    /// Sends `envelope` as a request for an actor of a proc reached at `dest` and waits at
    /// most `timeout` for the postcard bytes of the reply.
    ///
    /// A proc attached here answers directly; a proc attached through a proxy over the
    /// connection it is reached through; any other through the transport manager, whose
    /// responses are routed by request id. When the connection carrying the request is
    /// lost, fails at once with [`RemoteRequestError::Disconnected`], not at the timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future forgets the request; it may or may not have been delivered.
    pub async fn request_to(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<Bytes, RemoteRequestError> {
        Arc::clone(&self.inner)
            .request(Some(dest.clone()), envelope, timeout, None)
            .await
    }

    /// [`request_to`](Gateway::request_to) for a request of the attached proc `origin`,
    /// so it follows the tells that proc queued before it on the same lane.
    pub(crate) async fn request_from(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        timeout: Duration,
        origin: Option<&ProcId>,
    ) -> Result<Bytes, RemoteRequestError> {
        Arc::clone(&self.inner)
            .request(Some(dest.clone()), envelope, timeout, origin)
            .await
    }

    /// [`post_to`](Gateway::post_to) for a tell of the attached proc `origin`.
    pub(crate) fn post_from(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        origin: Option<&ProcId>,
    ) -> Result<(), PostError> {
        self.inner.post_from(Some(dest), envelope, origin)
    }

    /// Waits until everything posted before the call has been delivered, handed to a
    /// wire, or bounced.
    ///
    /// First the queues of attached actors whose mailboxes were full are drained into
    /// their mailboxes (or refused), then the queues of proxy links, then the forwarder's
    /// lane queues; an envelope "handed to a wire" sits in its connection's send queue and
    /// is written by the connection's writer in order. Envelopes posted while `flush`
    /// runs may or may not be covered. A lane whose recipient grants no credit (it is
    /// full) holds `flush` until the recipient consumes: bound it with a timeout where
    /// that matters.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn flush(&self) {
        self.inner.ingress.flush().await;
        let links: Vec<_> = self
            .inner
            .read_procs()
            .values()
            .filter_map(|entry| match entry {
                Entry::Proxy(link) => Some(link.tells.clone()),
                Entry::Local(_) => None,
            })
            .collect();
        flush_queues(links).await;
        match &self.inner.egress {
            Egress::Isolated => {}
            Egress::Custom(forwarder) => forwarder.flush().await,
            Egress::Network(network) => network.flush().await,
        }
    }

    /// Records `location` as served, making it the default advertised location until it
    /// stops or a later one starts. Nothing listens: use it for a location served by
    /// something else (a proxy in front of this process); [`serve`](Gateway::serve)
    /// listens and records.
    pub fn serve_location(&self, location: Location) -> ServeGuard {
        tracing::info!(%location, "gateway serves location");
        ServeGuard::record(&self.inner, location)
    }

    /// The location to advertise: the last served location still active, or the location
    /// reserved at construction.
    pub fn default_location(&self) -> Location {
        self.inner.locations().current().clone()
    }

    /// The counters of this gateway.
    pub fn stats(&self) -> GatewayStats {
        GatewayStats {
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            forwarded: self.inner.forwarded.load(Ordering::Relaxed),
            bounced: self.inner.bounced.load(Ordering::Relaxed),
        }
    }

    /// The transport manager of a networked gateway, for inspection (destinations,
    /// health); `None` for isolated gateways and custom forwarders.
    pub fn transport(&self) -> Option<&OutprocTransportManager> {
        match &self.inner.egress {
            Egress::Network(network) => Some(network.manager()),
            _ => None,
        }
    }

    /// A handle that does not keep the gateway alive.
    pub fn downgrade(&self) -> WeakGateway {
        WeakGateway {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attached = self
            .inner
            .read_procs()
            .values()
            .filter(|entry| entry.is_live())
            .count();
        let egress = match &self.inner.egress {
            Egress::Isolated => "isolated",
            Egress::Custom(_) => "forwarder",
            Egress::Network(_) => "network",
        };
        f.debug_struct("Gateway")
            .field("id", &self.inner.hello.proc)
            .field("attached", &attached)
            .field("default_location", &self.default_location())
            .field("egress", &egress)
            .finish_non_exhaustive()
    }
}

/// Tells every attached proc about each destination the transport loses, until the
/// gateway is gone.
fn watch_lost(
    inner: &Arc<Inner>,
    mut lost: tokio::sync::broadcast::Receiver<plexus_transport::Dest>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let gateway = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            match lost.recv().await {
                Ok(dest) => match gateway.upgrade() {
                    Some(inner) => inner.peer_lost(dest.location()),
                    None => return,
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "missed destination losses; their watches fire late or not at all"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// The network egress of a gateway under construction.
fn network_egress(
    weak: &Weak<Inner>,
    config: &GatewayConfig,
    hello: &Hello,
) -> Result<NetworkEgress, GatewayError> {
    let inbound = ManagerInbound {
        gateway: weak.clone(),
    };
    let builder = SchemeWireBuilder::new(config);
    let manager = match &config.flow {
        Some(flow) => OutprocTransportManager::with_flow_control(
            builder,
            hello.clone(),
            config.manager.clone(),
            inbound,
            flow.clone(),
            Arc::new(GatewayTarget {
                gateway: weak.clone(),
            }),
        )?,
        None => {
            OutprocTransportManager::new(builder, hello.clone(), config.manager.clone(), inbound)?
        }
    };
    let bouncer = weak.clone();
    let bounce: crate::egress::Bounce = Arc::new(move |envelope, reason, origin| {
        if let Some(inner) = bouncer.upgrade() {
            inner.bounce_from(envelope, reason, origin);
        }
    });
    Ok(NetworkEgress::new(
        manager,
        config.dest_queue_capacity,
        bounce,
    ))
}

/// What peers send on connections this gateway dialed, other than responses to its
/// requests: tells are posted, requests answered on the connection they came on.
struct ManagerInbound {
    gateway: Weak<Inner>,
}

impl plexus_transport::Inbound for ManagerInbound {
    fn deliver(&self, envelope: NetworkEnvelope) {
        // The reader calls `deliver_from`; this path has no connection to answer on.
        match envelope.kind {
            EnvelopeKind::Regular => {
                if let Some(inner) = self.gateway.upgrade() {
                    inner.receive_tell(envelope, None);
                }
            }
            _ => tracing::warn!(kind = %envelope.kind, "envelope without its connection dropped"),
        }
    }

    fn deliver_from(&self, envelope: NetworkEnvelope, from: &plexus_transport::ConnectionRef) {
        let Some(inner) = self.gateway.upgrade() else {
            return;
        };
        match envelope.kind {
            EnvelopeKind::Regular => inner.receive_tell(envelope, Some(from)),
            EnvelopeKind::Request { id } if !protocol::is_for_gateway(&envelope) => {
                inner.receive_request(envelope, id, &ReplyPath::Connection(from.clone()));
            }
            EnvelopeKind::RequestAll { id } => {
                let reply = reply_on(&ReplyPath::Connection(from.clone()), &envelope, id);
                reply(Err(protocol::group_request_refused(&envelope)));
            }
            _ => {
                tracing::debug!(
                    kind = %envelope.kind,
                    recipient = %envelope.recipient,
                    "unexpected envelope on a dialed connection, dropped"
                );
            }
        }
    }
}

impl Inner {
    fn new(reserved: Location, config: GatewayConfig, egress: Egress) -> Self {
        let identity = ProcId::unique("gateway");
        // The random instance doubles as the launch id: both only need to differ between
        // launches.
        let mut hello = Hello::new(identity.clone(), identity.instance());
        if let Some(flow) = &config.flow {
            hello = hello.with_flow(flow.clone());
        }
        Inner {
            procs: RwLock::new(HashMap::default()),
            procs_generation: AtomicU64::new(0),
            locations: Mutex::new(LocationStack::new(reserved)),
            egress,
            ingress: Arc::new(Ingress::new(config.ingress_queue_capacity)),
            config,
            hello,
            links: Mutex::new(Vec::new()),
            shutdown: tokio::sync::watch::Sender::new(()),
            accepted_from: Mutex::new(HashMap::new()),
            delivered: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            bounced: AtomicU64::new(0),
        }
    }

    /// The served location the gateway's hellos announce: the last one still served,
    /// none while it serves none (the reserved location reaches nothing by itself).
    pub(crate) fn served(&self) -> Option<Location> {
        self.locations().active().last().cloned()
    }

    /// What this gateway announces in a new handshake: its identity, flow window and
    /// served location.
    pub(crate) fn current_hello(&self) -> Hello {
        let mut hello = self.hello.clone();
        hello.location = self.served();
        hello
    }

    /// Makes the transport manager announce the served location in its next hellos, so
    /// peers this gateway dials know where it is reached and notice its loss.
    pub(crate) fn advertise_served(&self) {
        if let Egress::Network(network) = &self.egress {
            network.manager().set_advertised_location(self.served());
        }
    }

    /// Counts an accepted connection from a peer that advertised `location`.
    pub(crate) fn accepted_opened(&self, location: &Location) {
        let mut accepted = self
            .accepted_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *accepted.entry(location.clone()).or_default() += 1;
    }

    /// An accepted connection from `location` closed: when it was the last one and no
    /// dialed transport to `location` is healthy, the peer is lost for the attached
    /// procs' remote watches and links.
    pub(crate) fn accepted_closed(&self, location: &Location) {
        let last = {
            let mut accepted = self
                .accepted_from
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match accepted.get_mut(location) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    accepted.remove(location);
                    true
                }
                None => false,
            }
        };
        if !last {
            return;
        }
        let dialed = match &self.egress {
            Egress::Network(network) => network
                .manager()
                .transport(&plexus_transport::Dest::new(location.clone()))
                .is_some_and(|transport| transport.is_healthy()),
            _ => false,
        };
        if dialed {
            tracing::debug!(%location, "accepted connection closed; a dialed one remains");
            return;
        }
        self.peer_lost(location);
    }

    pub(crate) fn locations(&self) -> MutexGuard<'_, LocationStack> {
        self.locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves (with an error) once the gateway is dropped.
    pub(crate) fn on_shutdown(&self) -> tokio::sync::watch::Receiver<()> {
        self.shutdown.subscribe()
    }

    /// Remembers `link` so that dropping the gateway closes it.
    pub(crate) fn track(&self, link: &Arc<Link>) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.retain(|link| link.upgrade().is_some_and(|link| link.is_open()));
        links.push(Arc::downgrade(link));
    }

    fn read_procs(&self) -> std::sync::RwLockReadGuard<'_, Procs> {
        // Every statement leaves the map consistent, so a poisoned lock is still valid.
        self.procs.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_procs(&self) -> std::sync::RwLockWriteGuard<'_, Procs> {
        let procs = self.procs.write().unwrap_or_else(PoisonError::into_inner);
        // Bumped holding the write lock, before any change: a reader that sees the new
        // generation reads the table only after this writer is done with it, and one that
        // saw the old generation finds it changed the next time it checks.
        self.procs_generation.fetch_add(1, Ordering::AcqRel);
        procs
    }

    fn insert(&self, id: ProcId, entry: Entry) -> Result<(), AttachError> {
        let mut procs = self.write_procs();
        if let Some(existing) = procs.get(&id) {
            if existing.is_live() {
                return Err(AttachError::AlreadyAttached { proc: id });
            }
            tracing::debug!(proc = %id, "replacing a dead gateway entry");
        }
        procs.insert(id, entry);
        Ok(())
    }

    /// Registers `proc` as reached through `link`, until the link closes.
    pub(crate) fn attach_proxy(
        self: &Arc<Self>,
        proc: ProcId,
        link: Arc<Link>,
    ) -> Result<(), AttachError> {
        self.insert(proc.clone(), Entry::Proxy(Arc::clone(&link)))?;
        tracing::info!(%proc, peer = %link.connection.peer().peer, "proc attached through a proxy link");
        let gateway = Arc::downgrade(self);
        tokio::spawn(async move {
            let reason = link.connection.closed().await;
            let Some(inner) = gateway.upgrade() else {
                return;
            };
            let mut procs = inner.write_procs();
            if matches!(procs.get(&proc), Some(Entry::Proxy(current)) if Arc::ptr_eq(current, &link))
            {
                procs.remove(&proc);
                tracing::info!(%proc, %reason, "proxied proc detached: its link closed");
            }
        });
        Ok(())
    }

    /// The live entry for this proc, cleaning it if it is dead.
    pub(crate) fn target(&self, id: &ProcId) -> Option<Target> {
        let target = match self.read_procs().get(id)? {
            Entry::Local(weak) => weak.upgrade().map(Target::Local),
            Entry::Proxy(link) => link.is_open().then(|| Target::Proxy(Arc::clone(link))),
        };
        if target.is_some() {
            return target;
        }
        let mut procs = self.write_procs();
        // Another attach may have replaced the dead entry meanwhile; keep a live one.
        if procs.get(id).is_some_and(|entry| !entry.is_live()) {
            procs.remove(id);
            tracing::debug!(proc = %id, "removed a dead gateway entry");
        }
        None
    }

    /// [`target`](Self::target) for the recipient of one flow, remembered in the flow's
    /// `cache`: a local proc's entry is reused as long as the table has not changed since
    /// and the attachment is alive, which is exactly when `target` would find it again,
    /// without the table's lock and a hash of the proc id per envelope. With a local
    /// target comes the flow's cache of the recipient's exposure in that proc.
    pub(crate) fn target_cached<'c>(
        &self,
        id: &ProcId,
        cache: &'c mut FlowCache,
    ) -> Option<(Target, Option<&'c mut ExposureCache>)> {
        let generation = self.procs_generation.load(Ordering::Acquire);
        let hit = cache
            .get::<CachedTarget>()
            .filter(|cached| cached.generation == generation)
            .and_then(|cached| cached.attached.upgrade());
        let target = match hit {
            Some(attached) => Target::Local(attached),
            None => match self.target(id) {
                Some(Target::Local(attached)) => {
                    cache.set(CachedTarget {
                        generation,
                        attached: Arc::downgrade(&attached),
                        exposures: ExposureCache::default(),
                    });
                    Target::Local(attached)
                }
                other => {
                    cache.clear();
                    return other.map(|target| (target, None));
                }
            },
        };
        let exposures = cache
            .get::<CachedTarget>()
            .map(|cached| &mut cached.exposures);
        Some((target, exposures))
    }

    /// Whether `location` is one this gateway is reached at.
    /// The live procs attached here, directly or through a proxy, sorted.
    pub(crate) fn attached_procs(&self) -> Vec<ProcId> {
        let mut procs: Vec<ProcId> = self
            .read_procs()
            .iter()
            .filter(|(_, entry)| entry.is_live())
            .map(|(id, _)| id.clone())
            .collect();
        procs.sort_by_key(ToString::to_string);
        procs
    }

    fn is_own(&self, location: &Location) -> bool {
        let locations = self.locations();
        locations.reserved() == location || locations.active().any(|own| own == location)
    }

    fn post(&self, dest: Option<&Location>, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.post_from(dest, envelope, None)
    }

    fn post_from(
        &self,
        dest: Option<&Location>,
        envelope: NetworkEnvelope,
        origin: Option<&ProcId>,
    ) -> Result<(), PostError> {
        let mut envelope = match self.post_here(dest, envelope) {
            Here::Done(outcome) => return outcome,
            Here::Leave(envelope) => envelope,
        };
        spend_hop(&mut envelope)?;
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        match (&self.egress, dest) {
            (Egress::Custom(forwarder), Some(dest)) => forwarder.forward(dest, envelope),
            (Egress::Network(network), Some(dest)) => network.forward_from(dest, envelope, origin),
            // `post_here` hands back only envelopes with a way out.
            _ => Err(PostError::Unaddressed {
                recipient: envelope.recipient,
            }),
        }
    }

    /// Takes an envelope for an attached proc, or bounces one that has no way out; hands
    /// back an envelope that is to leave towards `dest`.
    fn post_here(&self, dest: Option<&Location>, envelope: NetworkEnvelope) -> Here {
        if envelope.kind != EnvelopeKind::Regular {
            return Here::Done(Err(PostError::NotATell {
                kind: envelope.kind.as_str(),
            }));
        }
        let proc = match &envelope.recipient {
            Recipient::Actor(actor) => Some(actor.proc().clone()),
            Recipient::Group(_) | Recipient::Transport => None,
        };
        if let Some(target) = proc.as_ref().and_then(|proc| self.target(proc)) {
            return Here::Done(self.deliver_tell(target, envelope));
        }
        let has_way_out =
            !matches!(self.egress, Egress::Isolated) && dest.is_some_and(|dest| !self.is_own(dest));
        if has_way_out {
            return Here::Leave(envelope);
        }
        Here::Done(match proc {
            Some(proc) => {
                tracing::debug!(%proc, name = &*envelope.name, "unroutable envelope bounced");
                Err(PostError::Unroutable { proc })
            }
            None => Err(PostError::Unaddressed {
                recipient: envelope.recipient,
            }),
        })
    }

    /// Hands a tell to an attached proc or to the link of a proxied one.
    fn deliver_tell(&self, target: Target, mut envelope: NetworkEnvelope) -> Result<(), PostError> {
        let Recipient::Actor(actor) = &envelope.recipient else {
            return Err(PostError::Unaddressed {
                recipient: envelope.recipient,
            });
        };
        match target {
            Target::Local(entry) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.ingress
                    .deliver(&entry.proc, actor, &envelope.name, &envelope.payload, None)
            }
            Target::Proxy(link) => {
                spend_hop(&mut envelope)?;
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                link.forward(envelope)
            }
        }
    }

    /// A tell that arrived on connection `from`: delivered here, or bounced and (when an
    /// actor sent it) reported back on `from`; a notice of a refused tell of ours goes to
    /// its sender's proc.
    pub(crate) fn receive_tell(
        &self,
        envelope: NetworkEnvelope,
        from: Option<&plexus_transport::ConnectionRef>,
    ) {
        if protocol::is_refused_tell(&envelope) {
            self.take_refused(&envelope);
            return;
        }
        let header = header_of(&envelope);
        if let Err(reason) = self.post(None, envelope) {
            self.refuse_back(&header, &reason, from);
            self.bounce(header, reason);
        }
    }

    /// Tells the gateway on `from` that its actor's `tell` was refused here, so that the
    /// sender's proc hears of it (see [`protocol::RefusedTell`]). Never waits.
    pub(crate) fn refuse_back(
        &self,
        tell: &NetworkEnvelope,
        reason: &dyn fmt::Display,
        from: Option<&plexus_transport::ConnectionRef>,
    ) {
        let Some(from) = from else { return };
        let Some(notice) = protocol::refused_tell(tell, &reason.to_string()) else {
            return;
        };
        match from.try_send(notice) {
            Ok(()) => {}
            Err(plexus_transport::TrySendError::Full(notice)) => {
                let from = from.clone();
                tokio::spawn(async move {
                    if from.send(notice).await.is_err() {
                        tracing::debug!("connection gone, refused-tell notice dropped");
                    }
                });
            }
            Err(error) => tracing::debug!(%error, "refused-tell notice not sent"),
        }
    }

    /// A notice that a tell of one of our actors was refused by the receiving side:
    /// reported to the undeliverable handler of the sender's proc, if attached here.
    fn take_refused(&self, envelope: &NetworkEnvelope) {
        let refused = match postcard::from_bytes::<protocol::RefusedTell>(&envelope.payload) {
            Ok(refused) => refused,
            Err(error) => {
                tracing::warn!(%error, "a refused-tell notice does not decode, dropped");
                return;
            }
        };
        self.bounced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            sender = %refused.sender,
            recipient = %refused.recipient,
            name = %refused.name,
            reason = %refused.reason,
            "tell refused by the receiving side"
        );
        let Some(Target::Local(entry)) = self.target(refused.sender.proc()) else {
            tracing::debug!(sender = %refused.sender, "refused tell of a proc not attached here");
            return;
        };
        let reason = UndeliverableReason::RemoteSendFailed(TellError::Unroutable {
            recipient: refused.recipient.clone(),
            reason: format!("refused by the receiving side: {}", refused.reason),
        });
        entry.proc.report_remote_undeliverable(
            refused.recipient,
            UndeliveredRemote {
                sender: Some(refused.sender),
                name: refused.name,
                payload: Some(refused.payload),
            },
            reason,
        );
    }

    /// A request that arrived on a connection: answered on `replies` exactly once.
    pub(crate) fn receive_request(
        self: &Arc<Self>,
        envelope: NetworkEnvelope,
        id: u64,
        replies: &ReplyPath,
    ) {
        let reply = reply_on(replies, &envelope, id);
        let Recipient::Actor(actor) = &envelope.recipient else {
            reply(Err(RemoteAskError::Unroutable {
                reason: format!("{} names no actor", envelope.recipient),
            }));
            return;
        };
        match self.target(actor.proc()) {
            Some(Target::Local(entry)) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                // On every error the reply has been answered with the matching error.
                if let Err(error) = self.ingress.deliver(
                    &entry.proc,
                    actor,
                    &envelope.name,
                    &envelope.payload,
                    Some(reply),
                ) {
                    tracing::debug!(%actor, %error, "request refused");
                }
            }
            Some(Target::Proxy(link)) => {
                // Answered by the relay instead.
                drop(reply);
                self.relay_request(link, envelope, id, replies.clone());
            }
            None => {
                // The asker dialed the location its ref names and reached this gateway, so
                // the proc is not here (or no longer: a ref to an earlier incarnation of a
                // restarted proc). Design 3.8 names this `NotFound`, which also tells the
                // asker that retrying the same ref cannot help.
                tracing::debug!(%actor, "request for a proc not attached here");
                reply(Err(RemoteAskError::NotFound {
                    actor: actor.to_string(),
                }));
            }
        }
    }

    /// Counts an envelope handed to an attached proc.
    pub(crate) fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Passes request `id` on to a proxied proc over `link`, answering on `replies`.
    ///
    /// Bounded by [`GatewayConfig::request_timeout`], not by the asker's timeout, which
    /// the envelope does not carry (see that field), and forgotten as soon as the
    /// connection the request came on closes.
    pub(crate) fn relay_request(
        &self,
        link: Arc<Link>,
        envelope: NetworkEnvelope,
        id: u64,
        replies: ReplyPath,
    ) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let reply = reply_on(&replies, &envelope, id);
        let timeout = self.config.request_timeout;
        // The request leaves after the tells already queued on the link, so a tell then an
        // ask of one sender reach the proxied proc in that order. The marker is queued
        // now, behind exactly those tells.
        let (sent, tells_sent) = oneshot::channel();
        let waiting_marker = match link.tells.try_send(crate::egress::Outgoing::Flush(sent)) {
            Ok(()) => None,
            Err(tokio::sync::mpsc::error::TrySendError::Full(marker)) => Some(marker),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => None,
        };
        tokio::spawn(async move {
            if let Some(marker) = waiting_marker {
                let _ = link.tells.send(marker).await;
            }
            // An error means the link's sender is gone; the request then fails below.
            let _ = tells_sent.await;
            // The relay ends with its asker: once the connection the request came on has
            // closed, no answer can reach anyone, so the relayed request is forgotten
            // rather than held until `request_timeout`.
            tokio::select! {
                outcome = relay(&link, envelope, timeout) => reply(
                    outcome
                        .map(|bytes| bytes.to_vec())
                        .map_err(remote_ask_error),
                ),
                () = replies.closed() => {
                    tracing::debug!("asker gone, relayed request forgotten");
                }
            }
        });
    }

    /// Queues a tell on the link of a proxied proc; hands it back when the link's queue
    /// is full. Anything else that goes wrong is bounced.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value to be queued again"
    )]
    pub(crate) fn forward_to_link(
        &self,
        link: &Link,
        mut envelope: NetworkEnvelope,
    ) -> Result<(), NetworkEnvelope> {
        if let Err(error) = spend_hop(&mut envelope) {
            self.bounce(envelope, error);
            return Ok(());
        }
        match link
            .tells
            .try_send(crate::egress::Outgoing::Envelope(envelope))
        {
            Ok(()) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(outgoing)) => match outgoing {
                crate::egress::Outgoing::Envelope(mut envelope) => {
                    // Given back whole: the hop is spent again on the retry.
                    envelope.hop_limit = envelope.hop_limit.saturating_add(1);
                    Err(envelope)
                }
                _ => Ok(()),
            },
            Err(tokio::sync::mpsc::error::TrySendError::Closed(outgoing)) => {
                if let crate::egress::Outgoing::Envelope(envelope) = outgoing {
                    let recipient = envelope.recipient.clone();
                    self.bounce(envelope, PostError::BrokenLink { recipient });
                }
                Ok(())
            }
        }
    }

    /// A request from this process, answered by an attached proc, a proxy link or the
    /// transport.
    async fn request(
        self: Arc<Self>,
        dest: Option<Location>,
        mut envelope: NetworkEnvelope,
        timeout: Duration,
        origin: Option<&ProcId>,
    ) -> Result<Bytes, RemoteRequestError> {
        let Recipient::Actor(actor) = envelope.recipient.clone() else {
            return Err(RemoteRequestError::Unroutable {
                proc: ProcId::new("", 0),
            });
        };
        envelope.kind = EnvelopeKind::Request { id: 0 };
        match self.target(actor.proc()) {
            Some(Target::Local(entry)) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                let reply: plexus_core::RemoteReply = Box::new(move |outcome| {
                    let _ = tx.send(outcome);
                });
                let _ = self.ingress.deliver(
                    &entry.proc,
                    &actor,
                    &envelope.name,
                    &envelope.payload,
                    Some(reply),
                );
                drop(entry);
                match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(Ok(reply))) => Ok(Bytes::from(reply)),
                    Ok(Ok(Err(error))) => Err(RemoteRequestError::Remote(error)),
                    Ok(Err(_)) => Err(RemoteRequestError::Remote(RemoteAskError::Abandoned)),
                    Err(_) => Err(RemoteRequestError::Timeout { after: timeout }),
                }
            }
            Some(Target::Proxy(link)) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                relay(&link, envelope, timeout).await
            }
            None => {
                let dest = dest.filter(|dest| !self.is_own(dest));
                match (&self.egress, dest) {
                    (Egress::Network(network), Some(dest)) => {
                        spend_hop(&mut envelope).map_err(|_| RemoteRequestError::Unroutable {
                            proc: actor.proc().clone(),
                        })?;
                        self.forwarded.fetch_add(1, Ordering::Relaxed);
                        let network = Arc::clone(network);
                        drop(self);
                        network.request(&dest, envelope, timeout, origin).await
                    }
                    _ => Err(RemoteRequestError::Unroutable {
                        proc: actor.proc().clone(),
                    }),
                }
            }
        }
    }

    /// Tells every proc attached here that the gateway at `location` is lost, so their
    /// remote watches and links on actors there fire with `Disconnected`.
    pub(crate) fn peer_lost(&self, location: &Location) {
        let procs: Vec<Proc> = self
            .read_procs()
            .values()
            .filter_map(|entry| match entry {
                Entry::Local(weak) => weak.upgrade().map(|entry| entry.proc.clone()),
                Entry::Proxy(_) => None,
            })
            .collect();
        let fired: usize = procs.iter().map(|proc| proc.peer_lost(location)).sum();
        tracing::info!(%location, procs = procs.len(), fired, "peer lost");
    }

    /// Logs, counts and reports a tell that could not be delivered or sent.
    pub(crate) fn bounce(&self, envelope: NetworkEnvelope, reason: PostError) {
        self.bounce_from(envelope, reason, None);
    }

    /// Logs and counts a tell that could not be delivered or sent after it was taken,
    /// and reports it to the undeliverable handler of the proc it came from (`origin`,
    /// else its sender's proc) when that proc is attached here (design 3.5, 3.9).
    pub(crate) fn bounce_from(
        &self,
        envelope: NetworkEnvelope,
        reason: PostError,
        origin: Option<&ProcId>,
    ) {
        self.bounced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            sender = ?envelope.sender,
            recipient = %envelope.recipient,
            name = %envelope.name,
            kind = %envelope.kind,
            error = %reason,
            "envelope bounced"
        );
        let (EnvelopeKind::Regular, Recipient::Actor(recipient)) =
            (&envelope.kind, &envelope.recipient)
        else {
            return;
        };
        let origin = origin.or_else(|| envelope.sender.as_ref().map(ActorId::proc));
        let Some(Target::Local(entry)) = origin.and_then(|origin| self.target(origin)) else {
            return;
        };
        let tell_error = match reason {
            PostError::Transport { .. } | PostError::BrokenLink { .. } => TellError::Disconnected {
                recipient: recipient.clone(),
            },
            other => TellError::Unroutable {
                recipient: recipient.clone(),
                reason: other.to_string(),
            },
        };
        entry.proc.report_remote_undeliverable(
            recipient.clone(),
            UndeliveredRemote {
                sender: envelope.sender.clone(),
                name: envelope.name.to_string(),
                payload: Some(envelope.payload.to_vec()),
            },
            UndeliverableReason::RemoteSendFailed(tell_error),
        );
    }
}

/// Spends one hop of an envelope that is about to be passed on, so a routing loop
/// through proxies ends with [`PostError::TtlExpired`] instead of spinning.
fn spend_hop(envelope: &mut NetworkEnvelope) -> Result<(), PostError> {
    if envelope.hop_limit == 0 {
        tracing::warn!(recipient = %envelope.recipient, "hop limit spent, envelope dropped");
        return Err(PostError::TtlExpired {
            recipient: envelope.recipient.clone(),
        });
    }
    envelope.hop_limit -= 1;
    Ok(())
}

/// Passes a request on over a proxy link and reads its answer.
async fn relay(
    link: &Link,
    mut envelope: NetworkEnvelope,
    timeout: Duration,
) -> Result<Bytes, RemoteRequestError> {
    if spend_hop(&mut envelope).is_err() {
        return Err(RemoteRequestError::Failed);
    }
    match link.connection.request(envelope, timeout).await {
        Ok(response) => protocol::read_response(&response),
        Err(plexus_transport::RequestError::Timeout { after, .. }) => {
            Err(RemoteRequestError::Timeout { after })
        }
        Err(plexus_transport::RequestError::Disconnected { .. }) => {
            Err(RemoteRequestError::BrokenLink)
        }
        Err(plexus_transport::RequestError::Ignored { .. }) => Err(RemoteRequestError::Ignored),
        Err(plexus_transport::RequestError::FailedWith { name, payload, .. }) => {
            Err(protocol::read_failure(&name, &payload))
        }
        Err(_) => Err(RemoteRequestError::Failed),
    }
}

/// The answer a relaying gateway sends back for a request that failed further on.
fn remote_ask_error(error: RemoteRequestError) -> RemoteAskError {
    tracing::debug!(%error, "relayed request failed");
    match error {
        RemoteRequestError::Remote(error) => error,
        RemoteRequestError::Timeout { after } => RemoteAskError::Timeout {
            timeout_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        },
        RemoteRequestError::Disconnected { dest }
        | RemoteRequestError::Unreachable { dest, .. } => {
            RemoteAskError::Disconnected { location: dest }
        }
        other => RemoteAskError::Unroutable {
            reason: other.to_string(),
        },
    }
}

impl WeakGateway {
    /// Posts through the gateway if it still exists, like [`Gateway::post`]; once it is
    /// gone, the envelope bounces with [`PostError::BrokenLink`].
    pub fn post(&self, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.post_inner(None, envelope)
    }

    /// Routes through the gateway if it still exists, like [`Gateway::post_to`]; once it
    /// is gone, the envelope bounces with [`PostError::BrokenLink`].
    pub fn post_to(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.post_inner(Some(dest), envelope)
    }

    fn post_inner(
        &self,
        dest: Option<&Location>,
        envelope: NetworkEnvelope,
    ) -> Result<(), PostError> {
        match self.inner.upgrade() {
            Some(inner) => inner.post(dest, envelope),
            None => {
                tracing::debug!(recipient = %envelope.recipient, "gateway gone, envelope bounced");
                Err(PostError::BrokenLink {
                    recipient: envelope.recipient,
                })
            }
        }
    }

    /// The gateway, if it still exists.
    pub fn upgrade(&self) -> Option<Gateway> {
        self.inner.upgrade().map(|inner| Gateway { inner })
    }
}

impl fmt::Debug for WeakGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakGateway")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

impl Attachment {
    /// Makes the proc advertise `location` (the gateway it is attached through) in its
    /// refs.
    pub(crate) fn advertise(&self, location: Location) {
        let _ = self.entry.advertised.set(location);
    }

    /// The id of the attached proc.
    pub fn proc_id(&self) -> &ProcId {
        self.entry.proc.id()
    }

    /// Detaches the proc now; the same as dropping the attachment.
    pub fn detach(self) {}
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("proc", self.proc_id())
            .finish()
    }
}

impl ServeGuard {
    pub(crate) fn record(gateway: &Arc<Inner>, location: Location) -> ServeGuard {
        let token = gateway.locations().push(location.clone());
        gateway.advertise_served();
        ServeGuard {
            gateway: Arc::downgrade(gateway),
            token,
            location,
        }
    }

    /// The served location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Stops serving the location now; the same as dropping the guard.
    pub fn stop(self) {}
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        let Some(inner) = self.gateway.upgrade() else {
            return;
        };
        let removed = inner.locations().remove(self.token);
        if removed {
            inner.advertise_served();
            tracing::info!(location = %self.location, "gateway stopped serving location");
        }
    }
}

impl fmt::Debug for ServeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeGuard")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use plexus_core::{ActorId, Location, Proc, ProcId};

    use super::*;

    fn entries(gateway: &Gateway) -> usize {
        gateway.inner.read_procs().len()
    }

    fn tell_to(proc: &ProcId) -> NetworkEnvelope {
        NetworkEnvelope {
            sender: None,
            recipient: Recipient::Actor(ActorId::new(proc.clone(), "worker", 0)),
            trace_id: 0,
            hop_limit: plexus_codec::DEFAULT_HOP_LIMIT,
            kind: EnvelopeKind::Regular,
            name: "test.Work".to_owned().into(),
            payload: Default::default(),
        }
    }

    /// A dropped attachment leaves a dead entry that the next post for that proc removes,
    /// bouncing the envelope as for any unknown proc.
    #[test]
    fn post_cleans_dead_entries() {
        let gateway = Gateway::isolated(Location::Local(0));
        let proc = Proc::new(ProcId::new("short-lived", 1));
        let other = Proc::new(ProcId::new("long-lived", 1));
        let attachment = gateway.attach(&proc);
        let _kept = gateway.attach(&other);
        assert!(attachment.is_ok());
        assert_eq!(entries(&gateway), 2);

        drop(attachment);
        assert_eq!(
            entries(&gateway),
            2,
            "dropping the attachment only kills the entry"
        );
        assert!(matches!(
            gateway.post(tell_to(proc.id())),
            Err(PostError::Unroutable { .. })
        ));
        assert_eq!(entries(&gateway), 1);
    }

    fn local_of(target: Option<Target>) -> Option<Arc<Attached>> {
        match target {
            Some(Target::Local(attached)) => Some(attached),
            _ => None,
        }
    }

    fn cached_local(inner: &Inner, id: &ProcId, cache: &mut FlowCache) -> Option<Arc<Attached>> {
        local_of(inner.target_cached(id, cache).map(|(target, _)| target))
    }

    /// A flow's cached resolution finds exactly what the table would: the attached proc
    /// while it stays attached, nothing once it is detached, and the new attachment of a
    /// proc id attached again, never the one before.
    #[test]
    fn cached_targets_follow_the_table() {
        let gateway = Gateway::isolated(Location::Local(0));
        let inner = &gateway.inner;
        let id = ProcId::new("cached", 1);
        let mut cache = FlowCache::default();
        assert!(cached_local(inner, &id, &mut cache).is_none());

        let first = gateway.attach(&Proc::new(id.clone())).ok();
        let found = cached_local(inner, &id, &mut cache);
        let again = cached_local(inner, &id, &mut cache);
        assert!(found.is_some());
        assert!(matches!((&found, &again), (Some(a), Some(b)) if Arc::ptr_eq(a, b)));
        drop((found, again));

        drop(first);
        assert!(cached_local(inner, &id, &mut cache).is_none());

        let second = Proc::new(id.clone());
        let _second = gateway.attach(&second).ok();
        let found = cached_local(inner, &id, &mut cache);
        let current = local_of(inner.target(&id));
        assert!(matches!((&found, &current), (Some(a), Some(b)) if Arc::ptr_eq(a, b)));
    }

    /// An envelope routed to one of the gateway's own locations for a proc that is not
    /// attached bounces instead of being sent to itself.
    #[test]
    fn own_location_is_not_forwarded() {
        struct Never;
        impl Forwarder for Never {
            fn forward(&self, dest: &Location, _: NetworkEnvelope) -> Result<(), PostError> {
                panic!("forwarded to {dest}");
            }
        }
        let gateway = Gateway::with_forwarder(Location::Local(5), Arc::new(Never));
        let _served = gateway.serve_location(Location::Local(6));
        let stranger = ProcId::new("stranger", 1);
        for own in [Location::Local(5), Location::Local(6)] {
            assert!(matches!(
                gateway.post_to(&own, tell_to(&stranger)),
                Err(PostError::Unroutable { .. })
            ));
        }
    }

    fn lanes(gateway: &Gateway) -> usize {
        match &gateway.inner.egress {
            Egress::Network(network) => network.lane_count(),
            _ => 0,
        }
    }

    /// A lane's task ends after `LANE_IDLE` without traffic and leaves the table; the
    /// next tell of the same pair starts a new lane, which sends it.
    #[tokio::test]
    #[allow(clippy::unwrap_used, reason = "a test: a failure is the report")]
    async fn idle_lane_ends_and_restarts() {
        let bound = Duration::from_secs(30);
        let server = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
        let served = server
            .serve("tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let proc = Proc::new(ProcId::new("far", 1));
        let _attached = server.attach(&proc).unwrap();
        let client = Gateway::new(Location::Local(0), GatewayConfig::default()).unwrap();
        let dest = served.location().clone();

        client.send_to(&dest, tell_to(proc.id())).await.unwrap();
        tokio::time::timeout(bound, client.flush()).await.unwrap();
        assert_eq!(lanes(&client), 1);
        let arrived = |count: u64| {
            let server = server.clone();
            async move {
                while server.stats().delivered < count {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        tokio::time::timeout(bound, arrived(1)).await.unwrap();

        tokio::time::sleep(crate::egress::LANE_IDLE + Duration::from_millis(500)).await;
        assert_eq!(lanes(&client), 0, "the idle lane ended");

        client.post_to(&dest, tell_to(proc.id())).unwrap();
        tokio::time::timeout(bound, client.flush()).await.unwrap();
        assert_eq!(lanes(&client), 1);
        tokio::time::timeout(bound, arrived(2)).await.unwrap();
        assert_eq!(client.stats().bounced, 0);
    }
}
