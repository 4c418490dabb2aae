//! Spawning actors on another proc, and supervising them from this one.
//!
//! A proc offers *spawnable kinds* ([`Proc::register_spawnable`]): a name, the type of the
//! arguments and a factory. Another proc asks for one with the `$sys.Spawn` system ask
//! ([`Proc::spawn_remote`]) and gets the new actor's id, or a typed [`SpawnRefusal`].
//!
//! [`Context::spawn_remote_child`] puts such an actor under supervision. The parent does
//! not supervise the remote actor directly: it supervises a local *stand-in*, an ordinary
//! supervised child that places the remote actor when it starts and links to it. So the
//! restart policy, the strategy, the budget and escalation are exactly those of local
//! children, with nothing in the supervisor that knows about the network:
//!
//! ```text
//! parent ── supervises ──▶ stand-in (local, keeps its id)   ── link ──▶ remote actor
//!                            on_start: $sys.Spawn on a candidate proc (in turn, until one
//!                                      accepts; none does: StartFailed, a failure)
//!                            remote actor stops or its proc is lost (Disconnected):
//!                                      the stand-in stops with that reason
//!                            on_stop:  stops the remote actor if it still runs
//! ```
//!
//! A restart places the actor again on the proc where it ran, unless that proc was lost
//! (`Disconnected`): then on the next candidate, in the order given. Each placement is a
//! new remote actor with a new id; [`RemoteChild`] always knows the current one. The link
//! also works the other way: when the parent's proc is lost, the remote actor gets a
//! `LinkDied` with `Disconnected` and, by default, stops, so no orphan keeps running.
//!
//! Limits: any proc that reaches a proc may spawn its registered kinds (registration is
//! the opt-in); a remote actor is spawned under the child's name, so two supervisors
//! placing children of one name on one proc collide (`NameTaken`, and the next candidate
//! is tried); and a spawn whose answer is lost (a timeout while the actor was spawned
//! after all) leaves that actor unsupervised there.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::actor::{Actor, BoxError, LinkDied, PanicError, StopReason};
use crate::actor_ref::ActorRef;
use crate::context::Context;
use crate::dispatch::{DeliveryError, RemoteAskError, ReplySlot, refuse};
use crate::error::{AskError, SpawnError};
use crate::id::{ActorId, ProcAddr};
use crate::proc::{Proc, ProcInner};
use crate::remote::RemoteAddr;
use crate::remote::codecs::RemoteActor;
use crate::remote::system::{self, SYSTEM_ACTOR};
use crate::supervision::{ChildSpec, Restart};

/// Spawn a registered kind of actor on the receiving proc (an ask).
pub(crate) const SPAWN: &str = "$sys.Spawn";

/// How long a remote spawn waits for its answer unless told otherwise.
pub const DEFAULT_SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the receiving proc waits for an actor that is finishing its final stop to
/// free the name a spawn asks for (a restart on the same proc races the old actor's end).
const NAME_RELEASE_WAIT: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct SpawnActor {
    kind: String,
    name: String,
    /// The postcard bytes of the kind's arguments.
    args: Vec<u8>,
}

/// Why a proc refused to spawn an actor it was asked for. Travels back to the asking proc
/// as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnRefusal {
    /// No spawnable kind of this name is registered there.
    #[error("no spawnable kind `{kind}` is registered")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
    },
    /// The arguments are not a valid encoding of the kind's argument type.
    #[error("cannot decode the arguments of `{kind}`: {reason}")]
    Decode {
        /// The kind asked for.
        kind: String,
        /// What the decoder said.
        reason: String,
    },
    /// Another live actor has the name there.
    #[error("an actor named `{name}` is already running there")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The factory panicked, or the actor could not be spawned or exposed.
    #[error("cannot spawn `{kind}`: {reason}")]
    SpawnFailed {
        /// The kind asked for.
        kind: String,
        /// What went wrong.
        reason: String,
    },
}

