//! Remote dispatch: decoding a message that arrived by name and handing it to an actor's
//! typed handler, without ever waiting on the actor.
//!
//! An actor type declares the remote messages it accepts in a [`RemoteHandlers`] table,
//! and [`Proc::expose`] attaches that table to one running actor. The table is checked when
//! it is attached (two types under one name are refused there), so a bad registration is
//! found at start-up, not by the first envelope that uses it.
//!
//! The connection reader then calls [`Proc::deliver_remote`] with the actor's name, the
//! message name and the postcard payload. Delivery never awaits:
//!
//! ```text
//! deliver_remote ─ actor exposed? ─ no ──────────────▶ NotFound / NotExposed
//!                  message known? ─ no ──────────────▶ UnknownMessage
//!                  payload decodes? ─ no ────────────▶ Decode (an ask's reply gets it too)
//!                  mailbox has room? ─ no ───────────▶ Full { pending } (retry later)
//!                  yes ─▶ enqueued; an ask's reply callback runs when the handler answers
//! ```
//!
//! An enqueued ask is answered by the actor's own task: when its handler returns it encodes
//! the reply and calls the callback, so delivery spawns nothing and needs no runtime.
//!
//! A `Full` delivery hands back a [`PendingDelivery`] holding the decoded message, so the
//! flow-control layer can park it in that flow's queue and push it with
//! [`PendingDelivery::deliver`] from a task of its own, keeping the reader free.

use std::any::TypeId;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

// foldhash, not SipHash: every inbound envelope looks its route up by wire name.
use foldhash::HashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::{Actor, Handler};
use crate::actor_ref::ActorRef;
use crate::cell::Cell;
use crate::id::ActorId;
use crate::proc::{Proc, ProcInner};
use crate::remote::RemoteMessage;
use crate::remote::codecs::{self, DecodeReplyFn, EncodeFn, MessageCodec, RemoteCodecs};

mod deliver;
mod error;
#[cfg(test)]
mod tests;

pub use deliver::PendingDelivery;
pub(crate) use deliver::{ReplySlot, encode_reply, refuse};
use deliver::{decode_and_ask, decode_and_tell};
pub use error::{DeliveryError, ExposeError, RemoteAskError};

/// Called exactly once with the outcome of a remote ask: the postcard-encoded reply, or
/// why there is none.
pub type RemoteReply = Box<dyn FnOnce(Result<Vec<u8>, RemoteAskError>) + Send>;

/// The remote messages one actor type accepts, by wire name.
///
/// Build it once per actor type and attach it with [`Proc::expose`]. Registering two
/// different types under one [`RemoteMessage::NAME`] is refused by `expose` with
/// [`ExposeError::DuplicateName`]; registering one type twice is harmless, and `ask`
/// after `tell` of the same type upgrades it to accept asks.
///
/// ```
/// use plexus_core::{Actor, Context, Handler, Proc, ProcId, RemoteHandlers, RemoteMessage};
/// use serde::{Deserialize, Serialize};
///
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// #[derive(Serialize, Deserialize)]
/// struct Add(u64);
/// impl RemoteMessage for Add {
///     const NAME: &'static str = "counter.Add";
/// }
/// impl Handler<Add> for Counter {
///     type Reply = u64;
///     async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
///         self.0 += n;
///         self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proc = Proc::new(ProcId::unique("docs"));
/// let counter = proc.spawn("counter", Counter(0))?;
/// proc.expose(&counter, RemoteHandlers::new().ask::<Add>())?;
///
/// // What a connection reader does with an envelope that arrived for `counter`.
/// let (reply, answer) = tokio::sync::oneshot::channel();
/// let payload = postcard::to_allocvec(&Add(5))?;
/// proc.deliver_remote(
///     "counter",
///     "counter.Add",
///     &payload,
///     Some(Box::new(move |outcome| {
///         let _ = reply.send(outcome);
///     })),
/// )?;
/// let encoded = answer.await??;
/// assert_eq!(postcard::from_bytes::<u64>(&encoded)?, 5);
/// # Ok(()) }
/// ```
pub struct RemoteHandlers<A: Actor> {
    routes: HashMap<&'static str, Route<A>>,
    /// The first clash found while building; reported by `expose`, so the builder chains.
    clash: Option<ExposeError>,
}

impl<A: Actor> Default for RemoteHandlers<A> {
    fn default() -> Self {
        RemoteHandlers {
            routes: HashMap::default(),
            clash: None,
        }
    }
}

