//! The serializable view of a monitor at one instant: every actor it follows, their
//! wait-for edges and the monitor's totals.
//!
//! A snapshot is plain data (serde), so it can travel to a console in another process,
//! and snapshots of several procs [merge](Snapshot::merge) into one view in which a
//! wait-for cycle that crosses procs shows up (see [`WaitForGraph`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use plexus_core::{ActorId, ActorStatus, LinkKind, Mailbox, Restart, StopReason, Supervision};
use serde::{Deserialize, Serialize};

use crate::graph::{Deadlock, WaitForGraph};

/// Every actor a monitor follows, plus its totals, at one instant.
///
/// Built by [`Monitor::snapshot`](crate::Monitor::snapshot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken (the latest of the parts, for a merged snapshot).
    pub taken_at: SystemTime,
    /// The actors, ordered by id: live ones and those stopped within the grave window.
    pub actors: Vec<ActorSnapshot>,
    /// Counts since the monitor started (summed over the parts of a merged snapshot).
    pub totals: Totals,
}

/// Counts since a monitor started. `spawned`, `stopped` and `messages` never go down:
/// reaping a stopped actor from the snapshot keeps its share in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Actors spawned and not yet stopped for good (`spawned - stopped`).
    pub alive: u64,
    /// Actors spawned.
    pub spawned: u64,
    /// Actors stopped for good.
    pub stopped: u64,
    /// Messages handled, by live, stopped and reaped actors alike.
    pub messages: u64,
}

/// One actor at the instant of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActorSnapshot {
    /// Its id; the same across supervised restarts.
    pub id: ActorId,
    /// The Rust type name of the actor.
    pub actor_type: String,
    /// Its lifecycle phase.
    pub status: ActorStatus,
    /// Why it stopped, once stopped for good.
    pub stop_reason: Option<StopReason>,
    /// How long ago it stopped for good, once it has.
    pub stopped_for: Option<Duration>,
    /// When it was spawned.
    pub spawned_at: SystemTime,
    /// Its mailbox kind and capacity.
    pub mailbox: Mailbox,
    /// Messages in its mailbox, read live (exact even while a handler runs).
    pub depth: u64,
    /// Messages handled over all incarnations, counted as each handler starts.
    pub handled: u64,
    /// Messages handled by type, most handled first.
    pub message_types: Vec<MessageCount>,
    /// The handler running now, if any.
    pub handling: Option<RunningHandler>,
    /// The asks this actor awaits inside its handler now, oldest first; one entry per ask,
    /// so concurrent asks each keep their edge.
    pub waiting_for: Vec<PendingAsk>,
    /// Supervised restarts so far.
    pub restarts: u32,
    /// Its restarts within the last `within` of its supervisor's [`Supervision`] budget.
    /// Under a one-for-one supervisor this is what the budget counts; under a group
    /// strategy the budget counts one restart per failure, however many siblings it
    /// restarted, while each sibling counts its own here.
    pub restarts_in_window: u32,
    /// Panics caught in its handlers.
    pub panics: u64,
    /// The message of the last panic (cut to a bounded length).
    pub last_panic: Option<String>,
    /// Its supervisor, if it was spawned as a child.
    pub parent: Option<ActorId>,
    /// Its live supervised children, in spawn order.
    pub children: Vec<ActorId>,
    /// Actors it linked to or watches that have not been seen to stop.
    pub links: Vec<Link>,
    /// Its restart policy, if supervised.
    pub restart: Option<Restart>,
    /// How it supervises its own children (reported at the start of every incarnation).
    pub supervision: Option<Supervision>,
}

/// How many messages of one type an actor handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageCount {
    /// The Rust type name of the message.
    pub message_type: String,
    /// How many were handled.
    pub count: u64,
}

/// A handler running at the instant of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunningHandler {
    /// The Rust type name of the message being handled.
    pub message_type: String,
    /// How long it has been running.
    pub elapsed: Duration,
}

/// An ask an actor awaits inside its handler: a wait-for edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingAsk {
    /// The actor asked.
    pub target: ActorId,
    /// How long the ask has been waiting.
    pub elapsed: Duration,
}

/// A link or watch an actor set up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Link {
    /// The other actor.
    pub other: ActorId,
    /// A two-way link or a one-way watch.
    pub kind: LinkKind,
}

impl Snapshot {
    /// Joins snapshots of several monitors (typically one per proc or process) into one
    /// view: actors are merged by id, totals are added.
    ///
    /// An actor present in several parts keeps the entry of the most recent part, so
    /// merging two snapshots of one proc taken at different times does not duplicate it.
    /// Totals cannot tell parts apart, so merge each monitor's snapshot once.
    ///
    /// ```
    /// use plexus_monitor::{Monitor, Snapshot};
    /// use std::time::Duration;
    ///
    /// let a = Monitor::new().snapshot(Duration::ZERO);
    /// let b = Monitor::new().snapshot(Duration::ZERO);
    /// let merged = Snapshot::merge([a, b]);
    /// assert!(merged.actors.is_empty());
    /// assert_eq!(merged.totals.spawned, 0);
    /// ```
    pub fn merge(parts: impl IntoIterator<Item = Snapshot>) -> Snapshot {
        let mut parts: Vec<Snapshot> = parts.into_iter().collect();
        parts.sort_by_key(|part| part.taken_at);
        let mut taken_at = SystemTime::UNIX_EPOCH;
        let mut totals = Totals::default();
        let mut actors = BTreeMap::new();
        for part in parts {
            taken_at = taken_at.max(part.taken_at);
            totals.alive = totals.alive.saturating_add(part.totals.alive);
            totals.spawned = totals.spawned.saturating_add(part.totals.spawned);
            totals.stopped = totals.stopped.saturating_add(part.totals.stopped);
            totals.messages = totals.messages.saturating_add(part.totals.messages);
            for actor in part.actors {
                actors.insert(actor.id.clone(), actor);
            }
        }
        Snapshot {
            taken_at,
            actors: actors.into_values().collect(),
            totals,
        }
    }

    /// The wait-for graph of the asks pending in this snapshot.
    pub fn wait_for_graph(&self) -> WaitForGraph {
        WaitForGraph::from_snapshot(self)
    }

    /// Every cycle of the wait-for graph of this snapshot: actors that each await an ask
    /// to the next, the last one asking the first.
    ///
    /// Parts of a merged snapshot are taken at slightly different instants, so a cycle
    /// across them can be a near miss (one wait ended before another began); a cycle whose
    /// edges have all waited longer than the gap between the parts is real.
    pub fn deadlocks(&self) -> Vec<Deadlock> {
        self.wait_for_graph().deadlocks()
    }

    /// The entry of the actor with this id.
    pub fn actor(&self, id: &ActorId) -> Option<&ActorSnapshot> {
        // A linear search: a snapshot from elsewhere need not be sorted.
        self.actors.iter().find(|actor| &actor.id == id)
    }
}

impl ActorSnapshot {
    /// How many messages of this type it handled (the full Rust type name).
    pub fn handled_of(&self, message_type: &str) -> u64 {
        self.message_types
            .iter()
            .filter(|entry| entry.message_type == message_type)
            .map(|entry| entry.count)
            .sum()
    }
}
