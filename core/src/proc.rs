//! A proc: an isolated actor runtime with an id, a registry of live actors by name, the
//! default mailbox, the undeliverable handler and the observer.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::Supervision;
use crate::actor::Actor;
use crate::actor_ref::ActorRef;
use crate::cell::{Cell, CellCore, ErasedCell, ExitState};
use crate::context::Context;
use crate::dispatch::Exposure;
use crate::envelope::EnvelopeBox;
use crate::error::{SpawnError, Undeliverable, UndeliverableReason};
use crate::id::{ActorId, ProcId};
use crate::mailbox::{Admission, Mailbox, MailboxGauge};
use crate::observer::{ActorInfo, Observer};
use crate::remote::{RemoteRoute, RemoteWatches};
use crate::runner::{CURRENT_ACTOR, Runner};
use crate::signal::SignalQueue;
use crate::signal::StopRequest;
use crate::supervision::{Factory, Restart};

type UndeliverableHandler = Box<dyn Fn(Undeliverable) + Send + Sync>;

/// An isolated actor runtime: spawns actors, owns their mailboxes, delivers locally without
/// serialization. Cheap to clone; every clone is the same proc.
///
/// ```
/// use plexus_core::{Actor, Proc, ProcId};
///
/// struct Idle;
/// impl Actor for Idle {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let proc = Proc::new(ProcId::new("app", 1));
/// let idle = proc.spawn("idle", Idle)?;
/// assert_eq!(proc.lookup::<Idle>("idle"), Some(idle.clone()));
/// // The index starts at a random point per proc, so a relaunch under the same id never
/// // hands out an earlier launch's ids again.
/// assert_eq!(idle.id().to_string(), format!("app#1/idle.{}", idle.id().index()));
/// proc.shutdown().await;
/// assert!(proc.lookup::<Idle>("idle").is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Proc {
    pub(crate) inner: Arc<ProcInner>,
}

pub(crate) struct ProcInner {
    id: ProcId,
    /// Keyed by name with a fast seeded hash: SipHash was a tenth of the cost of a spawn.
    registry: DashMap<Arc<str>, Arc<dyn ErasedCell>, foldhash::fast::RandomState>,
    /// Remote handler tables of exposed actors, by actor name; see `dispatch`.
    exposures: DashMap<Arc<str>, Arc<dyn Exposure>, foldhash::fast::RandomState>,
    /// The next actor's index; starts at a random point (see [`first_index`]).
    next_index: AtomicU64,
    default_mailbox: Mailbox,
    undeliverable: Option<UndeliverableHandler>,
    undeliverable_count: AtomicU64,
    observer: Option<Arc<dyn Observer>>,
    shut_down: AtomicBool,
    /// The way out to other procs, installed by a gateway; see `remote`.
    pub(crate) route: RwLock<Option<Arc<dyn RemoteRoute>>>,
    /// Remote watches and links of this proc's actors, waiting for their notice.
    pub(crate) watches: RemoteWatches,
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proc")
            .field("id", &self.inner.id)
            .field("actors", &self.inner.registry.len())
            .finish_non_exhaustive()
    }
}

impl Proc {
    /// A proc with default settings: bounded mailboxes of
    /// [`DEFAULT_MAILBOX_CAPACITY`](crate::DEFAULT_MAILBOX_CAPACITY), undeliverable
    /// messages logged and counted, no observer.
    pub fn new(id: ProcId) -> Self {
        Proc::builder(id).build()
    }

    /// A builder to change the defaults.
    pub fn builder(id: ProcId) -> ProcBuilder {
        ProcBuilder {
            id,
            default_mailbox: Mailbox::default(),
            undeliverable: None,
            observer: None,
        }
    }

    /// This proc's id.
    pub fn id(&self) -> &ProcId {
        &self.inner.id
    }

    /// The mailbox actors get unless told otherwise.
    pub fn default_mailbox(&self) -> Mailbox {
        self.inner.default_mailbox
    }