/// A remote spawn, or the placement of a supervised remote child, failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteSpawnError {
    /// The proc was reached and refused.
    #[error("proc {proc} refused the spawn: {refusal}")]
    Refused {
        /// The proc asked.
        proc: ProcAddr,
        /// Why it refused.
        refusal: SpawnRefusal,
    },
    /// The spawn ask itself failed: no route, the connection lost, no answer in time, or
    /// an answer that does not decode.
    #[error("the spawn ask to {proc} failed: {error}")]
    Ask {
        /// The proc asked.
        proc: ProcAddr,
        /// How the ask failed; boxed, as it is the largest and rarest case.
        error: Box<AskError>,
    },
    /// The arguments could not be encoded.
    #[error("cannot encode the arguments of `{kind}`: {reason}")]
    Encode {
        /// The kind.
        kind: String,
        /// What the encoder said.
        reason: String,
    },
    /// A [`RemoteChildSpec`] names no proc to place the child on.
    #[error("the remote child `{name}` has no candidate proc")]
    NoCandidates {
        /// The child's name.
        name: String,
    },
    /// Every candidate proc was tried and none placed the child; one error per attempt,
    /// in the order tried.
    #[error("no candidate proc placed the remote child: {}", list(.attempts))]
    NoPlacement {
        /// Why each attempt failed.
        attempts: Vec<RemoteSpawnError>,
    },
    /// The local stand-in that supervises the remote child could not be spawned.
    #[error(transparent)]
    Local(#[from] SpawnError),
    /// The supervised remote child stopped for good before it was placed.
    #[error("the remote child stopped for good: {reason}")]
    Stopped {
        /// Its last stop reason, as its stand-in saw it.
        reason: StopReason,
    },
}

fn list(errors: &[RemoteSpawnError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// A spawnable kind was registered twice on one proc.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterSpawnableError {
    /// The kind's name is already registered on this proc.
    #[error("spawnable kind `{kind}` is already registered on proc {proc}")]
    KindTaken {
        /// The kind.
        kind: &'static str,
        /// The proc, as text.
        proc: String,
    },
}

// ---------------------------------------------------------------------------------------
// The receiving side: spawnable kinds and the `$sys.Spawn` handler.

/// Spawns the actor made from decoded arguments under a name, exposes it, and returns
/// its id.
type SpawnThunk = Box<dyn FnOnce(&Proc, &str) -> Result<ActorId, SpawnRefusal> + Send>;

/// Decodes a kind's arguments against a proc and makes the actor, ready to spawn.
type Maker = Arc<dyn Fn(&Proc, &[u8]) -> Result<SpawnThunk, SpawnRefusal> + Send + Sync>;

/// The spawnable kinds of one proc.
type Kinds = RwLock<HashMap<&'static str, Maker>>;

/// The kinds of every proc that registered some, by proc.
type Tables = Mutex<Vec<(Weak<ProcInner>, Arc<Kinds>)>>;

/// The kinds of every proc that registered some, beside the procs rather than inside
/// them: few procs have any, and the proc's own struct stays as it is. Entries of dropped
/// procs are pruned on the next registration.
fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Mutex::default)
}

impl Proc {
    /// The spawnable kinds of this proc, made on first registration when `create`.
    fn spawnables(&self, create: bool) -> Option<Arc<Kinds>> {
        // Single pushes and retains: a panic elsewhere cannot leave the list half-changed.
        let mut tables = tables().lock().unwrap_or_else(PoisonError::into_inner);
        // Pointer identity is sound: an entry's `Weak` keeps the allocation, so no other
        // proc can be made at the address of a dropped one while its entry is here.
        let me = Arc::as_ptr(&self.inner);
        if let Some((_, kinds)) = tables.iter().find(|(proc, _)| proc.as_ptr() == me) {
            return Some(kinds.clone());
        }
        if !create {
            return None;
        }
        tables.retain(|(proc, _)| proc.strong_count() > 0);
        let kinds = Arc::new(Kinds::default());
        tables.push((Arc::downgrade(&self.inner), kinds.clone()));
        Some(kinds)
    }

