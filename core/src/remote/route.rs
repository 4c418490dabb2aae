//! The way out of a proc: [`RemoteRoute`], implemented by the gateway a proc attaches to,
//! and what crosses it ([`Outbound`], [`RemoteAddr`], [`RouteError`], [`RouteTell`]).
//!
//! Core has no sockets and cannot name the codec's envelope, so it hands the route an
//! [`Outbound`]: the recipient's address, the wire name of the message and its postcard
//! bytes. Inbound traffic comes back through [`Proc::deliver_remote`](crate::Proc).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::dispatch::RemoteAskError;
use crate::id::{ActorId, Location, ProcAddr};

/// Where a remote actor lives: its id and the location of the gateway that reaches its
/// proc. This is the serialized form of an [`ActorRef`](crate::ActorRef).
///
/// ```
/// use plexus_core::{ActorId, Location, ProcId, RemoteAddr};
///
/// let addr = RemoteAddr {
///     actor: ActorId::new(ProcId::new("db", 1), "store", 0),
///     location: Location::Local(7),
/// };
/// assert_eq!(addr.to_string(), "db#1/store.0@local:7");
/// assert_eq!(addr.proc_addr().to_string(), "db#1@local:7");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteAddr {
    /// The actor.
    pub actor: ActorId,
    /// Where the gateway of the actor's proc is reached.
    pub location: Location,
}

impl RemoteAddr {
    /// The address of the actor's proc.
    pub fn proc_addr(&self) -> ProcAddr {
        ProcAddr::new(self.actor.proc().clone(), self.location.clone())
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.actor, self.location)
    }
}

/// One message encoded for the network by core, handed to a [`RemoteRoute`].
#[derive(Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The sending actor when the message is sent from within an actor's task, else
    /// `None`. Messages of one (sender, recipient) pair must keep their order.
    pub sender: Option<ActorId>,
    /// The recipient.
    pub recipient: RemoteAddr,
    /// The wire name of the message ([`RemoteMessage::NAME`](crate::RemoteMessage::NAME),
    /// or a system name starting with [`SYSTEM_PREFIX`](crate::SYSTEM_PREFIX)).
    pub name: &'static str,
    /// The postcard bytes of the message.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("sender", &self.sender)
            .field("recipient", &self.recipient)
            .field("name", &self.name)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Why a [`RemoteRoute`] could not take a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No way to the destination is known, or the destination refused the message
    /// (unknown proc, an isolated gateway, a hop limit spent).
    #[error("no route to {location}: {reason}")]
    Unroutable {
        /// The destination's location.
        location: Location,
        /// What the route said.
        reason: String,
    },
    /// The connection to the destination is lost and could not be made again.
    #[error("the connection to {location} is lost")]
    Disconnected {
        /// The destination's location.
        location: Location,
    },
    /// The gateway behind the route is gone.
    #[error("the gateway of this proc is gone")]
    BrokenLink,
    /// No room to send without waiting (only from [`RemoteRoute::try_tell`]).
    #[error("no room to send now")]
    Full,
    /// The route is shut down.
    #[error("the route is closed")]
    Closed,
}

/// What [`RemoteRoute::tell`] did at the call: most tells are done there (sent, queued or
/// refused) and need no future; only a tell that has to wait carries one, on the heap.
///
/// ```
/// use plexus_core::{RouteError, RouteTell};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let queued = RouteTell::Done(Ok(()));
/// assert!(queued.finish().await.is_ok());
/// let later = RouteTell::waiting(async { Err(RouteError::Closed) });
/// assert_eq!(later.finish().await, Err(RouteError::Closed));
/// # }
/// ```
#[must_use = "a waiting tell is only sent when its future is awaited"]
pub enum RouteTell {
    /// The tell is done: handed on (`Ok`) or refused.
    Done(Result<(), RouteError>),
    /// The tell waits (for room, flow credit or a dial) in this future.
    Waiting(BoxFuture<'static, Result<(), RouteError>>),
}

impl RouteTell {
    /// A tell that finishes in `future`.
    pub fn waiting(future: impl Future<Output = Result<(), RouteError>> + Send + 'static) -> Self {
        RouteTell::Waiting(Box::pin(future))
    }

    /// The tell's outcome, waiting for it if needed.
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as the route's waiting future.
    pub async fn finish(self) -> Result<(), RouteError> {
        match self {
            RouteTell::Done(outcome) => outcome,
            RouteTell::Waiting(future) => future.await,
        }
    }
}

impl fmt::Debug for RouteTell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteTell::Done(outcome) => f.debug_tuple("Done").field(outcome).finish(),
            RouteTell::Waiting(_) => f.write_str("Waiting"),
        }
    }
}

