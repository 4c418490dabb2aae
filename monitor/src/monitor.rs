//! The monitor: the observer installed on procs, its registry of actor monitors, the
//! graves of stopped actors and their reaping, snapshots and the live wait-for graph.
//!
//! The registry is a mutex-guarded map taken on spawn, on stop and for a snapshot; never
//! per message. Lock order: an actor monitor's own locks may be taken while the registry
//! lock is held, never the reverse, so a probe releases its locks before it reports a stop.
//!
//! An actor's life in the registry:
//!
//! ```text
//! spawned ─▶ live ─▶ stopped (grave, in stop order) ─▶ reaped
//!                                 │                      ▲
//!                                 ├─ snapshot(window): every grave older than the window
//!                                 └─ spawn: at most `sweep_batch` graves older than
//!                                           `retention`
//! ```
//!
//! Reaping moves an actor's handled count into a running total, so the totals of later
//! snapshots never go down.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use plexus_core::{ActorId, ActorInfo, ActorProbe, ActorStatus, Observer};
use serde::{Deserialize, Serialize};

use crate::clock::CoarseClock;
use crate::graph::{Deadlock, WaitForGraph};
use crate::probe::ActorMonitor;
use crate::snapshot::{Snapshot, Totals};
use crate::sync::lock;

/// Settings of a [`Monitor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// How long a stopped actor is kept when nobody takes snapshots; default 5 minutes.
    /// Snapshots reap with their own, usually shorter, grave window; this only bounds
    /// memory, so keep it longer than any window a console uses.
    pub retention: Duration,
    /// How many stopped actors past `retention` one spawn may reap; default 8. Every spawn
    /// pays for at most this many, and as each actor stops once, graves are reaped at
    /// least as fast as they are made: memory stays bounded by the actors stopped within
    /// `retention`.
    pub sweep_batch: usize,
    /// How often the monitor's coarse clock advances; default 10 ms, at least 100 µs. A
    /// handler's or an ask's start is read from it instead of the system clock (which
    /// costs tens of nanoseconds per message on some virtual machines), so an elapsed time
    /// in a snapshot is never short and over by about one tick at most. The clock is a
    /// thread that wakes every tick for as long as the monitor or an actor it follows
    /// lives; on a machine whose cores are all busy every wake-up displaces an actor's
    /// thread, so a finer tick costs throughput (a 1 ms tick made about a fifth more
    /// context switches on a 2-core machine than 10 ms) for precision that stuck-handler
    /// reports, counted in seconds, do not need.
    pub clock_tick: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            retention: Duration::from_secs(300),
            sweep_batch: 8,
            clock_tick: Duration::from_millis(10),
        }
    }
}

impl MonitorConfig {
    /// Sets how long stopped actors are kept when nobody takes snapshots.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets how many stopped actors one spawn may reap.
    pub fn sweep_batch(mut self, sweep_batch: usize) -> Self {
        self.sweep_batch = sweep_batch;
        self
    }

    /// Sets how often the coarse clock advances.
    pub fn clock_tick(mut self, clock_tick: Duration) -> Self {
        self.clock_tick = clock_tick;
        self
    }
}

/// Follows every actor of the procs it is installed on: status, mailbox, handlers,
/// restarts, links and pending asks. Cheap to clone; clones are the same monitor.
///
/// Install it with [`ProcBuilder::observer`](plexus_core::ProcBuilder::observer) (one
/// monitor may serve several procs), then read it with [`Monitor::snapshot`] and
/// [`Monitor::deadlocks`].
///
/// ```
/// use plexus_core::{Actor, Context, Handler, Proc, ProcId};
/// use plexus_monitor::Monitor;
/// use std::time::Duration;
///
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// struct Add(u64);
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
/// let monitor = Monitor::new();
/// let proc = Proc::builder(ProcId::unique("app"))
///     .observer(monitor.observer())
///     .build();
/// let counter = proc.spawn("counter", Counter(0))?;
/// counter.tell(Add(1)).await?;
/// assert_eq!(counter.ask(Add(2)).await?, 3);
///
/// let snapshot = monitor.snapshot(Duration::from_secs(10));
/// let actor = snapshot.actor(counter.id()).ok_or("counter not monitored")?;
/// assert_eq!(actor.handled, 2);
/// assert_eq!(snapshot.totals.alive, 1);
/// assert!(monitor.deadlocks().is_empty());
/// print!("{}", plexus_monitor::render_table(&snapshot));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