    /// Lets other procs spawn actors of type `A` here under the name `kind`: a spawn
    /// request carries `Args` (postcard), `factory` makes the actor from them, and the
    /// actor is spawned under the requested name and exposed with its
    /// [`RemoteActor::remote_handlers`].
    ///
    /// Refs inside `Args` resolve against this proc. A factory that panics refuses the
    /// spawn with [`SpawnRefusal::SpawnFailed`]; it is not retried.
    ///
    /// ```
    /// use plexus_core::{Actor, Proc, ProcId, RegisterSpawnableError, RemoteActor, RemoteHandlers};
    ///
    /// struct Worker { shard: u32 }
    /// impl Actor for Worker {}
    /// impl RemoteActor for Worker {
    ///     fn remote_handlers() -> RemoteHandlers<Self> { RemoteHandlers::new() }
    /// }
    ///
    /// let proc = Proc::new(ProcId::unique("node"));
    /// proc.register_spawnable("worker", |shard: u32| Worker { shard })?;
    /// let again = proc.register_spawnable("worker", |shard: u32| Worker { shard });
    /// assert!(matches!(again, Err(RegisterSpawnableError::KindTaken { .. })));
    /// # Ok::<(), RegisterSpawnableError>(())
    /// ```
    pub fn register_spawnable<A, Args, F>(
        &self,
        kind: &'static str,
        factory: F,
    ) -> Result<(), RegisterSpawnableError>
    where
        A: RemoteActor,
        Args: DeserializeOwned + 'static,
        F: Fn(Args) -> A + Send + Sync + 'static,
    {
        let maker: Maker = Arc::new(move |proc: &Proc, args: &[u8]| {
            let args: Args = proc
                .decoding(|| postcard::from_bytes(args))
                .map_err(|error| SpawnRefusal::Decode {
                    kind: kind.to_owned(),
                    reason: error.to_string(),
                })?;
            let actor = std::panic::catch_unwind(AssertUnwindSafe(|| factory(args))).map_err(
                |payload| SpawnRefusal::SpawnFailed {
                    kind: kind.to_owned(),
                    reason: PanicError::from_payload(payload).to_string(),
                },
            )?;
            let thunk: SpawnThunk = Box::new(move |proc: &Proc, name: &str| {
                let spawned = proc.spawn(name, actor).map_err(|error| match error {
                    SpawnError::NameTaken { name, .. } => SpawnRefusal::NameTaken { name },
                    other => SpawnRefusal::SpawnFailed {
                        kind: kind.to_owned(),
                        reason: other.to_string(),
                    },
                })?;
                if let Err(error) = proc.expose_remote(&spawned) {
                    spawned.stop();
                    return Err(SpawnRefusal::SpawnFailed {
                        kind: kind.to_owned(),
                        reason: error.to_string(),
                    });
                }
                Ok(spawned.id().clone())
            });
            Ok(thunk)
        });
        let Some(kinds) = self.spawnables(true) else {
            return Ok(());
        };
        let mut kinds = kinds.write().unwrap_or_else(PoisonError::into_inner);
        if kinds.contains_key(kind) {
            return Err(RegisterSpawnableError::KindTaken {
                kind,
                proc: self.id().to_string(),
            });
        }
        kinds.insert(kind, maker);
        Ok(())
    }

