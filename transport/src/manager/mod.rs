//! The outbound transport manager: one [`DestTransport`] per destination, connected once.
//!
//! [`OutprocTransportManager::send`] looks the destination up in a
//! [`ConnectOnce`] table. The first send to a destination dials it: the
//! [`WireBuilder`] opens its wires, each wire does its handshake and becomes a connection,
//! and the connections together become the destination's [`DestTransport`]. Concurrent
//! first sends join that one attempt (see [`ConnectOnce`] for the lost wake-up, the
//! cancelled creator and the bounded waits it rules out).
//!
//! ```text
//! send(dest) ──▶ (absent) ──dial: wires → handshakes → connections──▶ Connected(transport)
//!                   ▲                                                   │
//!                   └──── every wire down: removed (by a send or the ───┘
//!                         health checker); the next send dials again
//! ```
//!
//! A wire whose connection ends is marked failed at once by its transport; when it was the
//! last healthy one, the transport is removed at once and its loss published as a
//! [`DestEvent::Lost`] (see [`OutprocTransportManager::subscribe`]). A send that
//! finds every wire of its destination down removes the transport and dials again within
//! the same call, so it fails within the connect timeout when the peer is gone, and
//! reconnects when it is back. The health checker, every
//! [`ManagerConfig::health_interval`], reconnects the failed wires of a partly healthy
//! destination and removes a fully failed one; the requests in flight on a failed wire
//! have already failed with `Disconnected` through its connection.

mod dest_transport;
mod health;
mod inproc;

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use plexus_codec::{NetworkEnvelope, Skipped};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::connect_once::Adopted;
use crate::{
    ConnectError, ConnectOnce, ConnectOnceConfig, ConnectionConfig, ConnectionConfigError,
    ConnectionHandle, Dest, FlowConfig, FlowError, FlowTarget, HandshakeError, Hello, Inbound,
    RequestError, Wire, WireBuilder, WireError, perform_handshake, prefer_connection,
    spawn_connection, spawn_connection_with_flow,
};

use dest_transport::TransportOwner;
pub use dest_transport::{DestTransport, PairSender};
pub use inproc::{InprocBindError, InprocHub, InprocTransportManager};

/// How many destination events a subscriber may fall behind before it misses some (and
/// its next `recv` reports `Lagged`). Events are rare: one per dial and one per loss.
const EVENT_CAPACITY: usize = 1024;

/// A change of a destination's state, published by an [`OutprocTransportManager`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestEvent {
    /// A dial of the destination succeeded; its transport is being stored.
    Connected(Dest),
    /// The destination's transport is gone: its last wire failed, or it was closed
    /// (by [`OutprocTransportManager::close_transport`], by the health checker, or by a
    /// send that found every wire down). The next send dials again.
    Lost(Dest),
}

impl DestEvent {
    /// The destination the event is about.
    pub fn dest(&self) -> &Dest {
        match self {
            DestEvent::Connected(dest) | DestEvent::Lost(dest) => dest,
        }
    }
}

/// What [`OutprocTransportManager::adopt`] did with a connection the peer dialed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Adoption {
    /// It is now the transport of `dest`.
    Adopted {
        /// The peer's advertised destination.
        dest: Dest,
        /// The connection.
        connection: ConnectionHandle,
    },
    /// The transport already stored for `dest` won the simultaneous-dial rule; this
    /// connection is closing gracefully.
    Retired {
        /// The peer's advertised destination.
        dest: Dest,
        /// The connection, closing.
        connection: ConnectionHandle,
    },
    /// The peer advertised no location (or kept redialing): the connection runs, held by
    /// the manager until it ends or [`close_all`](OutprocTransportManager::close_all),
    /// but is no destination's transport.
    Unkeyed(ConnectionHandle),
}

impl Adoption {
    /// The connection, whatever became of it.
    pub fn connection(&self) -> &ConnectionHandle {
        match self {
            Adoption::Adopted { connection, .. }
            | Adoption::Retired { connection, .. }
            | Adoption::Unkeyed(connection) => connection,
        }
    }
}

/// The senders of the manager's destination events.
#[derive(Debug)]
pub(crate) struct Events {
    pub(crate) all: broadcast::Sender<DestEvent>,
    pub(crate) lost: broadcast::Sender<Dest>,
}

