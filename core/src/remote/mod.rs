//! Everything of core that reaches across processes: the [`RemoteMessage`] contract, the
//! [`RemoteRoute`] seam a gateway implements, and the proc's side of it (its route, lost
//! peers and remote watches).
//!
//! Core has no sockets. A proc that joins a gateway gets a route with
//! [`Proc::set_route`]; remote refs send through it, and the gateway delivers inbound
//! envelopes with [`Proc::deliver_remote`]. When the gateway loses a destination it calls
//! [`Proc::peer_lost`], which fires every remote watch on actors there.
//!
//! - `message.rs`: [`RemoteMessage`].
//! - `route.rs`: [`RemoteRoute`], [`Outbound`], [`RemoteAddr`], [`RouteError`].
//! - `codecs.rs`: [`RemoteActor`] and the per-type codec table of remote refs.
//! - `remote_ref.rs`: the remote arms of `ActorRef`'s methods.
//! - `serde_ref.rs`: refs inside messages, [`Proc::remote_ref`], [`Proc::lookup_remote`].
//! - `system.rs`: the system protocol (remote watch, link, stop, lookup).
//! - `watch.rs`: the watcher side of remote watches, fired exactly once.
//! - `spawn.rs`: spawnable kinds, remote spawn, and supervised remote children.
//! - `undeliverable.rs`: late reports of remote tells lost after the route took them
//!   ([`Proc::report_remote_undeliverable`], [`UndeliveredRemote`]).

use std::sync::{Arc, PoisonError};

use crate::actor::StopReason;
use crate::id::Location;
use crate::proc::Proc;

pub(crate) mod codecs;
mod message;
mod remote_ref;
mod route;
mod serde_ref;
mod spawn;
pub(crate) mod system;
mod undeliverable;
pub(crate) mod watch;

pub use codecs::RemoteActor;
pub use message::RemoteMessage;
pub(crate) use remote_ref::RemoteTarget;
pub use route::{Outbound, RemoteAddr, RemoteRoute, RouteError, RouteTell, UNBOUNDED_ASK};
pub use spawn::{
    DEFAULT_SPAWN_TIMEOUT, Placement, RegisterSpawnableError, RemoteChild, RemoteChildSpec,
    RemoteSpawnError, SpawnRefusal,
};
pub use undeliverable::UndeliveredRemote;
pub(crate) use watch::RemoteWatches;

/// The prefix of the wire names of system messages (remote watch, stop, lookup). Core
/// sends them through the route like any message and intercepts them in
/// [`Proc::deliver_remote`]; a gateway routes them as it routes every envelope.
pub const SYSTEM_PREFIX: &str = "$sys.";

impl crate::proc::ProcInner {
    pub(crate) fn route(&self) -> Option<Arc<dyn RemoteRoute>> {
        self.route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Proc {
    /// Installs the way out of this proc (`Some`, when it attaches to a gateway) or
    /// removes it (`None`, on detach). Remote refs read the route at every send, so a
    /// route installed later serves refs made earlier; without one, remote sends fail
    /// with `Unroutable`.
    ///
    /// Removing the route fires every remote watch and link of this proc with
    /// [`StopReason::Disconnected`]: no notice can reach it any more.
    pub fn set_route(&self, route: Option<Arc<dyn RemoteRoute>>) {
        let detached = route.is_none();
        {
            let mut slot = self
                .inner
                .route
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *slot = route;
        }
        if detached {
            let fired = self.inner.watches.fire_all(&StopReason::Disconnected);
            if fired > 0 {
                tracing::info!(proc = %self.id(), fired, "remote watches fired on detach");
            }
        }
    }

    /// The installed route, if any.
    pub fn route(&self) -> Option<Arc<dyn RemoteRoute>> {
        self.inner.route()
    }

    /// Where this proc is reached, from its route; `None` while it has none.
    pub fn local_location(&self) -> Option<Location> {
        self.route().map(|route| route.local_location())
    }

    /// Tells the proc that the destination at `location` is lost: every remote watch and
    /// link on an actor there fires now with [`StopReason::Disconnected`], exactly once
    /// (a `Stopped` notice arriving later finds nothing to fire). Nothing else fails here:
    /// asks in flight fail through the route. Returns how many watches fired.
    ///
    /// The gateway calls it on every attached proc when all wires to a destination have
    /// failed or an accepted connection from it has closed.
    pub fn peer_lost(&self, location: &Location) -> usize {
        let fired = self
            .inner
            .watches
            .fire_location(location, &StopReason::Disconnected);
        if fired > 0 {
            tracing::info!(proc = %self.id(), %location, fired, "remote watches fired on a lost peer");
        }
        fired
    }

    /// How many remote watches and links of this proc's actors wait for their target's
    /// stop.
    pub fn remote_watch_count(&self) -> usize {
        self.inner.watches.len()
    }
}