    /// The kinds registered on this proc, in no particular order.
    pub fn spawnable_kinds(&self) -> Vec<&'static str> {
        self.spawnables(false).map_or_else(Vec::new, |kinds| {
            kinds
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .copied()
                .collect()
        })
    }

    /// Handles `$sys.Spawn`: answers exactly once, never waits here; the spawn itself runs
    /// on a task of its own (it may wait for the name to be released).
    pub(crate) fn on_spawn(&self, payload: &[u8], reply: ReplySlot) -> Result<(), DeliveryError> {
        let request: SpawnActor = match system::decode(SPAWN, payload) {
            Ok(request) => request,
            Err(error) => return Err(refuse(Some(reply), error)),
        };
        let maker = self.spawnables(false).and_then(|kinds| {
            kinds
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(request.kind.as_str())
                .cloned()
        });
        let Some(maker) = maker else {
            answer_spawn(reply, Err(SpawnRefusal::UnknownKind { kind: request.kind }));
            return Ok(());
        };
        let thunk = match maker(self, &request.args) {
            Ok(thunk) => thunk,
            Err(refusal) => {
                answer_spawn(reply, Err(refusal));
                return Ok(());
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            answer_spawn(
                reply,
                Err(SpawnRefusal::SpawnFailed {
                    kind: request.kind,
                    reason: "no tokio runtime runs where the request arrived".to_owned(),
                }),
            );
            return Ok(());
        };
        let proc = self.clone();
        runtime.spawn(async move {
            proc.wait_for_name(&request.name).await;
            let outcome = thunk(&proc, &request.name);
            match &outcome {
                Ok(id) => tracing::info!(actor = %id, kind = %request.kind, "spawned on request"),
                Err(refusal) => tracing::warn!(kind = %request.kind, %refusal, "spawn refused"),
            }
            answer_spawn(reply, outcome);
        });
        Ok(())
    }

    /// Waits, briefly, for an actor that holds `name` and is in its final stop to free it.
    async fn wait_for_name(&self, name: &str) {
        let Some(holder) = self.registry_cell(name) else {
            return;
        };
        if holder.core().exit.reason().is_some() {
            let _ = tokio::time::timeout(NAME_RELEASE_WAIT, holder.core().exit.wait()).await;
        }
    }
}

fn answer_spawn(reply: ReplySlot, outcome: Result<ActorId, SpawnRefusal>) {
    match postcard::to_allocvec(&outcome) {
        Ok(bytes) => reply.answer(Ok(bytes)),
        Err(error) => reply.answer(Err(RemoteAskError::Encode {
            message: SPAWN.to_owned(),
            reason: error.to_string(),
        })),
    }
}

// ---------------------------------------------------------------------------------------
// The asking side.

impl Proc {
    /// Spawns an actor of the registered `kind` on the proc at `at`, under `name`, and
    /// returns a ref to it. The actor is not supervised (see
    /// [`Context::spawn_remote_child`] for that); it runs until stopped, like a
    /// top-level actor there.
    ///
    /// `A` must be the type the kind makes there; it is not checked. Fails with
    /// [`RemoteSpawnError::Refused`] (unknown kind, arguments that do not decode, a name
    /// taken, a factory that panicked) or [`RemoteSpawnError::Ask`] (no route, connection
    /// lost, no answer within [`DEFAULT_SPAWN_TIMEOUT`]).
    ///
    /// ```
    /// use plexus_core::{Actor, AskError, Location, Proc, ProcAddr, ProcId, RemoteActor};
    /// use plexus_core::{RemoteHandlers, RemoteSpawnError};
    ///
    /// struct Worker;
    /// impl Actor for Worker {}
    /// impl RemoteActor for Worker {
    ///     fn remote_handlers() -> RemoteHandlers<Self> { RemoteHandlers::new() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A proc that has not joined a gateway reaches no other proc.
    /// let proc = Proc::new(ProcId::unique("lonely"));
    /// let node = ProcAddr::new(ProcId::new("node", 1), Location::Local(2));
    /// let error = proc.spawn_remote::<Worker, _>(&node, "w", "worker", &()).await.unwrap_err();
    /// assert!(matches!(
    ///     error,
    ///     RemoteSpawnError::Ask { error, .. } if matches!(*error, AskError::Unroutable { .. })
    /// ));
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future abandons the answer; the actor may still be spawned there.
    pub async fn spawn_remote<A, Args>(
        &self,
        at: &ProcAddr,
        name: &str,
        kind: &str,
        args: &Args,
    ) -> Result<ActorRef<A>, RemoteSpawnError>
    where
        A: RemoteActor,
        Args: Serialize + ?Sized,
    {
        let args = encode_args(kind, args)?;
        self.spawn_remote_encoded(at, name, kind, args, DEFAULT_SPAWN_TIMEOUT)
            .await
    }