impl Events {
    pub(crate) fn new() -> Self {
        Events {
            all: broadcast::channel(EVENT_CAPACITY).0,
            lost: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    pub(crate) fn publish(&self, event: DestEvent) {
        if let DestEvent::Lost(dest) = &event {
            // No subscriber is not an error: nobody asked.
            let _ = self.lost.send(dest.clone());
        }
        let _ = self.all.send(event);
    }
}

/// What the manager's transports report to: it holds the manager weakly, so transports
/// never keep it alive.
struct Owner {
    inner: std::sync::Weak<Inner>,
    events: Arc<Events>,
}

impl TransportOwner for Owner {
    fn all_wires_failed(&self, transport: &Arc<DestTransport>) {
        match self.inner.upgrade() {
            Some(inner) => inner.remove_if_current(transport.dest(), transport),
            None => transport.close(),
        }
    }

    fn lost(&self, dest: &Dest) {
        self.events.publish(DestEvent::Lost(dest.clone()));
    }
}

/// Settings of an [`OutprocTransportManager`].
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerConfig {
    /// The bound on one dial of a destination (all its wires and handshakes) and the
    /// backoff after a failed one. Default [`ConnectOnceConfig::default`] (10 s).
    pub connect: ConnectOnceConfig,
    /// The bound on each wire's handshake. Default 5 s; a dial is cut off at
    /// `connect.connect_timeout` whichever is smaller.
    pub handshake_timeout: Duration,
    /// The settings of every connection.
    pub connection: ConnectionConfig,
    /// How often the health checker runs. Default 5 s; must be non-zero. A fully failed
    /// destination nobody sends to is removed within one interval of its last wire
    /// failing.
    pub health_interval: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            connect: ConnectOnceConfig::default(),
            handshake_timeout: Duration::from_secs(5),
            connection: ConnectionConfig::default(),
            health_interval: Duration::from_secs(5),
        }
    }
}

/// Why dialing a destination failed: the error of the [`ConnectOnce`] attempt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The wires could not be opened.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The builder returned no wire at all.
    #[error("the wire builder opened no wire")]
    NoWires,
    /// A wire's handshake failed.
    #[error("handshake on wire {wire} to {peer} failed: {source}")]
    Handshake {
        /// The wire's index among those opened together.
        wire: usize,
        /// Who was on the other end.
        peer: String,
        /// What went wrong.
        #[source]
        source: HandshakeError,
    },
    /// The connection settings are out of bounds.
    #[error(transparent)]
    Config(#[from] ConnectionConfigError),
}

/// Why a send or a request through the manager failed. Every variant names the
/// destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Connecting failed, timed out, is backing off, or was cancelled; the source names
    /// the destination.
    #[error(transparent)]
    Connect(#[from] ConnectError<DialError>),
    /// Every wire of the destination is down.
    #[error("no healthy wire to {dest}")]
    NoHealthyWire {
        /// The destination.
        dest: Dest,
    },
    /// Flow control refused the envelope for good: the recipient is gone (the peer
    /// closed its flow) or the envelope is larger than a window admits.
    #[error("flow control to {dest} refused the envelope: {source}")]
    Flow {
        /// The destination.
        dest: Dest,
        /// Why.
        #[source]
        source: FlowError,
    },
    /// The request got no reply.
    #[error("request to {dest} failed: {source}")]
    Request {
        /// The destination.
        dest: Dest,
        /// Why.
        #[source]
        source: RequestError,
    },
}

impl TransportError {
    /// The destination the error is about.
    pub fn dest(&self) -> &Dest {
        match self {
            TransportError::Connect(error) => error.dest(),
            TransportError::NoHealthyWire { dest }
            | TransportError::Flow { dest, .. }
            | TransportError::Request { dest, .. } => dest,
        }
    }
}