/// The way out of a proc, installed by the gateway the proc attaches to.
///
/// Installed with [`Proc::set_route`](crate::Proc::set_route); every remote ref created
/// on the proc (by [`Proc::lookup_remote`](crate::Proc::lookup_remote), by
/// [`Proc::remote_ref`](crate::Proc::remote_ref) or by decoding a ref inside a message)
/// sends through it.
///
/// The receiving side hands each envelope to
/// [`Proc::deliver_remote_to`](crate::Proc::deliver_remote_to) with the recipient's
/// [`ActorId`], so an envelope for an earlier actor of the same name is refused. System
/// messages (names starting with [`SYSTEM_PREFIX`](crate::SYSTEM_PREFIX)) are routed like
/// any other envelope; they never find a full mailbox. A route may call the receiving
/// proc's delivery synchronously from `try_tell` (as one gateway serving both procs does).
///
/// Core calls `try_tell` from places that must not wait: an actor's final stop (the
/// `Stopped` notices of its remote watchers) and inside `deliver_remote` itself (a watch
/// on an unknown actor is answered at once). So a route must not hold, across a call to
/// a proc's delivery, a lock that its own `try_tell` takes.
///
/// ```
/// use futures::future::BoxFuture;
/// use plexus_core::{Location, Outbound, RemoteAskError, RemoteRoute, RouteError, RouteTell};
/// use std::time::Duration;
///
/// /// A route that reaches nothing: what an isolated proc would see.
/// struct Nowhere;
///
/// impl RemoteRoute for Nowhere {
///     fn local_location(&self) -> Location {
///         Location::Local(0)
///     }
///     fn tell(&self, message: Outbound) -> RouteTell {
///         let location = message.recipient.location;
///         RouteTell::Done(Err(RouteError::Unroutable { location, reason: "isolated".into() }))
///     }
///     fn try_tell(&self, message: Outbound) -> Result<(), (RouteError, Outbound)> {
///         let location = message.recipient.location.clone();
///         Err((RouteError::Unroutable { location, reason: "isolated".into() }, message))
///     }
///     fn ask(
///         &self,
///         _message: Outbound,
///         _timeout: Duration,
///     ) -> BoxFuture<'static, Result<Vec<u8>, RemoteAskError>> {
///         Box::pin(async { Err(RemoteAskError::Unroutable { reason: "isolated".into() }) })
///     }
/// }
///
/// let proc = plexus_core::Proc::new(plexus_core::ProcId::unique("docs"));
/// proc.set_route(Some(std::sync::Arc::new(Nowhere)));
/// assert_eq!(proc.local_location(), Some(Location::Local(0)));
/// ```
pub trait RemoteRoute: Send + Sync + 'static {
    /// The location this proc is reached at; it goes into serialized refs of its actors.
    fn local_location(&self) -> Location;

    /// Sends a tell: waits for transport room and flow credit, fails fast when the
    /// destination cannot be reached. What needs no waiting (a tell queued on a connected
    /// way out, delivered to a proc next door, refused) is done at the call and returned
    /// as [`RouteTell::Done`], so the common tell allocates no future; only a tell that
    /// has to wait returns [`RouteTell::Waiting`].
    fn tell(&self, message: Outbound) -> RouteTell;

    /// Sends a tell without waiting: [`RouteError::Full`] (with the message handed back)
    /// when there is no room now.
    #[allow(
        clippy::result_large_err,
        reason = "the refused message comes back by value, as the gateway contract says; \
                  boxing it would allocate on every refusal"
    )]
    fn try_tell(&self, message: Outbound) -> Result<(), (RouteError, Outbound)>;

    /// Sends a request: resolves with the reply's postcard bytes or the typed error, and
    /// never later than `timeout` (then with [`RemoteAskError::Timeout`]). An ask without
    /// a limit passes [`UNBOUNDED_ASK`].
    fn ask(
        &self,
        message: Outbound,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, RemoteAskError>>;
}

/// The timeout a remote [`ActorRef::ask`](crate::ActorRef::ask) (which has no limit of its
/// own) passes to [`RemoteRoute::ask`]: a hundred years, finite so that adding it to an
/// `Instant` cannot overflow. The ask still ends at once on a disconnect.
pub const UNBOUNDED_ASK: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Sends a tell on `route` without making the caller wait: at once if the route has room,
/// else from a task of its own. The message is encoded once and keeps its sender, so a
/// late send stays in its (sender, recipient) flow.
///
/// `on_fail` hears of any failure: now (its result is returned; `Full` here means no
/// runtime runs to wait in) or later from the task (its result is dropped).
pub(crate) fn tell_now_or_later<R>(
    route: Arc<dyn RemoteRoute>,
    message: Outbound,
    on_fail: impl FnOnce(RouteError) -> R + Send + 'static,
) -> Result<(), R> {
    match route.try_tell(message) {
        Ok(()) => Ok(()),
        Err((RouteError::Full, message)) if tokio::runtime::Handle::try_current().is_ok() => {
            tokio::spawn(async move {
                if let Err(error) = route.tell(message).finish().await {
                    on_fail(error);
                }
            });
            Ok(())
        }
        Err((error, _)) => Err(on_fail(error)),
    }
}