    /// Spawns a top-level actor under a name unique among this proc's live actors, with
    /// the default mailbox. Must be called within a tokio runtime.
    pub fn spawn<A: Actor>(&self, name: &str, actor: A) -> Result<ActorRef<A>, SpawnError> {
        self.spawn_with(name, actor, self.inner.default_mailbox)
    }

    /// Spawns a top-level actor with the given mailbox.
    pub fn spawn_with<A: Actor>(
        &self,
        name: &str,
        actor: A,
        mailbox: Mailbox,
    ) -> Result<ActorRef<A>, SpawnError> {
        self.spawn_actor(name, actor, None, mailbox, None)
            .map(ActorRef::local)
    }

    /// The live actor of type `A` registered under `name`, if any.
    pub fn lookup<A: Actor>(&self, name: &str) -> Option<ActorRef<A>> {
        let cell = self.inner.registry.get(name)?.value().clone();
        let cell = cell.as_any().downcast::<Cell<A>>().ok()?;
        (!cell.core.exit.is_finished()).then_some(ActorRef::local(cell))
    }

    /// The ids of every live actor, in no particular order.
    pub fn actor_ids(&self) -> Vec<ActorId> {
        self.inner
            .registry
            .iter()
            .map(|entry| entry.value().core().id.clone())
            .collect()
    }

    /// How many tells could not be delivered since the proc started.
    pub fn undeliverable_count(&self) -> u64 {
        self.inner.undeliverable_count.load(Ordering::Relaxed)
    }

    /// Stops every top-level actor (each stops its children first) and waits until all
    /// have stopped. Later spawns fail with [`SpawnError::ProcShutDown`].
    pub async fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
        let top_level: Vec<Arc<dyn ErasedCell>> = self
            .inner
            .registry
            .iter()
            .filter(|entry| !entry.value().core().supervised)
            .map(|entry| entry.value().clone())
            .collect();
        for cell in &top_level {
            let _ = cell.core().signals.request_stop(StopRequest::Shutdown);
        }
        for cell in &top_level {
            cell.core().exit.wait().await;
        }
    }

    pub(crate) fn spawn_actor<A: Actor>(
        &self,
        name: &str,
        actor: A,
        factory: Factory<A>,
        mailbox: Mailbox,
        parent: Option<ParentLink>,
    ) -> Result<Arc<Cell<A>>, SpawnError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(SpawnError::ProcShutDown {
                proc: self.inner.id.to_string(),
            });
        }
        let name: Arc<str> = Arc::from(name);
        let index = self.inner.next_index.fetch_add(1, Ordering::Relaxed);
        let id = ActorId::new(self.inner.id.clone(), name.clone(), index);
        let (tx, rx) = mpsc::unbounded_channel();
        let cell = Arc::new(Cell {
            core: CellCore {
                id,
                admission: Admission::new(mailbox),
                signals: SignalQueue::new(),
                exit: ExitState::new(),
                proc: Arc::downgrade(&self.inner),
                supervised: parent.is_some(),
                probe: OnceLock::new(),
            },
            tx,
        });
        match self.inner.registry.entry(name.clone()) {
            dashmap::Entry::Occupied(_) => {
                return Err(SpawnError::NameTaken {
                    name: name.to_string(),
                    proc: self.inner.id.to_string(),
                });
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(cell.clone());
            }
        }
        let myself = ActorRef::local(cell.clone());
        let probe = self.inner.observer.as_ref().and_then(|observer| {
            observer.actor_spawned(&ActorInfo {
                id: myself.id().clone(),
                actor_type: std::any::type_name::<A>(),
                parent: parent.as_ref().map(|parent| parent.cell.core().id.clone()),
                mailbox,
                gauge: MailboxGauge(cell.clone()),
                restart: parent.as_ref().map(|parent| parent.restart),
            })
        });
        if let Some(probe) = &probe {
            // Set before the task exists, so every ask the actor makes finds it.
            let _ = cell.core.probe.set(Box::new(Arc::downgrade(probe)));
        }
        // Boxed: the task's future then holds a pointer instead of copies of the runner.
        let runner = Box::new(Runner {
            factory,
            rx,
            ctx: Context {
                myself: myself.clone(),
                cell: cell.clone(),
                proc: self.clone(),
                stop: None,
                supervision: Supervision::default(),
                restarts: 0,
                handler_open: false,
                probe: probe.clone(),
                relations: None,
            },
            parent: parent.map(|parent| {
                // Told before the child's task exists, so the parent's probe never hears of
                // a child after that child has already stopped.
                if let Some(probe) = &parent.probe {
                    probe.child_spawned(myself.id());
                }
                parent.cell
            }),
        });
        // The actor's id rides with its task, so remote sends from it name their sender.
        let current: Arc<dyn ErasedCell> = cell.clone();
        drop(runtime.spawn(CURRENT_ACTOR.scope(current, runner.run(actor))));
        Ok(cell)
    }

    /// The remote handler tables of exposed actors.
    pub(crate) fn exposures(
        &self,
    ) -> &DashMap<Arc<str>, Arc<dyn Exposure>, foldhash::fast::RandomState> {
        &self.inner.exposures
    }

    /// The cell registered under `name`, of any type, live or stopping.
    pub(crate) fn registry_cell(&self, name: &str) -> Option<Arc<dyn ErasedCell>> {
        self.inner
            .registry
            .get(name)
            .map(|entry| entry.value().clone())
    }

    /// Whether a live actor of any type is registered under `name`.
    pub(crate) fn has_actor(&self, name: &str) -> bool {
        self.inner
            .registry
            .get(name)
            .is_some_and(|cell| !cell.core().exit.is_finished())
    }

    /// Removes `id` from the registry if the entry is still this very cell (a new actor may
    /// already have taken the name).
    pub(crate) fn unregister<C: ErasedCell>(&self, id: &ActorId, cell: &Arc<C>) {
        let ours = Arc::as_ptr(cell) as *const ();
        self.inner.registry.remove_if(id.name(), |_, entry| {
            std::ptr::eq(Arc::as_ptr(entry) as *const (), ours)
        });
    }
}