/// Sends envelopes to other processes, one [`DestTransport`] per [`Dest`], dialed on
/// first use.
///
/// Dropping the manager stops its health checker; the transports close when the last
/// reference to each is gone.
///
/// ```
/// use std::time::Duration;
///
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope};
/// use plexus_core::{Location, ProcId};
/// use plexus_transport::{
///     ConnectionConfig, Dest, Hello, InprocNetwork, ManagerConfig, OutprocTransportManager,
///     WireListener, perform_handshake, spawn_connection,
/// };
/// use tokio::sync::mpsc;
///
/// # type Error = Box<dyn std::error::Error + Send + Sync>;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let network = InprocNetwork::new();
/// let mut listener = network.bind(1)?;
/// // The peer: accept one wire, do the handshake, and pass on what arrives.
/// let (tx, mut received) = mpsc::unbounded_channel();
/// let peer = tokio::spawn(async move {
///     let mut wire = listener.accept().await?;
///     let hello = Hello::new(ProcId::new("peer", 1), 2);
///     let negotiated = perform_handshake(&mut wire, hello, Duration::from_secs(5)).await?;
///     let connection = spawn_connection(wire, negotiated, ConnectionConfig::default(), move |e| {
///         let _ = tx.send(e);
///     })?;
///     Ok::<_, Error>(connection)
/// });
///
/// let manager = OutprocTransportManager::new(
///     network,
///     Hello::new(ProcId::new("local", 1), 1),
///     ManagerConfig::default(),
///     |_| {},
/// )?;
/// let dest = Dest::new(Location::Local(1));
/// manager.send(&dest, NetworkEnvelope::control(EnvelopeKind::Regular)).await?;
/// let _connection = peer.await??;
/// assert_eq!(received.recv().await.map(|e| e.kind), Some(EnvelopeKind::Regular));
/// assert_eq!(manager.list_dests(), vec![dest]);
/// # Ok(())
/// # }
/// ```
pub struct OutprocTransportManager {
    inner: Arc<Inner>,
    health: AbortHandle,
}

struct Inner {
    builder: Arc<dyn WireBuilder>,
    hello: Hello,
    /// The location announced in every later hello, replacing `hello.location`; see
    /// [`OutprocTransportManager::set_advertised_location`].
    advertised: std::sync::RwLock<Option<plexus_core::Location>>,
    config: ManagerConfig,
    inbound: Arc<dyn Inbound>,
    spawner: Spawner,
    table: ConnectOnce<Arc<DestTransport>, DialError>,
    events: Arc<Events>,
    /// Accepted connections that are no destination's transport (their peer advertised
    /// no location): held here so they run until they end or the manager goes.
    unkeyed: std::sync::Mutex<Vec<ConnectionHandle>>,
    /// Connections of closed transports still writing out their queues, by destination:
    /// a new dial of that destination waits for them, so it keeps per-pair order.
    draining: std::sync::Mutex<std::collections::HashMap<Dest, Vec<ConnectionHandle>>>,
    /// This manager, weakly, for the transports it makes.
    me: std::sync::Weak<Inner>,
}

impl std::fmt::Debug for OutprocTransportManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutprocTransportManager")
            .field("proc", &self.inner.hello.proc)
            .field("table", &self.inner.table)
            .finish()
    }
}

impl OutprocTransportManager {
    /// A manager that dials with `builder`, announces `hello` on every wire and hands
    /// what peers send back (other than responses to its requests) to `inbound`. Starts
    /// the health checker, so it must be called inside a tokio runtime.
    ///
    /// Fails when `config.connection` is out of its bounds or `health_interval` is zero.
    pub fn new(
        builder: impl WireBuilder + 'static,
        hello: Hello,
        config: ManagerConfig,
        inbound: impl Inbound,
    ) -> Result<Self, ConnectionConfigError> {
        let spawner: Spawner = Arc::new(|wire, negotiated, config, inbound| {
            spawn_connection(wire, negotiated, config, inbound)
        });
        Self::build(Arc::new(builder), hello, config, Arc::new(inbound), spawner)
    }

    /// A manager like [`new`](Self::new) whose connections run flow control on their
    /// receiving end (design 3.4): every hello announces `flow` as this side's window,
    /// and the tells and requests peers send to local actors and groups go to `target`
    /// through a per-connection [`FlowReceiver`](crate::FlowReceiver), which queues a
    /// flow while its recipient is full and grants credit back as `target` takes them.
    /// Everything else still goes to `inbound`.
    ///
    /// The sending end needs no setting: a send to a peer that announced a window spends
    /// its credit first, waiting for it ([`send`](Self::send)); responses never wait.
    ///
    /// Fails like [`new`](Self::new), and when `flow` is out of its bounds.
    pub fn with_flow_control<T: FlowTarget>(
        builder: impl WireBuilder + 'static,
        hello: Hello,
        config: ManagerConfig,
        inbound: impl Inbound,
        flow: FlowConfig,
        target: Arc<T>,
    ) -> Result<Self, ConnectionConfigError> {
        flow.validate()?;
        let spawner: Spawner = Arc::new(move |wire, negotiated, config, inbound| {
            spawn_connection_with_flow(wire, negotiated, config, inbound, Arc::clone(&target))
        });
        Self::build(
            Arc::new(builder),
            hello.with_flow(flow),
            config,
            Arc::new(inbound),
            spawner,
        )
    }