impl<A: Actor> fmt::Debug for RemoteHandlers<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.routes.keys().copied().collect();
        names.sort_unstable();
        f.debug_struct("RemoteHandlers")
            .field("actor_type", &std::any::type_name::<A>())
            .field("messages", &names)
            .finish_non_exhaustive()
    }
}

impl<A: Actor> RemoteHandlers<A> {
    /// An empty table.
    pub fn new() -> Self {
        RemoteHandlers::default()
    }

    /// Accepts `M` as a tell: the handler's reply is discarded.
    pub fn tell<M>(self) -> Self
    where
        A: Handler<M>,
        M: RemoteMessage,
    {
        self.register(Route {
            name: M::NAME,
            type_name: std::any::type_name::<M>(),
            type_id: TypeId::of::<M>(),
            tell: decode_and_tell::<A, M>,
            ask: None,
            encode: codecs::encode::<M>,
            decode_reply: None,
        })
    }

    /// Accepts `M` as a tell and as an ask whose reply travels back postcard-encoded.
    pub fn ask<M>(self) -> Self
    where
        A: Handler<M>,
        M: RemoteMessage,
        A::Reply: Serialize + DeserializeOwned,
    {
        self.register(Route {
            name: M::NAME,
            type_name: std::any::type_name::<M>(),
            type_id: TypeId::of::<M>(),
            tell: decode_and_tell::<A, M>,
            ask: Some(decode_and_ask::<A, M>),
            encode: codecs::encode::<M>,
            decode_reply: Some(codecs::decode_reply::<<A as Handler<M>>::Reply>),
        })
    }

    /// The wire names registered so far, in no particular order.
    pub fn message_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.keys().copied()
    }

    /// The sending side of this table: encoders and reply decoders by message type.
    pub(crate) fn codecs(&self) -> RemoteCodecs {
        let by_type = self
            .routes
            .values()
            .map(|route| {
                let codec = MessageCodec {
                    name: route.name,
                    encode: route.encode,
                    decode_reply: route.decode_reply,
                };
                (route.type_id, codec)
            })
            .collect();
        RemoteCodecs { by_type }
    }

    fn register(mut self, route: Route<A>) -> Self {
        let name = route.name;
        match self.routes.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(route);
            }
            // Same type again: keep the wider registration (an ask also accepts tells).
            Entry::Occupied(mut slot) if slot.get().type_name == route.type_name => {
                if route.ask.is_some() {
                    slot.insert(route);
                }
            }
            Entry::Occupied(slot) => {
                if self.clash.is_none() {
                    self.clash = Some(ExposeError::DuplicateName {
                        message: name,
                        first: slot.get().type_name,
                        second: route.type_name,
                    });
                }
            }
        }
        self
    }
}

/// How one wire name reaches one actor type's handler. Plain function pointers: a route
/// is picked per envelope, and monomorphized decoders cost no allocation to call.
struct Route<A: Actor> {
    name: &'static str,
    type_name: &'static str,
    type_id: TypeId,
    tell: TellFn<A>,
    ask: Option<AskFn<A>>,
    /// The sending side, for remote refs: see `remote::codecs`.
    encode: EncodeFn,
    decode_reply: Option<DecodeReplyFn>,
}

/// Decodes a payload as one message type and tells it to the actor.
type TellFn<A> = fn(&Arc<Cell<A>>, &[u8]) -> Result<(), DeliveryError>;

/// Decodes a payload as one message type and asks the actor, answering through the slot.
type AskFn<A> = fn(&Arc<Cell<A>>, &[u8], ReplySlot) -> Result<(), DeliveryError>;

/// One exposed actor, seen without its type, as the proc stores it.
pub(crate) trait Exposure: Send + Sync + 'static {
    /// With `index`, only the actor of that incarnation index takes the envelope.
    /// `route` is where the previous envelope's message was found in the exposure's table
    /// (`usize::MAX` for none): tried first, as runs of one message are common, and
    /// updated.
    fn deliver(
        &self,
        actor: &str,
        index: Option<u64>,
        message: &str,
        payload: &[u8],
        reply: Option<ReplySlot>,
        route: &mut usize,
    ) -> Result<(), Undelivered>;

    /// Marks the exposure as no longer the proc's (replaced or removed), so a cached
    /// handle to it is not used again.
    fn retire(&self);

    /// Whether [`retire`](Exposure::retire) was called.
    fn is_retired(&self) -> bool;
}

/// Why an exposure could not take an envelope; `Stale` sends the proc back to its registry.
pub(crate) enum Undelivered {
    Stale(Option<ReplySlot>),
    Failed(DeliveryError),
}