/// What a supervised child is told of its parent at spawn.
pub(crate) struct ParentLink {
    pub(crate) cell: Arc<dyn ErasedCell>,
    pub(crate) restart: Restart,
    /// The parent's probe, told of the child before the child's task starts.
    pub(crate) probe: Option<Arc<dyn crate::observer::ActorProbe>>,
}

impl ProcInner {
    pub(crate) fn undeliverable(&self, undeliverable: Undeliverable) {
        self.undeliverable_count.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            recipient = %undeliverable.recipient,
            message_type = undeliverable.message_type,
            reason = %undeliverable.reason,
            "message undeliverable"
        );
        if let Some(handler) = &self.undeliverable {
            handler(undeliverable);
        }
    }
}

/// Hands a message that will never be handled to its proc: an ask is answered with an
/// error, a tell goes to the undeliverable handler.
pub(crate) fn report_undeliverable<A: Actor>(
    core: &CellCore,
    mut envelope: EnvelopeBox<A>,
    reason: UndeliverableReason,
) {
    let Some(undeliverable) = envelope.undeliverable(&core.id, reason) else {
        return;
    };
    match core.proc.upgrade() {
        Some(proc) => proc.undeliverable(undeliverable),
        None => tracing::warn!(
            recipient = %undeliverable.recipient,
            message_type = undeliverable.message_type,
            reason = %undeliverable.reason,
            "message undeliverable after its proc was dropped"
        ),
    }
}

/// Builds a [`Proc`] with settings other than the defaults.
///
/// ```
/// use plexus_core::{Mailbox, Proc, ProcId};
/// use std::sync::{Arc, Mutex};
///
/// let lost = Arc::new(Mutex::new(Vec::new()));
/// let proc = Proc::builder(ProcId::unique("svc"))
///     .default_mailbox(Mailbox::Bounded(256))
///     .on_undeliverable({
///         let lost = lost.clone();
///         move |u| lost.lock().unwrap().push(u.recipient)
///     })
///     .build();
/// assert_eq!(proc.default_mailbox(), Mailbox::Bounded(256));
/// ```
pub struct ProcBuilder {
    id: ProcId,
    default_mailbox: Mailbox,
    undeliverable: Option<UndeliverableHandler>,
    observer: Option<Arc<dyn Observer>>,
}