    fn build(
        builder: Arc<dyn WireBuilder>,
        hello: Hello,
        config: ManagerConfig,
        inbound: Arc<dyn Inbound>,
        spawner: Spawner,
    ) -> Result<Self, ConnectionConfigError> {
        config.connection.validate()?;
        if config.health_interval.is_zero() {
            return Err(ConnectionConfigError::Zero {
                field: "health_interval",
            });
        }
        let inner = Arc::new_cyclic(|me| Inner {
            builder,
            advertised: std::sync::RwLock::new(hello.location.clone()),
            hello,
            table: ConnectOnce::new(config.connect),
            config,
            inbound,
            spawner,
            events: Arc::new(Events::new()),
            unkeyed: std::sync::Mutex::new(Vec::new()),
            draining: std::sync::Mutex::new(std::collections::HashMap::new()),
            me: me.clone(),
        });
        let health = health::spawn(&inner);
        Ok(OutprocTransportManager { inner, health })
    }

    /// Sends `envelope` to `dest`, dialing it first if it has no transport.
    ///
    /// Fails with [`TransportError::Connect`] when dialing fails (within
    /// `connect_timeout` plus [`SETTLE_GRACE`](crate::connect_once::SETTLE_GRACE)), or
    /// at once while the destination backs off after a failed dial. Success means the
    /// envelope was queued on a connection.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped send queued nothing; a dial it started goes on for others.
    pub async fn send(&self, dest: &Dest, envelope: NetworkEnvelope) -> Result<(), TransportError> {
        let transport = self.healthy_transport(dest).await?;
        match transport.send_or_return(envelope).await {
            Ok(()) => Ok(()),
            Err((TransportError::NoHealthyWire { .. }, envelope)) => {
                if let Some(newer) = self.inner.table.get(dest)
                    && !Arc::ptr_eq(&newer, &transport)
                {
                    // Another transport took this one's place meanwhile (an adopted
                    // connection): the envelope goes on it.
                    return newer.send(envelope).await;
                }
                // The last wire failed between the check and the send: the envelope is
                // gone with it, as a tell on a dying connection is.
                self.inner.remove_if_current(dest, &transport);
                Err(TransportError::NoHealthyWire { dest: dest.clone() })
            }
            Err((error, _)) => Err(error),
        }
    }