struct Exposed<A: Actor> {
    actor: Weak<Cell<A>>,
    routes: Vec<Route<A>>,
    /// Where each name's route is in `routes`.
    by_name: HashMap<&'static str, usize>,
    retired: AtomicBool,
}

impl<A: Actor> Exposed<A> {
    /// The route of `message`, trying the one at `hint` first and leaving it at the one
    /// found.
    fn route(&self, message: &str, hint: &mut usize) -> Option<&Route<A>> {
        if let Some(route) = self.routes.get(*hint)
            && route.name == message
        {
            return Some(route);
        }
        let index = *self.by_name.get(message)?;
        *hint = index;
        self.routes.get(index)
    }
}

impl<A: Actor> Exposure for Exposed<A> {
    fn deliver(
        &self,
        actor_name: &str,
        index: Option<u64>,
        message: &str,
        payload: &[u8],
        reply: Option<ReplySlot>,
        hint: &mut usize,
    ) -> Result<(), Undelivered> {
        // A stopped actor leaves its exposure behind; a new actor under the same name
        // must not inherit it, so the caller drops it and looks again.
        let Some(actor) = self
            .actor
            .upgrade()
            .filter(|cell| !cell.core.exit.is_finished())
        else {
            return Err(Undelivered::Stale(reply));
        };
        // An envelope for an earlier actor of this name is not for this one (promise 3.8).
        if index.is_some_and(|index| index != actor.core.id.index()) {
            let not_found = DeliveryError::NotFound {
                actor: actor_name.to_owned(),
            };
            return Err(Undelivered::Failed(refuse(reply, not_found)));
        }
        let Some(route) = self.route(message, hint) else {
            let unknown = DeliveryError::UnknownMessage {
                actor: actor_name.to_owned(),
                message: message.to_owned(),
            };
            return Err(Undelivered::Failed(refuse(reply, unknown)));
        };
        let delivered = match (reply, route.ask) {
            (None, _) => (route.tell)(&actor, payload),
            (Some(reply), Some(ask)) => ask(&actor, payload, reply),
            (Some(reply), None) => Err(refuse(
                Some(reply),
                DeliveryError::NotAskable {
                    actor: actor_name.to_owned(),
                    message: message.to_owned(),
                },
            )),
        };
        delivered.map_err(Undelivered::Failed)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// What [`Proc::deliver_remote_cached`] remembers about its recipient between deliveries:
/// the exposure it found, so that the proc's table of exposed actors is not searched for
/// every envelope. Keep one per recipient (a connection's flow, say), starting from
/// `ExposureCache::default()`; one used for another recipient or proc only looks again.
#[derive(Default)]
pub struct ExposureCache {
    found: Option<Found>,
}

impl fmt::Debug for ExposureCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExposureCache")
            .field("actor", &self.found.as_ref().map(|found| &found.actor))
            .finish()
    }
}

/// An exposure found in a proc's table for one actor name.
struct Found {
    /// The proc whose table it is, weakly: the allocation outlives the weak handle, so
    /// comparing addresses cannot mistake another proc for this one.
    proc: Weak<ProcInner>,
    actor: Arc<str>,
    exposure: Arc<dyn Exposure>,
    /// Where the last message's route was in the exposure's table.
    route: usize,
}

impl Found {
    /// Whether this is still what `proc`'s table holds for `actor`: the table replaces
    /// or removes an exposure only after retiring it.
    fn is_current(&self, proc: &Proc, actor: &str) -> bool {
        std::ptr::eq(self.proc.as_ptr(), Arc::as_ptr(&proc.inner))
            && &*self.actor == actor
            && !self.exposure.is_retired()
    }
}

impl Proc {
    /// Attaches a table of remote handlers to a live actor of this proc, replacing any
    /// table it had. From now on [`Proc::deliver_remote`] reaches it by its name.
    ///
    /// Fails with [`ExposeError::DuplicateName`] if the table registers two types under
    /// one name, and [`ExposeError::NotRunning`] if `actor` is not this proc's live actor
    /// under its name. The exposure ends when the actor stops for good; a supervised
    /// restart keeps it.
    pub fn expose<A: Actor>(
        &self,
        actor: &ActorRef<A>,
        handlers: RemoteHandlers<A>,
    ) -> Result<(), ExposeError> {
        if let Some(clash) = handlers.clash {
            return Err(clash);
        }
        if let Some(name) = handlers
            .message_names()
            .find(|name| name.starts_with(crate::remote::SYSTEM_PREFIX))
        {
            return Err(ExposeError::ReservedName { message: name });
        }
        let name = actor.id().name();
        if self.lookup::<A>(name).as_ref() != Some(actor) {
            return Err(ExposeError::NotRunning {
                actor: actor.id().clone(),
            });
        }
        let Some(cell) = actor.local_cell() else {
            return Err(ExposeError::NotRunning {
                actor: actor.id().clone(),
            });
        };
        let routes: Vec<Route<A>> = handlers.routes.into_values().collect();
        let by_name = routes
            .iter()
            .enumerate()
            .map(|(index, route)| (route.name, index))
            .collect();
        let exposure: Arc<dyn Exposure> = Arc::new(Exposed {
            actor: Arc::downgrade(cell),
            routes,
            by_name,
            retired: AtomicBool::new(false),
        });
        if let Some(replaced) = self.exposures().insert(Arc::from(name), exposure) {
            replaced.retire();
        }
        Ok(())
    }