    async fn spawn_remote_encoded<A: RemoteActor>(
        &self,
        at: &ProcAddr,
        name: &str,
        kind: &str,
        args: Vec<u8>,
        timeout: Duration,
    ) -> Result<ActorRef<A>, RemoteSpawnError> {
        let recipient = ActorId::new(at.proc.clone(), SYSTEM_ACTOR, 0);
        let failed = |error: AskError| RemoteSpawnError::Ask {
            proc: at.clone(),
            error: Box::new(error),
        };
        let request = SpawnActor {
            kind: kind.to_owned(),
            name: name.to_owned(),
            args,
        };
        let payload =
            postcard::to_allocvec(&request).map_err(|error| RemoteSpawnError::Encode {
                kind: kind.to_owned(),
                reason: error.to_string(),
            })?;
        let system_actor = RemoteAddr {
            actor: recipient.clone(),
            location: at.location.clone(),
        };
        let outcome: Result<ActorId, SpawnRefusal> =
            system::ask(self, system_actor, SPAWN, payload, timeout)
                .await
                .map_err(failed)?;
        let actor = outcome.map_err(|refusal| RemoteSpawnError::Refused {
            proc: at.clone(),
            refusal,
        })?;
        if actor.proc() != &at.proc {
            return Err(failed(AskError::Decode {
                recipient,
                reason: format!("the answer names {actor}, an actor of another proc"),
            }));
        }
        Ok(self.remote_ref(RemoteAddr {
            actor,
            location: at.location.clone(),
        }))
    }
}

fn encode_args<Args: Serialize + ?Sized>(
    kind: &str,
    args: &Args,
) -> Result<Vec<u8>, RemoteSpawnError> {
    postcard::to_allocvec(args).map_err(|error| RemoteSpawnError::Encode {
        kind: kind.to_owned(),
        reason: error.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// Supervised remote children.

/// How to place (and place again) a supervised child on another proc. Pass it to
/// [`Context::spawn_remote_child`].
///
/// The candidates are tried in order for the first placement; a restart tries the proc
/// where the child ran first, unless that proc was lost, then the next candidates.
///
/// ```
/// use plexus_core::{Location, ProcAddr, ProcId, RemoteChildSpec, Restart};
/// use std::time::Duration;
///
/// let node_a = ProcAddr::new(ProcId::new("node-a", 1), "tcp://127.0.0.1:7001".parse()?);
/// let node_b = ProcAddr::new(ProcId::new("node-b", 1), "tcp://127.0.0.1:7002".parse()?);
/// let spec = RemoteChildSpec::new("shard-3", "worker", &3u32)?
///     .on(node_a.clone())
///     .on(node_b)
///     .restart(Restart::Transient)
///     .spawn_timeout(Duration::from_secs(2));
/// assert_eq!(spec.candidates()[0], node_a);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RemoteChildSpec {
    name: String,
    kind: String,
    args: Vec<u8>,
    candidates: Vec<ProcAddr>,
    restart: Restart,
    spawn_timeout: Duration,
}

impl fmt::Debug for RemoteChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteChildSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("args_len", &self.args.len())
            .field("candidates", &self.candidates)
            .field("restart", &self.restart)
            .field("spawn_timeout", &self.spawn_timeout)
            .finish()
    }
}

impl RemoteChildSpec {
    /// A permanent child named `name` (here, for its stand-in, and on the proc that runs
    /// it), made by the registered `kind` from `args`, encoded now. No candidate yet: add
    /// them with [`RemoteChildSpec::on`].
    pub fn new<Args: Serialize + ?Sized>(
        name: impl Into<String>,
        kind: impl Into<String>,
        args: &Args,
    ) -> Result<Self, RemoteSpawnError> {
        let kind = kind.into();
        let args = encode_args(&kind, args)?;
        Ok(RemoteChildSpec {
            name: name.into(),
            kind,
            args,
            candidates: Vec::new(),
            restart: Restart::Permanent,
            spawn_timeout: DEFAULT_SPAWN_TIMEOUT,
        })
    }

    /// Adds a proc to place the child on, after the ones already given.
    pub fn on(mut self, proc: ProcAddr) -> Self {
        self.candidates.push(proc);
        self
    }