impl fmt::Debug for ProcBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcBuilder")
            .field("id", &self.id)
            .field("default_mailbox", &self.default_mailbox)
            .finish_non_exhaustive()
    }
}

impl ProcBuilder {
    /// The mailbox of actors spawned without one; default
    /// `Mailbox::Bounded(DEFAULT_MAILBOX_CAPACITY)`.
    pub fn default_mailbox(mut self, mailbox: Mailbox) -> Self {
        self.default_mailbox = mailbox;
        self
    }

    /// Called with every tell that could not be delivered, after it is counted and logged.
    /// It runs on the task that found the message undeliverable, so keep it short.
    pub fn on_undeliverable(
        mut self,
        handler: impl Fn(Undeliverable) + Send + Sync + 'static,
    ) -> Self {
        self.undeliverable = Some(Box::new(handler));
        self
    }

    /// Installs an observer (a monitor) that hears of every actor spawned.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Builds the proc.
    pub fn build(self) -> Proc {
        Proc {
            inner: Arc::new(ProcInner {
                id: self.id,
                registry: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                exposures: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                next_index: AtomicU64::new(first_index()),
                default_mailbox: self.default_mailbox,
                undeliverable: self.undeliverable,
                undeliverable_count: AtomicU64::new(0),
                observer: self.observer,
                shut_down: AtomicBool::new(false),
                route: RwLock::new(None),
                watches: RemoteWatches::default(),
            }),
        }
    }
}

/// Where a proc's actor indices start: a random point in a 32-bit range, drawn per proc.
///
/// A proc restarted under the same [`ProcId`] is a new launch (design §3, promise 8): refs
/// and asks bound to actors of the earlier launch must get `NotFound`, never reach the new
/// actors that took the same names. Remote delivery checks the full actor id, index
/// included, so indices that do not repeat across launches are enough. A stale ref reaches
/// a new actor only if the new launch gave the same name the same index: with starts 2³²
/// apart on average that takes both launches' ranges to meet and then the name to land on
/// that very index. 32 bits keep ids short enough to read (`app#1/worker.2913075741`), and
/// counting up from there cannot overflow.
fn first_index() -> u64 {
    crate::id::random_u64() >> 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{DeliveryError, RemoteHandlers};

    struct Idle;
    impl Actor for Idle {}

    /// A proc relaunched under the same id hands out none of the earlier launch's actor
    /// ids, so remote delivery to an id of the earlier launch finds no actor even though
    /// an actor of that name runs again.
    #[tokio::test]
    async fn a_relaunch_under_the_same_id_refuses_the_earlier_launchs_ids() {
        let earlier = Proc::new(ProcId::new("svc", 1));
        let stale = earlier.spawn("sink", Idle).unwrap().id().clone();
        earlier.shutdown().await;

        let relaunched = Proc::new(ProcId::new("svc", 1));
        let sink = relaunched.spawn("sink", Idle).unwrap();
        relaunched.expose(&sink, RemoteHandlers::new()).unwrap();
        assert_eq!(stale.proc(), sink.id().proc());
        assert_ne!(stale, *sink.id());

        let refused = relaunched.deliver_remote_to(&stale, "svc.Ping", &[], None);
        assert!(
            matches!(refused, Err(DeliveryError::NotFound { .. })),
            "{refused:?}"
        );
        // The current id reaches the actor, which then has no handler for the name.
        let current = relaunched.deliver_remote_to(sink.id(), "svc.Ping", &[], None);
        assert!(
            matches!(current, Err(DeliveryError::UnknownMessage { .. })),
            "{current:?}"
        );
        relaunched.shutdown().await;
    }
}
