//! Refs inside messages: [`ActorRef`] serializes as a [`RemoteAddr`] and deserializes
//! against the proc that is decoding, plus the ways to make a remote ref
//! ([`Proc::remote_ref`], [`Proc::lookup_remote`]) and to expose a [`RemoteActor`].
//!
//! Serde gives a `Deserialize` impl no context, so the decoding proc is a thread-local
//! set for the (synchronous) span of a decode: by [`Proc::deliver_remote`] for every
//! inbound payload, by a remote ask for its reply, and by [`Proc::decoding`] for anyone
//! else. A ref to an actor of the decoding proc itself resolves to its local cell.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::actor::Actor;
use crate::actor_ref::{ActorRef, Target};
use crate::cell::Cell;
use crate::dispatch::ExposeError;
use crate::error::AskError;
use crate::id::{ActorId, ProcAddr};
use crate::proc::{Proc, ProcInner};
use crate::remote::codecs::{RemoteActor, codecs_of};
use crate::remote::remote_ref::RemoteTarget;
use crate::remote::system::{self, LOOKUP, LookupActor};
use crate::remote::{RemoteAddr, UNBOUNDED_ASK};

thread_local! {
    /// The proc decoding a payload on this thread, if any.
    static DECODING: RefCell<Option<Weak<ProcInner>>> = const { RefCell::new(None) };
}

/// Restores the previous decoding proc when dropped, also on a panic inside the decode.
struct DecodingScope(Option<Weak<ProcInner>>);

impl Drop for DecodingScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        DECODING.with(|slot| *slot.borrow_mut() = previous);
    }
}

impl Proc {
    /// Runs `decode` with this proc as the one that refs decoded inside it belong to: a
    /// decoded [`ActorRef`] sends through this proc's route, or is the local actor when it
    /// points at this proc. [`Proc::deliver_remote`] does this for every payload; call it
    /// to decode messages yourself.
    ///
    /// ```
    /// use plexus_core::{Actor, ActorRef, Proc, ProcId, RemoteActor, RemoteHandlers};
    /// # struct Idle;
    /// # impl Actor for Idle {}
    /// # impl RemoteActor for Idle {
    /// #     fn remote_handlers() -> RemoteHandlers<Self> { RemoteHandlers::new() }
    /// # }
    /// # struct Here;
    /// # impl plexus_core::RemoteRoute for Here {
    /// #     fn local_location(&self) -> plexus_core::Location { plexus_core::Location::Local(1) }
    /// #     fn tell(&self, _: plexus_core::Outbound) -> plexus_core::RouteTell { plexus_core::RouteTell::Done(Err(plexus_core::RouteError::Closed)) }
    /// #     fn try_tell(&self, m: plexus_core::Outbound) -> Result<(), (plexus_core::RouteError, plexus_core::Outbound)> { Err((plexus_core::RouteError::Closed, m)) }
    /// #     fn ask(&self, _: plexus_core::Outbound, _: std::time::Duration) -> futures::future::BoxFuture<'static, Result<Vec<u8>, plexus_core::RemoteAskError>> { Box::pin(async { Err(plexus_core::RemoteAskError::Abandoned) }) }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let proc = Proc::new(ProcId::unique("docs"));
    /// proc.set_route(Some(std::sync::Arc::new(Here)));
    /// let idle = proc.spawn("idle", Idle)?;
    /// let bytes = postcard::to_allocvec(&idle)?;
    /// let back: ActorRef<Idle> = proc.decoding(|| postcard::from_bytes(&bytes))?;
    /// assert_eq!(back, idle);
    /// assert!(!back.is_remote());
    /// # Ok(()) }
    /// ```
    pub fn decoding<R>(&self, decode: impl FnOnce() -> R) -> R {
        let previous = DECODING.with(|slot| slot.replace(Some(Arc::downgrade(&self.inner))));
        let _scope = DecodingScope(previous);
        decode()
    }