    /// Sets the restart policy; default [`Restart::Permanent`].
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// How long one spawn attempt waits for its answer; default
    /// [`DEFAULT_SPAWN_TIMEOUT`]. A placement tries every candidate at most once, so it
    /// takes at most this times the number of candidates.
    pub fn spawn_timeout(mut self, timeout: Duration) -> Self {
        self.spawn_timeout = timeout;
        self
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The procs to place the child on, preferred first.
    pub fn candidates(&self) -> &[ProcAddr] {
        &self.candidates
    }
}

/// Where a supervised remote child is now.
#[non_exhaustive]
pub enum Placement<A: Actor> {
    /// Being placed (at its first start or a restart).
    Placing,
    /// Running on `proc`; `generation` counts placements, from 1.
    Placed {
        /// The ref of this placement.
        actor: ActorRef<A>,
        /// The proc it runs on.
        proc: ProcAddr,
        /// How many placements so far, this one included.
        generation: u32,
    },
    /// The last placement failed on every candidate; the supervisor decides next.
    Failed(RemoteSpawnError),
    /// The placed actor stopped (or its proc was lost); the supervisor decides next.
    Exited(StopReason),
}

impl<A: Actor> fmt::Debug for Placement<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Placing => f.write_str("Placing"),
            Placement::Placed {
                actor,
                proc,
                generation,
            } => f
                .debug_struct("Placed")
                .field("actor", actor)
                .field("proc", proc)
                .field("generation", generation)
                .finish(),
            Placement::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
            Placement::Exited(reason) => f.debug_tuple("Exited").field(reason).finish(),
        }
    }
}

impl<A: Actor> Clone for Placement<A> {
    fn clone(&self) -> Self {
        match self {
            Placement::Placing => Placement::Placing,
            Placement::Placed {
                actor,
                proc,
                generation,
            } => Placement::Placed {
                actor: actor.clone(),
                proc: proc.clone(),
                generation: *generation,
            },
            Placement::Failed(error) => Placement::Failed(error.clone()),
            Placement::Exited(reason) => Placement::Exited(reason.clone()),
        }
    }
}

/// The parent's handle on a supervised remote child: which actor runs it now.
///
/// Each placement is a new remote actor with its own id, so a ref taken before a restart
/// reaches nothing afterwards (its sends fail with `NotFound` or `Disconnected`). Keep
/// this handle (it is cheap to clone) and take [`RemoteChild::current`] when sending, or
/// wait for the next placement with [`RemoteChild::replaced`]. [`RemoteChild::id`] is the
/// id of the local stand-in, which [`Context::children`] lists and which stays the same
/// across restarts, as a local child's id does.
pub struct RemoteChild<A: Actor> {
    id: ActorId,
    placements: watch::Receiver<Placement<A>>,
}

impl<A: Actor> Clone for RemoteChild<A> {
    fn clone(&self) -> Self {
        RemoteChild {
            id: self.id.clone(),
            placements: self.placements.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for RemoteChild<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteChild")
            .field("id", &self.id)
            .field("placement", &*self.placements.borrow())
            .finish()
    }
}

impl<A: Actor> RemoteChild<A> {
    /// The id of the local stand-in that supervises the child.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// The current placement.
    pub fn placement(&self) -> Placement<A> {
        self.placements.borrow().clone()
    }

    /// The ref of the current placement; `None` while the child is being placed, after a
    /// failed placement, or after it stopped.
    pub fn current(&self) -> Option<ActorRef<A>> {
        match &*self.placements.borrow() {
            Placement::Placed { actor, .. } => Some(actor.clone()),
            _ => None,
        }
    }

    /// Waits for the outcome of the current placement: its ref, or why it failed.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only watches.
    pub async fn ready(&self) -> Result<ActorRef<A>, RemoteSpawnError> {
        let mut placements = self.placements.clone();
        let outcome = placements
            .wait_for(|placement| {
                matches!(placement, Placement::Placed { .. } | Placement::Failed(_))
            })
            .await;
        match outcome {
            Ok(placement) => match &*placement {
                Placement::Placed { actor, .. } => Ok(actor.clone()),
                Placement::Failed(error) => Err(error.clone()),
                _ => Err(self.stopped()),
            },
            Err(_) => Err(self.stopped()),
        }
    }

