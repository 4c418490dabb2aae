//! What a handler can do besides changing its actor's state: learn its own identity,
//! spawn supervised children, link and watch, stop, and schedule messages to itself.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::task::AbortHandle;

use crate::actor::{Actor, Handler, LinkDied, LinkKind, StopReason};
use crate::actor_ref::{ActorRef, Target};
use crate::cell::{Cell, ErasedCell, Watcher};
use crate::error::SpawnError;
use crate::id::ActorId;
use crate::observer::ActorProbe;
use crate::proc::{ParentLink, Proc};
use crate::remote::system::{self, RemoteWatcher};
use crate::remote::watch::WatchNotify;
use crate::signal::Signal;
use crate::supervision::{ChildSpec, Supervision, Supervisor};

/// The context of a running actor, passed to every hook and handler.
pub struct Context<A: Actor> {
    pub(crate) myself: ActorRef<A>,
    /// The same actor's cell: the run loop and the watch machinery need the local side.
    pub(crate) cell: Arc<Cell<A>>,
    pub(crate) proc: Proc,
    /// Set by `stop`/`fail`; boxed because it is rare and a reason is several words.
    pub(crate) stop: Option<Box<StopReason>>,
    pub(crate) supervision: Supervision,
    pub(crate) restarts: u32,
    /// A handler was reported to the probe as started and not yet as finished (see the
    /// run loop). Kept here, beside `restarts`, where it fits in padding.
    pub(crate) handler_open: bool,
    pub(crate) probe: Option<Arc<dyn ActorProbe>>,
    /// Children, watchers and tasks; boxed and made on first use, since most actors have
    /// none and every idle actor would otherwise carry the empty collections.
    pub(crate) relations: Option<Box<Relations>>,
}

/// What an actor is tied to besides its mailbox.
#[derive(Default)]
pub(crate) struct Relations {
    pub(crate) supervisor: Supervisor,
    pub(crate) watchers: Vec<(Arc<dyn Watcher>, LinkKind)>,
    pub(crate) tasks: Vec<AbortHandle>,
}

impl<A: Actor> Context<A> {
    pub(crate) fn relations(&mut self) -> &mut Relations {
        self.relations.get_or_insert_with(Box::default)
    }

    /// Records someone to notify of this actor's final stop. The probe hears of the link
    /// from this side too, so a monitor sees a two-way link on both actors.
    pub(crate) fn add_watcher(&mut self, watcher: Arc<dyn Watcher>, kind: LinkKind) {
        if kind == LinkKind::Link {
            if let Some(probe) = &self.probe {
                probe.linked(watcher.watcher_id(), kind);
            }
        }
        self.relations().watchers.push((watcher, kind));
    }

    /// This actor's id.
    pub fn id(&self) -> &ActorId {
        self.myself.id()
    }

    /// A ref to this actor.
    pub fn actor_ref(&self) -> &ActorRef<A> {
        &self.myself
    }

    /// The proc this actor runs in.
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// How many times this actor has been restarted by its supervisor.
    pub fn restart_count(&self) -> u32 {
        self.restarts
    }

    /// Stops this actor with [`StopReason::Normal`] once the current handler returns.
    pub fn stop(&mut self) {
        self.stop = Some(Box::new(StopReason::Normal));
    }