    /// Decodes a remote message by its wire name and hands it to the named actor, without
    /// waiting: the connection reader calls this for every envelope.
    ///
    /// With `reply`, the message is an ask: once the handler answers, `reply` is called
    /// with the postcard-encoded reply or a [`RemoteAskError`]. `reply` is called exactly
    /// once on every path; when this returns an error other than `Full`, it has already
    /// been called with the matching error.
    ///
    /// A full mailbox returns [`DeliveryError::Full`] holding the decoded message; see
    /// [`PendingDelivery`]. Envelopes delivered one after another for one actor are
    /// handled in that order.
    ///
    /// A tell refused with [`DeliveryError::Closed`] has gone to this proc's undeliverable
    /// handler; for the other errors the message never became a typed value here, so
    /// reporting it (to the sender, with the reason) is the caller's job.
    ///
    /// ```
    /// use plexus_core::{Actor, Context, DeliveryError, Handler, Proc, ProcId};
    /// use plexus_core::{RemoteHandlers, RemoteMessage};
    /// use serde::{Deserialize, Serialize};
    ///
    /// struct Log(Vec<String>);
    /// impl Actor for Log {}
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Line(String);
    /// impl RemoteMessage for Line {
    ///     const NAME: &'static str = "log.Line";
    /// }
    /// impl Handler<Line> for Log {
    ///     type Reply = ();
    ///     async fn handle(&mut self, Line(text): Line, _ctx: &mut Context<Self>) {
    ///         self.0.push(text);
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proc = Proc::new(ProcId::unique("docs"));
    /// let log = proc.spawn("log", Log(Vec::new()))?;
    /// proc.expose(&log, RemoteHandlers::new().tell::<Line>())?;
    ///
    /// let payload = postcard::to_allocvec(&Line("started".into()))?;
    /// proc.deliver_remote("log", "log.Line", &payload, None)?;
    ///
    /// let unknown = proc.deliver_remote("log", "log.Rotate", &[], None);
    /// assert!(matches!(unknown, Err(DeliveryError::UnknownMessage { .. })));
    /// # Ok(()) }
    /// ```
    pub fn deliver_remote(
        &self,
        actor: &str,
        message: &str,
        payload: &[u8],
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliveryError> {
        self.deliver_inbound(actor, None, message, payload, reply)
    }

    /// Like [`Proc::deliver_remote`], for the actor with exactly this id: an envelope
    /// addressed to an earlier actor of the same name (or to another proc) fails with
    /// [`DeliveryError::NotFound`] (an ask is answered `NotFound`) instead of reaching
    /// the actor that has the name now. System messages are handled whatever the id.
    ///
    /// ```
    /// use plexus_core::{Actor, ActorId, DeliveryError, Proc, ProcId, RemoteHandlers};
    /// # struct Idle;
    /// # impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proc = Proc::new(ProcId::unique("docs"));
    /// let idle = proc.spawn("idle", Idle)?;
    /// proc.expose(&idle, RemoteHandlers::new())?;
    /// let earlier = ActorId::new(proc.id().clone(), "idle", idle.id().index() + 1);
    /// let stale = proc.deliver_remote_to(&earlier, "any.Name", &[], None);
    /// assert!(matches!(stale, Err(DeliveryError::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub fn deliver_remote_to(
        &self,
        actor: &ActorId,
        message: &str,
        payload: &[u8],
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliveryError> {
        if actor.proc() != self.id() && !message.starts_with(crate::remote::SYSTEM_PREFIX) {
            let not_found = DeliveryError::NotFound {
                actor: actor.to_string(),
            };
            return Err(refuse(reply.map(|reply| ReplySlot(Some(reply))), not_found));
        }
        self.deliver_inbound(actor.name(), Some(actor.index()), message, payload, reply)
    }

    /// Like [`Proc::deliver_remote_to`], remembering in `cache` the exposure of `actor`'s
    /// name, so that later deliveries to the same actor skip the search of the proc's
    /// table while that exposure stays the table's. The outcome is always the one
    /// `deliver_remote_to` would have had.
    ///
    /// ```
    /// use plexus_core::{Actor, ExposureCache, Proc, ProcId, RemoteHandlers};
    /// # struct Idle;
    /// # impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proc = Proc::new(ProcId::unique("docs"));
    /// let idle = proc.spawn("idle", Idle)?;
    /// let mut cache = ExposureCache::default();
    /// // Not exposed yet; then exposed: the cache does not remember the absence.
    /// assert!(proc.deliver_remote_cached(&mut cache, idle.id(), "any.Name", &[], None).is_err());
    /// proc.expose(&idle, RemoteHandlers::new())?;
    /// let unknown = proc.deliver_remote_cached(&mut cache, idle.id(), "any.Name", &[], None);
    /// assert!(matches!(unknown, Err(plexus_core::DeliveryError::UnknownMessage { .. })));
    /// # Ok(()) }
    /// ```
    pub fn deliver_remote_cached(
        &self,
        cache: &mut ExposureCache,
        actor: &ActorId,
        message: &str,
        payload: &[u8],
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliveryError> {
        if actor.proc() != self.id() || message.starts_with(crate::remote::SYSTEM_PREFIX) {
            return self.deliver_remote_to(actor, message, payload, reply);
        }
        let name = actor.name();
        if !cache
            .found
            .as_ref()
            .is_some_and(|found| found.is_current(self, name))
        {
            cache.found = self.exposures().get(name).map(|entry| Found {
                proc: Arc::downgrade(&self.inner),
                actor: Arc::clone(entry.key()),
                exposure: Arc::clone(entry.value()),
                route: usize::MAX,
            });
        }
        let reply = reply.map(|reply| ReplySlot(Some(reply)));
        let mut no_route = usize::MAX;
        let (exposure, route) = match cache.found.as_mut() {
            Some(found) => (Some(&found.exposure), &mut found.route),
            None => (None, &mut no_route),
        };
        let index = Some(actor.index());
        self.deliver_exposed(exposure, route, name, index, message, payload, reply)
    }

    fn deliver_inbound(
        &self,
        actor: &str,
        index: Option<u64>,
        message: &str,
        payload: &[u8],
        reply: Option<RemoteReply>,
    ) -> Result<(), DeliveryError> {
        let reply = reply.map(|reply| ReplySlot(Some(reply)));
        if message.starts_with(crate::remote::SYSTEM_PREFIX) {
            return self.deliver_system(message, payload, reply);
        }
        // Clone the entry out so no registry shard lock is held while the actor is reached.
        let exposure = self
            .exposures()
            .get(actor)
            .map(|entry| entry.value().clone());
        let mut route = usize::MAX;
        self.deliver_exposed(
            exposure.as_ref(),
            &mut route,
            actor,
            index,
            message,
            payload,
            reply,
        )
    }

    /// Delivers through `exposure`, what the table held for `actor`; a stale one (its
    /// actor stopped) leaves the table.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one delivery, passed on"
    )]
    fn deliver_exposed(
        &self,
        exposure: Option<&Arc<dyn Exposure>>,
        route: &mut usize,
        actor: &str,
        index: Option<u64>,
        message: &str,
        payload: &[u8],
        mut reply: Option<ReplySlot>,
    ) -> Result<(), DeliveryError> {
        if let Some(exposure) = exposure {
            // Refs inside the payload resolve against this proc.
            let deliver = || exposure.deliver(actor, index, message, payload, reply, route);
            match self.decoding(deliver) {
                Ok(()) => return Ok(()),
                Err(Undelivered::Failed(error)) => return Err(error),
                Err(Undelivered::Stale(back)) => {
                    reply = back;
                    if self
                        .exposures()
                        .remove_if(actor, |_, entry| Arc::ptr_eq(entry, exposure))
                        .is_some()
                    {
                        exposure.retire();
                    }
                }
            }
        }
        Err(self.not_exposed(actor, reply))
    }

    /// The error for a name with no live exposure, answered to an ask's reply too.
    fn not_exposed(&self, actor: &str, reply: Option<ReplySlot>) -> DeliveryError {
        let actor = actor.to_owned();
        let error = if self.has_actor(&actor) {
            DeliveryError::NotExposed { actor }
        } else {
            DeliveryError::NotFound { actor }
        };
        refuse(reply, error)
    }
}