    /// Waits for a placement other than `old`: the ref of the child once it runs again
    /// after a restart. Fails only when the child stops for good first.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only watches.
    pub async fn replaced(&self, old: &ActorRef<A>) -> Result<ActorRef<A>, RemoteSpawnError> {
        let mut placements = self.placements.clone();
        let outcome = placements
            .wait_for(|placement| {
                matches!(placement, Placement::Placed { actor, .. } if actor.id() != old.id())
            })
            .await;
        match outcome {
            Ok(placement) => match &*placement {
                Placement::Placed { actor, .. } => Ok(actor.clone()),
                _ => Err(self.stopped()),
            },
            Err(_) => Err(self.stopped()),
        }
    }

    /// The error of a child whose stand-in has stopped for good.
    fn stopped(&self) -> RemoteSpawnError {
        let reason = match &*self.placements.borrow() {
            Placement::Exited(reason) => reason.clone(),
            Placement::Failed(error) => return error.clone(),
            _ => StopReason::Stopped,
        };
        RemoteSpawnError::Stopped { reason }
    }
}

/// What every incarnation of one stand-in shares: the spec, where to place next, and the
/// channel the parent's [`RemoteChild`] watches.
struct Shared<A: Actor> {
    spec: RemoteChildSpec,
    cursor: Mutex<Cursor>,
    placements: watch::Sender<Placement<A>>,
}

/// Which candidate a placement tries first, and how many placements there were.
#[derive(Default)]
struct Cursor {
    first: usize,
    generation: u32,
}

impl<A: Actor> Shared<A> {
    fn cursor(&self) -> std::sync::MutexGuard<'_, Cursor> {
        // Plain fields set in one statement each: still sound after a panic elsewhere.
        self.cursor.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The local stand-in of a remote child: a supervised child of the parent that places
/// the remote actor when it starts and stops when it does.
struct RemoteStandIn<A: RemoteActor> {
    shared: Arc<Shared<A>>,
    /// The actor of this incarnation and the candidate it runs on.
    placed: Option<(ActorRef<A>, usize)>,
    /// Whether the placed actor is known to have stopped.
    gone: bool,
}

impl<A: RemoteActor> RemoteStandIn<A> {
    async fn place(&mut self, ctx: &mut Context<Self>) -> Result<(), RemoteSpawnError> {
        let spec = &self.shared.spec;
        let count = spec.candidates.len();
        let first = self.shared.cursor().first % count.max(1);
        let mut attempts = Vec::new();
        for step in 0..count {
            let index = (first + step) % count;
            let at = &spec.candidates[index];
            let spawned = ctx
                .proc()
                .spawn_remote_encoded::<A>(
                    at,
                    &spec.name,
                    &spec.kind,
                    spec.args.clone(),
                    spec.spawn_timeout,
                )
                .await;
            match spawned {
                Ok(actor) => {
                    // A link, not a watch: the placed actor also learns of this side's
                    // loss, and stops instead of running on as an orphan.
                    ctx.link(&actor);
                    let generation = {
                        let mut cursor = self.shared.cursor();
                        cursor.first = index;
                        cursor.generation += 1;
                        cursor.generation
                    };
                    tracing::info!(
                        stand_in = %ctx.id(), actor = %actor.id(), proc = %at, generation,
                        "remote child placed"
                    );
                    self.shared.placements.send_replace(Placement::Placed {
                        actor: actor.clone(),
                        proc: at.clone(),
                        generation,
                    });
                    self.placed = Some((actor, index));
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(stand_in = %ctx.id(), proc = %at, %error, "remote child not placed");
                    attempts.push(error);
                }
            }
        }
        Err(RemoteSpawnError::NoPlacement { attempts })
    }
}

impl<A: RemoteActor> Actor for RemoteStandIn<A> {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.shared.placements.send_replace(Placement::Placing);
        if let Err(error) = self.place(ctx).await {
            self.shared
                .placements
                .send_replace(Placement::Failed(error.clone()));
            return Err(Box::new(error));
        }
        Ok(())
    }