    /// Stops this actor with [`StopReason::Failed`] once the current handler returns; a
    /// supervisor treats it as a failure.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.stop = Some(Box::new(StopReason::Failed(why.into())));
    }

    /// Spawns a child supervised by this actor, under this actor's [`Supervision`].
    ///
    /// The child stops before this actor does (also before a restart of this actor), and
    /// its restarts keep its id and refs.
    pub fn spawn_child<C: Actor>(&mut self, spec: ChildSpec<C>) -> Result<ActorRef<C>, SpawnError> {
        let parent: Arc<dyn ErasedCell> = self.cell.clone();
        let restart = spec.restart;
        let mailbox = spec.mailbox.unwrap_or(self.proc.default_mailbox());
        let child = self.proc.spawn_actor(
            &spec.name,
            spec.first,
            spec.factory,
            mailbox,
            Some(ParentLink {
                cell: parent,
                restart,
                probe: self.probe.clone(),
            }),
        )?;
        self.relations()
            .supervisor
            .add(child.core.id.clone(), child.clone(), restart);
        Ok(ActorRef::local(child))
    }

    /// The ids of this actor's live supervised children, in start order.
    pub fn children(&self) -> Vec<ActorId> {
        self.relations
            .as_ref()
            .map_or_else(Vec::new, |relations| relations.supervisor.child_ids())
    }

    /// Links this actor with `other`: each learns of the other's final stop through
    /// [`Actor::on_link_died`]. By default an abnormal stop of a link stops this actor too.
    /// If `other` has already stopped, the notification arrives at once.
    ///
    /// With a remote `other`, the link also fires with [`StopReason::Disconnected`] when
    /// the connection to its proc is lost, on both sides, and with
    /// [`StopReason::NotFound`] when its proc has no such actor.
    pub fn link<B: Actor>(&mut self, other: &ActorRef<B>) {
        self.register_with(other, LinkKind::Link);
        let back: Arc<dyn Watcher> = match &other.target {
            Target::Local(cell) => cell.clone(),
            Target::Remote(remote) => Arc::new(RemoteWatcher {
                proc: Arc::downgrade(&self.proc.inner),
                watcher: remote.addr.clone(),
                watch_id: None,
            }),
        };
        self.relations().watchers.push((back, LinkKind::Link));
    }

    /// Ends this actor's side of a link with `other`, an actor known to have stopped or
    /// about to be stopped by this one, and tells `other`'s side to drop its half: with a
    /// normal reason, which stops nobody. Without it, an actor that links to a new actor
    /// after each restart (a remote child's stand-in) would keep every earlier link, here
    /// and in the other proc's watch table, until its own final stop.
    pub(crate) fn release_link(&mut self, other: &ActorId) {
        let Some(relations) = self.relations.as_mut() else {
            return;
        };
        let Some(pos) = relations
            .watchers
            .iter()
            .position(|(watcher, kind)| *kind == LinkKind::Link && watcher.watcher_id() == other)
        else {
            return;
        };
        let (watcher, kind) = relations.watchers.remove(pos);
        let released = LinkDied {
            id: self.id().clone(),
            reason: StopReason::Normal,
            kind,
        };
        // A local actor that has stopped refuses it; nothing is left to release then.
        let _ = watcher.deliver_link_died(released);
    }

    /// Watches `other`: this actor learns of its final stop, exactly once, through
    /// [`Actor::on_link_died`]; `other` is not affected by this actor's stop.
    ///
    /// With a remote `other`, the watch also fires with [`StopReason::Disconnected`] when
    /// the connection to its proc is lost, and with [`StopReason::NotFound`] when its
    /// proc has no such actor; still exactly once.
    pub fn watch<B: Actor>(&mut self, other: &ActorRef<B>) {
        self.register_with(other, LinkKind::Watch);
    }

    fn register_with<B: Actor>(&mut self, other: &ActorRef<B>, kind: LinkKind) {
        if let Some(probe) = &self.probe {
            probe.linked(other.id(), kind);
        }
        let watcher: Arc<dyn Watcher> = self.cell.clone();
        let other = match &other.target {
            Target::Local(cell) => cell,
            Target::Remote(remote) => {
                let notify = WatchNotify::Actor(watcher);
                let me = Some(self.id().clone());
                system::watch(&self.proc, remote.addr.clone(), kind, notify, me).keep();
                return;
            }
        };
        if other.core.signal(Signal::Watch { watcher, kind }).is_err() {
            // Its signal queue closes only after its reason is set, so a refused
            // registration always finds the reason: the notification is never lost.
            let reason = other
                .core
                .exit
                .reason()
                .cloned()
                .unwrap_or(StopReason::Stopped);
            let died = LinkDied {
                id: other.core.id.clone(),
                reason,
                kind,
            };
            let _ = Watcher::deliver_link_died(&*self.cell, died);
        }
    }

    /// Sends `msg` to this actor after `delay`. The timer is cancelled when this
    /// incarnation ends or through the returned handle.
    pub fn send_after<M>(&mut self, delay: Duration, msg: M) -> TaskHandle
    where
        A: Handler<M>,
        M: Send + 'static,
    {
        let target = self.myself.downgrade();
        self.track(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(target) = target.upgrade() {
                let _ = target.tell(msg).await;
            }
        }))
    }

    /// Sends a message made by `make` to this actor every `period`, the first after one
    /// period. A tick waits for mailbox room, and ticks missed meanwhile are skipped, so
    /// a busy actor is not flooded. Cancelled when this incarnation ends or through the
    /// returned handle.
    pub fn send_interval<M, F>(&mut self, period: Duration, mut make: F) -> TaskHandle
    where
        A: Handler<M>,
        M: Send + 'static,
        F: FnMut() -> M + Send + 'static,
    {
        let target = self.myself.downgrade();
        self.track(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Some(target) = target.upgrade() else {
                    return;
                };
                if target.tell(make()).await.is_err() {
                    return;
                }
            }
        }))
    }

    /// Feeds every item of `stream` to this actor as a message, in order, waiting for
    /// mailbox room. Stops at the end of the stream, when this incarnation ends, or
    /// through the returned handle.
    pub fn attach_stream<S>(&mut self, stream: S) -> TaskHandle
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
        A: Handler<S::Item>,
    {
        let target = self.myself.clone();
        self.track(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if target.tell(item).await.is_err() {
                    return;
                }
            }
        }))
    }

    fn track(&mut self, task: tokio::task::JoinHandle<()>) -> TaskHandle {
        let tasks = &mut self.relations().tasks;
        tasks.retain(|task| !task.is_finished());
        let abort = task.abort_handle();
        tasks.push(abort.clone());
        TaskHandle(abort)
    }

    pub(crate) fn abort_tasks(&mut self) {
        if let Some(relations) = self.relations.as_mut() {
            for task in relations.tasks.drain(..) {
                task.abort();
            }
        }
    }
}

/// Cancels a timer or an attached stream started from a [`Context`].
#[derive(Debug, Clone)]
pub struct TaskHandle(AbortHandle);

impl TaskHandle {
    /// Stops the timer or stream; messages it already sent stay queued.
    pub fn cancel(&self) {
        self.0.abort();
    }

    /// Whether it has ended (cancelled, stream exhausted, or one-shot timer fired).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}