/// What the monitor and its actor monitors share.
pub(crate) struct Shared {
    /// The clock of every actor monitor.
    pub(crate) clock: Arc<CoarseClock>,
    config: MonitorConfig,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    actors: HashMap<ActorId, Arc<ActorMonitor>>,
    /// Stopped actors in stop order (near enough: two stops racing may swap, which only
    /// delays one reaping).
    graves: VecDeque<Grave>,
    spawned: u64,
    stopped: u64,
    /// Messages handled by actors no longer in `actors`.
    retired_messages: u64,
}

struct Grave {
    monitor: Arc<ActorMonitor>,
    stopped_at: u64,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new()
    }
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = lock(&self.shared.registry);
        f.debug_struct("Monitor")
            .field("config", &self.shared.config)
            .field("actors", &registry.actors.len())
            .field("graves", &registry.graves.len())
            .finish()
    }
}

impl Monitor {
    /// A monitor with the default [`MonitorConfig`].
    pub fn new() -> Self {
        Monitor::with_config(MonitorConfig::default())
    }

    /// A monitor with the given settings.
    pub fn with_config(config: MonitorConfig) -> Self {
        #[cfg(feature = "metrics")]
        crate::metrics::describe();
        Monitor {
            shared: Arc::new(Shared {
                clock: CoarseClock::start(config.clock_tick),
                config,
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.shared.config
    }

    /// This monitor as an observer, to pass to
    /// [`ProcBuilder::observer`](plexus_core::ProcBuilder::observer).
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(self.clone())
    }

    /// Every actor followed now, plus the totals.
    ///
    /// Actors stopped for at least `grave_window` are reaped first (for good: a later
    /// snapshot with a longer window does not bring them back); the others stay visible
    /// with their stop reason, so a console sees them die. Takes the registry lock only to
    /// reap and to copy the list; each actor is read after.
    pub fn snapshot(&self, grave_window: Duration) -> Snapshot {
        let now = self.shared.clock.now();
        let (monitors, mut totals) = {
            let mut registry = lock(&self.shared.registry);
            registry.reap(now, grave_window, usize::MAX);
            let totals = Totals {
                alive: registry.spawned.saturating_sub(registry.stopped),
                spawned: registry.spawned,
                stopped: registry.stopped,
                messages: registry.retired_messages,
            };
            (registry.monitors(), totals)
        };
        let by_id: HashMap<&ActorId, &Arc<ActorMonitor>> = monitors
            .iter()
            .map(|monitor| (monitor.id(), monitor))
            .collect();
        let link_stopped = |id: &ActorId| {
            by_id
                .get(id)
                .is_some_and(|monitor| monitor.status() == ActorStatus::Stopped)
        };
        let mut actors: Vec<_> = monitors
            .iter()
            .map(|monitor| monitor.snapshot(now, link_stopped))
            .collect();
        actors.sort_by(|a, b| a.id.cmp(&b.id));
        totals.messages = actors.iter().fold(totals.messages, |sum, actor| {
            sum.saturating_add(actor.handled)
        });
        Snapshot {
            taken_at: SystemTime::now(),
            actors,
            totals,
        }
    }

    /// The monitor of one actor, live or stopped within the retention, to read a figure or
    /// two without a whole snapshot.
    pub fn actor(&self, id: &ActorId) -> Option<Arc<ActorMonitor>> {
        lock(&self.shared.registry).actors.get(id).cloned()
    }

    /// The wait-for graph now: an edge from every actor awaiting an ask inside its handler
    /// to the actor it asked.
    pub fn wait_for_graph(&self) -> WaitForGraph {
        let monitors = lock(&self.shared.registry).monitors();
        let mut graph = WaitForGraph::new();
        for monitor in &monitors {
            for target in monitor.wait_targets() {
                graph.add_edge(monitor.id().clone(), target);
            }
        }
        graph
    }

    /// Every cycle of the wait-for graph now: actors that each await an ask to the next.
    ///
    /// Only asks made from inside an actor's handler are seen (core reports no others), and
    /// only among the procs this monitor is installed on; merge snapshots of several
    /// monitors with [`Snapshot::merge`] to see cycles across them.
    ///
    /// Edges are read actor by actor, not at one instant, so a cycle of asks that each
    /// lasted microseconds can show once without having existed; the elapsed times in a
    /// [`Snapshot`]'s pending asks tell a real deadlock, whose edges all keep growing.
    pub fn deadlocks(&self) -> Vec<Deadlock> {
        self.wait_for_graph().deadlocks()
    }

    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        lock(&self.shared.registry).actors.len()
    }
}

impl Observer for Monitor {
    fn actor_spawned(&self, info: &ActorInfo) -> Option<Arc<dyn ActorProbe>> {
        let config = self.shared.config;
        let parent = {
            let mut registry = lock(&self.shared.registry);
            registry.reap(
                self.shared.clock.now(),
                config.retention,
                config.sweep_batch,
            );
            info.parent
                .as_ref()
                .and_then(|parent| registry.actors.get(parent))
                .map(Arc::downgrade)
        };
        let monitor = Arc::new(ActorMonitor::new(info, &self.shared, parent.clone()));
        {
            let mut registry = lock(&self.shared.registry);
            registry.spawned += 1;
            if let Some(earlier) = registry.actors.insert(info.id.clone(), monitor.clone()) {
                // Two procs with one id under one monitor: the earlier actor is no longer
                // listed, but what it handled stays counted.
                tracing::warn!(actor = %info.id, "actor id spawned twice under one monitor");
                registry.retired_messages =
                    registry.retired_messages.saturating_add(earlier.handled());
            }
        }
        // The child adds itself to its parent here, before its task can run and stop, so
        // its removal on stop always finds the entry.
        if let Some(parent) = parent.as_ref().and_then(std::sync::Weak::upgrade) {
            parent.add_child(&info.id);
        }
        Some(monitor)
    }
}

impl Shared {
    /// Counts a stopped actor and lays it in the graves. Called without any actor lock held.
    pub(crate) fn bury(&self, actor: &ActorMonitor) {
        let stopped_at = actor.stopped_at().unwrap_or_else(|| self.clock.now());
        let mut registry = lock(&self.registry);
        registry.stopped += 1;
        let listed = registry
            .actors
            .get(actor.id())
            .filter(|listed| std::ptr::eq(Arc::as_ptr(listed), actor))
            .cloned();
        if let Some(monitor) = listed {
            registry.graves.push_back(Grave {
                monitor,
                stopped_at,
            });
        }
    }
}

impl Registry {
    /// The listed actors' monitors, read once the lock is released.
    fn monitors(&self) -> Vec<Arc<ActorMonitor>> {
        self.actors.values().cloned().collect()
    }