    async fn on_link_died(
        &mut self,
        ctx: &mut Context<Self>,
        died: LinkDied,
    ) -> ControlFlow<StopReason> {
        let Some((actor, index)) = &self.placed else {
            return ControlFlow::Continue(());
        };
        if actor.id() != &died.id {
            // The notice of an earlier placement, stopped by an earlier incarnation.
            return ControlFlow::Continue(());
        }
        self.gone = true;
        ctx.release_link(&died.id);
        if died.reason == StopReason::Disconnected {
            // Its proc is lost: the next placement starts with the next candidate.
            self.shared.cursor().first = index + 1;
        }
        ControlFlow::Break(died.reason)
    }

    async fn on_stop(&mut self, ctx: &mut Context<Self>, reason: &StopReason) {
        if let Some((actor, _)) = self.placed.take() {
            if !self.gone {
                // This side ends first (a sibling's restart, a shutdown, an escalation):
                // the placed actor must not outlive its supervision. The link goes first,
                // released with a normal reason; the stop follows in the same flow.
                ctx.release_link(actor.id());
                actor.stop();
            }
        }
        // A failed placement keeps its error: it says more than `StartFailed`.
        self.shared.placements.send_if_modified(|placement| {
            if matches!(placement, Placement::Failed(_)) {
                return false;
            }
            *placement = Placement::Exited(reason.clone());
            true
        });
    }
}

impl<P: Actor> Context<P> {
    /// Spawns a child on another proc and supervises it like a local child.
    ///
    /// The child is made there by the spawnable kind the spec names (see
    /// [`Proc::register_spawnable`]), on the first candidate proc that accepts. Its stops
    /// and the loss of its proc (`Disconnected`) go through this actor's [`Supervision`]
    /// like a local child's failures: the restart policy of the spec, the strategy, the
    /// budget, escalation. A restart places it again, on the same proc, or on the next
    /// candidate when its proc was lost. When its placement fails on every candidate, it
    /// counts as a failure to start ([`StopReason::StartFailed`]).
    ///
    /// Returns at once, before the first placement; [`RemoteChild::ready`] waits for it.
    /// Fails only when the spec names no candidate or the local stand-in cannot be
    /// spawned (its name is taken in this proc).
    ///
    /// [`Supervision`]: crate::Supervision
    ///
    /// ```
    /// use plexus_core::{Actor, BoxError, Context, ProcAddr, RemoteActor, RemoteChild};
    /// use plexus_core::{RemoteChildSpec, RemoteHandlers, Restart};
    ///
    /// struct Worker;
    /// impl Actor for Worker {}
    /// impl RemoteActor for Worker {
    ///     fn remote_handlers() -> RemoteHandlers<Self> { RemoteHandlers::new() }
    /// }
    ///
    /// /// Keeps one worker running on one of its nodes.
    /// struct Boss { nodes: Vec<ProcAddr>, worker: Option<RemoteChild<Worker>> }
    ///
    /// impl Actor for Boss {
    ///     async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
    ///         let mut spec = RemoteChildSpec::new("worker", "worker", &())?
    ///             .restart(Restart::Permanent);
    ///         for node in &self.nodes {
    ///             spec = spec.on(node.clone());
    ///         }
    ///         // Each node registered the kind: `proc.register_spawnable("worker", |()| Worker)`.
    ///         self.worker = Some(ctx.spawn_remote_child(spec)?);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn spawn_remote_child<A: RemoteActor>(
        &mut self,
        spec: RemoteChildSpec,
    ) -> Result<RemoteChild<A>, RemoteSpawnError> {
        if spec.candidates.is_empty() {
            return Err(RemoteSpawnError::NoCandidates { name: spec.name });
        }
        let name = spec.name.clone();
        let restart = spec.restart;
        let (placements, watching) = watch::channel(Placement::Placing);
        let shared = Arc::new(Shared {
            spec,
            cursor: Mutex::new(Cursor::default()),
            placements,
        });
        let child = ChildSpec::new(name, move || RemoteStandIn {
            shared: shared.clone(),
            placed: None,
            gone: false,
        })
        .restart(restart);
        let stand_in = self.spawn_child(child)?;
        Ok(RemoteChild {
            id: stand_in.id().clone(),
            placements: watching,
        })
    }
}