    /// A ref to the actor at `addr`, sending through this proc's route; the local actor
    /// when `addr` names a live actor of this proc. Nothing is checked remotely: sends to
    /// an actor that does not exist fail there (asks with `NotFound`). See
    /// [`Proc::lookup_remote`] to find an actor by name.
    pub fn remote_ref<A: RemoteActor>(&self, addr: RemoteAddr) -> ActorRef<A> {
        if addr.actor.proc() == self.id() {
            if let Some(cell) = self.local_cell::<A>(&addr.actor) {
                return ActorRef::local(cell);
            }
        }
        ActorRef {
            target: Target::Remote(Arc::new(RemoteTarget {
                addr,
                proc: Arc::downgrade(&self.inner),
                codecs: codecs_of::<A>(),
            })),
        }
    }

    /// Finds the exposed actor named `name` in the proc at `proc`, asking that proc (a
    /// system ask through this proc's route), and returns a ref to it.
    ///
    /// Fails with [`AskError::NotFound`] when no live actor has that name there,
    /// [`AskError::NotExposed`] when it is not exposed, and with the route's errors
    /// (`Unroutable`, `Disconnected`, ...). The actor's type is not checked: `A` must be
    /// the type that runs there. With a route, `proc` may be this proc itself.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the lookup.
    pub async fn lookup_remote<A: RemoteActor>(
        &self,
        proc: &ProcAddr,
        name: &str,
    ) -> Result<ActorRef<A>, AskError> {
        // The index is not known yet; routing looks at the proc and delivery at the name.
        let provisional = ActorId::new(proc.proc.clone(), name, u64::MAX);
        let payload = postcard::to_allocvec(&LookupActor {
            name: name.to_owned(),
        })
        .map_err(|error| AskError::Encode {
            recipient: provisional.clone(),
            reason: error.to_string(),
        })?;
        let recipient = RemoteAddr {
            actor: provisional,
            location: proc.location.clone(),
        };
        let actor: ActorId = system::ask(self, recipient, LOOKUP, payload, UNBOUNDED_ASK).await?;
        Ok(self.remote_ref(RemoteAddr {
            actor,
            location: proc.location.clone(),
        }))
    }

    /// Exposes `actor` to remote messages with its type's own table,
    /// [`RemoteActor::remote_handlers`]; see [`Proc::expose`].
    pub fn expose_remote<A: RemoteActor>(&self, actor: &ActorRef<A>) -> Result<(), ExposeError> {
        self.expose(actor, A::remote_handlers())
    }

    /// The live cell of type `A` with exactly this id.
    fn local_cell<A: Actor>(&self, id: &ActorId) -> Option<Arc<Cell<A>>> {
        let cell = self.lookup::<A>(id.name())?;
        let cell = cell.local_cell()?;
        (&cell.core.id == id).then(|| cell.clone())
    }
}

impl<A: Actor> Serialize for ActorRef<A> {
    /// Serializes the actor's [`RemoteAddr`]. A local actor's location is its proc's
    /// [`Proc::local_location`]; a proc with no route cannot hand out refs, and that is
    /// a serialization error.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.target {
            Target::Remote(remote) => remote.addr.serialize(serializer),
            Target::Local(cell) => {
                let location = cell
                    .core
                    .proc
                    .upgrade()
                    .and_then(|inner| Proc { inner }.local_location())
                    .ok_or_else(|| {
                        S::Error::custom(format!(
                            "cannot serialize a ref to {}: its proc has no route",
                            cell.core.id
                        ))
                    })?;
                RemoteAddr {
                    actor: cell.core.id.clone(),
                    location,
                }
                .serialize(serializer)
            }
        }
    }
}

impl<'de, A: RemoteActor> Deserialize<'de> for ActorRef<A> {
    /// Decodes a [`RemoteAddr`] and resolves it against the decoding proc (see
    /// [`Proc::decoding`]); outside of one, it is an error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let addr = RemoteAddr::deserialize(deserializer)?;
        let proc = DECODING
            .with(|slot| slot.borrow().as_ref().and_then(Weak::upgrade))
            .map(|inner| Proc { inner })
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "cannot decode the ref to {addr} outside of a decoding proc \
                     (see Proc::decoding)"
                ))
            })?;
        Ok(proc.remote_ref(addr))
    }
}