    /// Reaps up to `budget` actors stopped for at least `window`, oldest first.
    fn reap(&mut self, now: u64, window: Duration, budget: usize) {
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let mut reaped = 0usize;
        while reaped < budget {
            let Some(grave) = self.graves.front() else {
                break;
            };
            if now.saturating_sub(grave.stopped_at) < window {
                break;
            }
            let Some(grave) = self.graves.pop_front() else {
                break;
            };
            let id = grave.monitor.id();
            if self
                .actors
                .get(id)
                .is_some_and(|listed| Arc::ptr_eq(listed, &grave.monitor))
            {
                self.actors.remove(id);
                self.retired_messages = self
                    .retired_messages
                    .saturating_add(grave.monitor.handled());
            }
            reaped += 1;
        }
        if reaped > 0 {
            tracing::debug!(reaped, graves = self.graves.len(), "reaped stopped actors");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::{Actor, Proc, ProcId};

    struct Idle;
    impl Actor for Idle {}

    /// With no snapshot ever taken, spawns reap old graves a few at a time, so the
    /// registry stays bounded by the live actors plus one batch.
    #[tokio::test]
    async fn spawns_sweep_graves_in_bounded_batches() {
        let monitor = Monitor::with_config(
            MonitorConfig::default()
                .retention(Duration::ZERO)
                .sweep_batch(2),
        );
        let proc = Proc::builder(ProcId::unique("sweep"))
            .observer(monitor.observer())
            .build();
        for i in 0..10 {
            let idle = proc.spawn(&format!("idle-{i}"), Idle).unwrap();
            idle.stop();
            idle.wait_for_stop().await;
        }
        // Each spawn reaped what the spawn before it left: only the last grave remains.
        assert_eq!(monitor.registered(), 1);

        let mut stopped = Vec::new();
        for i in 0..6 {
            let idle = proc.spawn(&format!("batch-{i}"), Idle).unwrap();
            stopped.push(idle);
        }
        for idle in &stopped {
            idle.stop();
            idle.wait_for_stop().await;
        }
        assert_eq!(monitor.registered(), 6);
        let keep = proc.spawn("keep", Idle).unwrap();
        assert_eq!(
            monitor.registered(),
            5,
            "one spawn reaped other than its batch"
        );
        let totals = monitor.snapshot(Duration::from_secs(60)).totals;
        assert_eq!((totals.spawned, totals.stopped, totals.alive), (17, 16, 1));
        keep.stop();
    }
}