    /// Sends `envelope` as a request to `dest` and waits at most `timeout` for the
    /// response, dialing first if needed (the dial has its own bound). If the connection
    /// is lost meanwhile, fails at once with [`RequestError::Disconnected`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future forgets the request; it may or may not have been sent.
    pub async fn request(
        &self,
        dest: &Dest,
        envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<NetworkEnvelope, TransportError> {
        let transport = self.healthy_transport(dest).await?;
        match transport.request(envelope.clone(), timeout).await {
            Err(TransportError::NoHealthyWire { .. }) => match self.inner.table.get(dest) {
                // Replaced by an adopted connection meanwhile: the request was never
                // sent, so it goes on the newer transport.
                Some(newer) if !Arc::ptr_eq(&newer, &transport) => {
                    newer.request(envelope, timeout).await
                }
                _ => Err(TransportError::NoHealthyWire { dest: dest.clone() }),
            },
            outcome => outcome,
        }
    }

    /// Subscribes to the destinations that are connected and lost from now on.
    ///
    /// A loss is published the moment it is known: when the last wire's connection ends
    /// (a peer that dies is noticed by its closed socket, not by a timeout), when
    /// [`close_transport`](Self::close_transport) closes it, and when the health checker
    /// or a send removes a transport whose wires are all down. Each transport is
    /// connected and lost once, so a destination's events alternate. A subscriber that
    /// falls more than 1024 events behind misses the oldest (its `recv` says `Lagged`).
    ///
    /// ```
    /// use plexus_core::{Location, ProcId};
    /// use plexus_transport::{
    ///     Dest, DestEvent, Hello, InprocNetwork, ManagerConfig, OutprocTransportManager,
    /// };
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = OutprocTransportManager::new(
    ///     InprocNetwork::new(),
    ///     Hello::new(ProcId::new("local", 1), 1),
    ///     ManagerConfig::default(),
    ///     |_| {},
    /// )?;
    /// let mut events = manager.subscribe();
    /// // Nothing listens at 7, so nothing connects and nothing is lost.
    /// let dest = Dest::new(Location::Local(7));
    /// assert!(manager.send(&dest, plexus_codec::NetworkEnvelope::control(
    ///     plexus_codec::EnvelopeKind::Regular)).await.is_err());
    /// assert!(events.try_recv().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<DestEvent> {
        self.inner.events.all.subscribe()
    }

    /// Subscribes to the destinations lost from now on: the [`DestEvent::Lost`] events of
    /// [`subscribe`](Self::subscribe) alone.
    pub fn subscribe_lost(&self) -> broadcast::Receiver<Dest> {
        self.inner.events.lost.subscribe()
    }

    /// Handshakes `wire`, a connection a listener accepted, and runs it like the
    /// manager's own (same inbound handler, same flow control), then
    /// [`adopt`](Self::adopt)s it. Fails when the handshake fails or times out.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping it mid-handshake drops the wire.
    pub async fn accept(&self, mut wire: Wire) -> Result<Adoption, DialError> {
        let peer = wire.peer().to_owned();
        let negotiated = perform_handshake(
            &mut wire,
            self.inner.hello(),
            self.inner.config.handshake_timeout,
        )
        .await
        .map_err(|source| DialError::Handshake {
            wire: 0,
            peer,
            source,
        })?;
        let inbound = SharedInbound(Arc::clone(&self.inner.inbound));
        let connection = (self.inner.spawner)(
            wire,
            negotiated,
            self.inner.config.connection.clone(),
            inbound,
        )?;
        Ok(self.adopt(connection).await)
    }

    /// Offers `connection`, which the peer dialed, as the transport of the destination the
    /// peer advertised in its hello ([`Hello::with_location`]), so that two procs that
    /// dial each other end up with one connection:
    ///
    /// - nothing stored for that destination: the connection becomes its transport and
    ///   [`DestEvent::Connected`] is published;
    /// - a dial under way: waits for it (within the connect timeout), then decides;
    /// - a transport stored: the one [`prefer_connection`] picks survives, the same one
    ///   on both ends (a failed stored transport, one to an earlier launch of the peer, or
    ///   one the peer dialed earlier is always replaced). The other is retired with
    ///   [`ConnectionHandle::close_gracefully`], so what was queued on it still arrives.
    ///
    /// A replacement publishes no event: the destination stays connected. Tells of one
    /// (sender, recipient) pair that were still in flight on the retired connection when
    /// the kept one took over may arrive out of order with the first ones sent on the
    /// kept connection (the two are read by two readers); none is lost. A peer that
    /// advertised no location is left alone ([`Adoption::Unkeyed`]): the connection runs
    /// (the manager holds it) but sends never choose it.
    pub async fn adopt(&self, connection: ConnectionHandle) -> Adoption {
        let Some(location) = connection.peer().peer_location.clone() else {
            self.inner.keep_unkeyed(&connection);
            return Adoption::Unkeyed(connection);
        };
        let dest = Dest::new(location);
        // A dial in progress is waited for at most twice: a third would mean the peer
        // keeps vanishing, and the accepted connection is then simply kept.
        for _ in 0..3 {
            let owner: Arc<dyn TransportOwner> = Arc::new(Owner {
                inner: Arc::downgrade(&self.inner),
                events: Arc::clone(&self.inner.events),
            });
            let transport =
                DestTransport::new(dest.clone(), vec![connection.clone()], Some(owner), false);
            let adopted = self
                .inner
                .table
                .adopt(&dest, Arc::clone(&transport), |current| {
                    self.inner.prefers_accepted(current, &connection)
                });
            match adopted {
                Adopted::Inserted => {
                    tracing::info!(%dest, "accepted connection adopted");
                    self.inner
                        .events
                        .publish(DestEvent::Connected(dest.clone()));
                    return Adoption::Adopted { dest, connection };
                }
                Adopted::Replaced(old) => {
                    tracing::info!(%dest, "accepted connection replaces the stored transport");
                    old.retire();
                    return Adoption::Adopted { dest, connection };
                }
                Adopted::Kept(offered) => {
                    tracing::info!(%dest, "stored transport kept, accepted connection retired");
                    offered.retire();
                    return Adoption::Retired { dest, connection };
                }
                Adopted::Connecting(offered) => {
                    offered.disown();
                    // Joins the attempt; its outcome only matters through the table.
                    let _ = self.inner.connect(&dest).await;
                }
            }
        }
        tracing::warn!(%dest, "destination kept dialing; accepted connection left unkeyed");
        self.inner.keep_unkeyed(&connection);
        Adoption::Unkeyed(connection)
    }

    /// The transport of `dest`, if it is connected. Never dials.
    pub fn transport(&self, dest: &Dest) -> Option<Arc<DestTransport>> {
        self.inner.table.get(dest)
    }

    /// Closes and forgets the transport of `dest` (or cancels its dial), and its backoff.
    /// Returns whether it had one.
    ///
    /// Nothing queued is lost: each connection first writes what is queued on it, then
    /// ends (design 3.9: every tell is delivered or reported). Sends still waiting for
    /// room or flow credit on it fail with `Closed`, and its requests still unanswered
    /// fail with `Disconnected`, once the peer has ended its side. The next send to
    /// `dest` dials again, but only after these connections have ended (at most half
    /// the connect timeout, after which they are cut off, also when nobody dials again),
    /// so a new connection never overtakes tells still queued on an old one.
    pub fn close_transport(&self, dest: &Dest) -> bool {
        let had = self.inner.table.contains(dest);
        if let Some(transport) = self.inner.table.remove(dest) {
            let closing = transport.close_draining();
            self.inner.remember_draining(dest, closing);
        }
        if had {
            tracing::info!(%dest, "transport closed");
        }
        had
    }

    /// Closes every transport (and every accepted connection that is none), and cancels
    /// every dial. The manager stays usable: a later send dials again.
    pub fn close_all(&self) {
        let unkeyed: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .unkeyed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        unkeyed.iter().for_each(ConnectionHandle::close);
        for dest in self.list_dests() {
            self.close_transport(&dest);
        }
    }

    /// The destinations that are connected or being dialed, in no particular order.
    pub fn list_dests(&self) -> Vec<Dest> {
        self.inner
            .table
            .list()
            .into_iter()
            .map(|(dest, _)| dest)
            .collect()
    }

    /// Whether `dest` is connected or being dialed.
    pub fn has_dest(&self, dest: &Dest) -> bool {
        self.inner.table.contains(dest)
    }

    /// How many destinations are connected or being dialed.
    pub fn dest_count(&self) -> usize {
        self.inner.table.len()
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// Sets the location this side announces in the hello of every connection it dials
    /// or accepts from now on (`None`: none), so peers know where it is reached: they
    /// can key the connection by it ([`adopt`](Self::adopt)) and tell their procs when
    /// it is lost. Connections already open keep what they announced. A gateway sets it
    /// to the location it serves.
    ///
    /// ```
    /// use plexus_core::{Location, ProcId};
    /// use plexus_transport::{Hello, InprocNetwork, ManagerConfig, OutprocTransportManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = OutprocTransportManager::new(
    ///     InprocNetwork::new(),
    ///     Hello::new(ProcId::new("local", 1), 1),
    ///     ManagerConfig::default(),
    ///     |_| {},
    /// )?;
    /// assert_eq!(manager.advertised_location(), None);
    /// manager.set_advertised_location(Some(Location::Local(3)));
    /// assert_eq!(manager.advertised_location(), Some(Location::Local(3)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_advertised_location(&self, location: Option<plexus_core::Location>) {
        *self
            .inner
            .advertised
            .write()
            .unwrap_or_else(PoisonError::into_inner) = location;
    }

    /// The location announced in new hellos; see
    /// [`set_advertised_location`](Self::set_advertised_location).
    pub fn advertised_location(&self) -> Option<plexus_core::Location> {
        self.inner
            .advertised
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A transport of `dest` with at least one healthy wire: the stored one, or a new
    /// dial. A stored transport whose wires are all down is removed first, so the dial
    /// happens in this call and is bounded by the connect timeout.
    async fn healthy_transport(&self, dest: &Dest) -> Result<Arc<DestTransport>, TransportError> {
        let transport = self.inner.connect(dest).await?;
        if transport.is_healthy() {
            return Ok(transport);
        }
        self.inner.remove_if_current(dest, &transport);
        let transport = self.inner.connect(dest).await?;
        if transport.is_healthy() {
            Ok(transport)
        } else {
            Err(TransportError::NoHealthyWire { dest: dest.clone() })
        }
    }
}

impl Drop for OutprocTransportManager {
    fn drop(&mut self) {
        self.health.abort();
    }
}

impl Inner {
    /// The hello of a new connection: the configured one with the advertised location.
    fn hello(&self) -> Hello {
        let mut hello = self.hello.clone();
        hello.location = self
            .advertised
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        hello
    }

    /// The stored transport of `dest`, or the outcome of the (one) dial.
    async fn connect(
        self: &Arc<Self>,
        dest: &Dest,
    ) -> Result<Arc<DestTransport>, ConnectError<DialError>> {
        let inner = Arc::clone(self);
        self.table
            .get_or_connect(dest, move |dest| async move {
                inner.wait_drained(&dest).await;
                let wires = inner.builder.connect(&dest).await?;
                let connections = inner.open(wires).await?;
                tracing::info!(%dest, wires = connections.len(), "destination connected");
                Ok(inner.transport(dest, connections))
            })
            .await
    }

    /// Wraps the connections of a fresh dial into a transport that reports to this
    /// manager, and publishes that `dest` is connected.
    fn transport(&self, dest: Dest, connections: Vec<ConnectionHandle>) -> Arc<DestTransport> {
        let owner: Arc<dyn TransportOwner> = Arc::new(Owner {
            inner: self.me.clone(),
            events: Arc::clone(&self.events),
        });
        let transport = DestTransport::new(dest.clone(), connections, Some(owner), true);
        self.events.publish(DestEvent::Connected(dest));
        transport
    }

    /// Records the connections of a closed transport of `dest` that still write out
    /// their queues, and cuts them off if they still run after half the connect timeout
    /// (a peer that stopped reading must not hold them, or their requests, for longer).
    /// Once they have ended they are forgotten, so the record stays bounded when nobody
    /// dials `dest` again.
    fn remember_draining(&self, dest: &Dest, closing: Vec<ConnectionHandle>) {
        let limit = self.config.connect.connect_timeout / 2;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let watched = closing.clone();
                let me = self.me.clone();
                let dest = dest.clone();
                runtime.spawn(async move {
                    let ended =
                        futures::future::join_all(watched.iter().map(ConnectionHandle::closed));
                    if tokio::time::timeout(limit, ended).await.is_err() {
                        tracing::warn!(?limit, "closed connections still draining, cut off");
                        watched.iter().for_each(ConnectionHandle::close);
                        futures::future::join_all(watched.iter().map(ConnectionHandle::closed))
                            .await;
                    }
                    if let Some(inner) = me.upgrade() {
                        inner.forget_drained(&dest);
                    }
                });
            }
            // No runtime to wait on (the manager is dropped after its runtime): the
            // connections' tasks are gone anyway.
            Err(_) => closing.iter().for_each(ConnectionHandle::close),
        }
        let mut draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = draining.entry(dest.clone()).or_default();
        entry.retain(|connection| connection.close_reason().is_none());
        entry.extend(closing);
    }

    /// Waits until the connections of closed transports of `dest` have ended, cutting
    /// off any still running after half the connect timeout.
    ///
    /// They stay recorded until they have ended, not just until a dial starts waiting:
    /// a dial cancelled while it waits (`close_transport` aborts it) must leave them for
    /// the next one, which would otherwise connect at once and overtake their queues.
    async fn wait_drained(&self, dest: &Dest) {
        let closing = self
            .draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dest)
            .cloned()
            .unwrap_or_default();
        if closing.is_empty() {
            return;
        }
        let limit = self.config.connect.connect_timeout / 2;
        let ended = futures::future::join_all(closing.iter().map(ConnectionHandle::closed));
        if tokio::time::timeout(limit, ended).await.is_err() {
            tracing::warn!(%dest, ?limit, "closed connections still draining, cut off");
            closing.iter().for_each(ConnectionHandle::close);
            // A cut-off connection ends as soon as its supervisor runs; only then may a new
            // one carry the pair's next envelopes.
            futures::future::join_all(closing.iter().map(ConnectionHandle::closed)).await;
        }
        self.forget_drained(dest);
    }

    /// Forgets the connections of closed transports of `dest` that have ended.
    fn forget_drained(&self, dest: &Dest) {
        let mut draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = draining.get_mut(dest) {
            entry.retain(|connection| connection.close_reason().is_none());
            if entry.is_empty() {
                draining.remove(dest);
            }
        }
    }

    /// Holds `connection` until it ends, so an unkeyed accepted connection is not closed
    /// by its caller dropping the handle.
    fn keep_unkeyed(&self, connection: &ConnectionHandle) {
        let mut unkeyed = self.unkeyed.lock().unwrap_or_else(PoisonError::into_inner);
        unkeyed.retain(|kept| kept.close_reason().is_none());
        unkeyed.push(connection.clone());
        drop(unkeyed);
        let watched = connection.downgrade();
        let me = self.me.clone();
        tokio::spawn(async move {
            watched.closed().await;
            if let Some(inner) = me.upgrade() {
                inner
                    .unkeyed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|kept| !kept.downgrade().same_connection(&watched));
            }
        });
    }

    /// Whether `accepted`, a connection the peer dialed, should take the place of
    /// `current`, the transport stored for the same destination.
    fn prefers_accepted(&self, current: &DestTransport, accepted: &ConnectionHandle) -> bool {
        let peer = accepted.peer();
        if !current.is_healthy() || current.is_lost() {
            return true;
        }
        if current.peer_identity() != Some((peer.peer.clone(), peer.peer_launch_id)) {
            // The peer restarted (or another proc answers there now): the new one wins.
            return true;
        }
        if !current.is_dialed() {
            // The peer dialed again while its earlier connection still looked healthy:
            // its newest one is the one it uses.
            return true;
        }
        // Both sides dialed: keep the one `prefer_connection` picks, as the peer does.
        prefer_connection(
            (&self.hello.proc, self.hello.launch_id),
            (&peer.peer, peer.peer_launch_id),
            false,
        )
    }

    /// Removes `transport` from the table if it is still the one stored for `dest`, and
    /// closes it. A newer transport stored meanwhile is left alone.
    fn remove_if_current(&self, dest: &Dest, transport: &Arc<DestTransport>) {
        let current = self
            .table
            .get(dest)
            .is_some_and(|stored| Arc::ptr_eq(&stored, transport));
        // A newer transport can still be stored between the check and `mark_failed` and
        // be taken out by it. It is not closed here: its holders keep using it until they
        // drop it, and the cost is one extra dial by the next send.
        if current && let Some(removed) = self.table.mark_failed(dest) {
            tracing::info!(
                %dest,
                current = Arc::ptr_eq(&removed, transport),
                "every wire down, transport removed"
            );
        }
        transport.close();
    }

    /// Handshakes every wire and spawns a connection over each. Any failure fails the
    /// whole set; wires and connections already made are dropped, which closes them.
    async fn open(&self, wires: Vec<Wire>) -> Result<Vec<ConnectionHandle>, DialError> {
        if wires.is_empty() {
            return Err(DialError::NoWires);
        }
        let mut connections = Vec::with_capacity(wires.len());
        for (index, mut wire) in wires.into_iter().enumerate() {
            let shaken =
                perform_handshake(&mut wire, self.hello(), self.config.handshake_timeout).await;
            let negotiated = match shaken {
                Ok(negotiated) => negotiated,
                Err(source) => {
                    connections.iter().for_each(ConnectionHandle::close);
                    return Err(DialError::Handshake {
                        wire: index,
                        peer: wire.peer().to_owned(),
                        source,
                    });
                }
            };
            let inbound = SharedInbound(Arc::clone(&self.inbound));
            match (self.spawner)(wire, negotiated, self.config.connection.clone(), inbound) {
                Ok(connection) => connections.push(connection),
                Err(error) => {
                    connections.iter().for_each(ConnectionHandle::close);
                    return Err(error.into());
                }
            }
        }
        Ok(connections)
    }
}

/// Starts a connection over a wire after its handshake: plain, or with flow control over
/// the manager's target.
type Spawner = Arc<
    dyn Fn(
            Wire,
            crate::Negotiated,
            ConnectionConfig,
            SharedInbound,
        ) -> Result<ConnectionHandle, ConnectionConfigError>
        + Send
        + Sync,
>;

/// The manager's one [`Inbound`] shared by all its connections.
struct SharedInbound(Arc<dyn Inbound>);

impl Inbound for SharedInbound {
    fn deliver(&self, envelope: NetworkEnvelope) {
        self.0.deliver(envelope);
    }

    fn deliver_from(&self, envelope: NetworkEnvelope, from: &crate::ConnectionRef) {
        self.0.deliver_from(envelope, from);
    }

    fn skipped(&self, skipped: &Skipped) {
        self.0.skipped(skipped);
    }
}
