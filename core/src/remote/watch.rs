//! Remote watches seen from the watcher's proc: one entry per watch sent out, fired exactly
//! once, by the target proc's `Stopped` notice or by [`Proc::peer_lost`], whichever removes
//! the entry first.
//!
//! ```text
//! register ─▶ entry (id) ──▶ $sys.Watch sent to the target's proc
//!                  │
//!    Stopped{id} ──┼── first to remove the entry fires it; the other finds nothing
//!  peer_lost(loc) ─┘
//! ```
//!
//! [`Proc::peer_lost`]: crate::Proc::peer_lost

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::actor::{LinkDied, LinkKind, StopReason};
use crate::cell::Watcher;
use crate::id::{ActorId, Location};

use super::RemoteAddr;

/// Who learns of a remote actor's stop.
pub(crate) enum WatchNotify {
    /// A local actor, through its mailbox.
    Actor(Arc<dyn Watcher>),
    /// A task in `ActorRef::wait_for_stop` on a remote ref.
    Waiter(oneshot::Sender<StopReason>),
}

/// One remote watch or link this proc is waiting on.
pub(crate) struct WatchEntry {
    pub(crate) target: RemoteAddr,
    pub(crate) kind: LinkKind,
    pub(crate) notify: WatchNotify,
}

impl WatchEntry {
    /// Tells the watcher, with the target's id and the watch's kind.
    pub(crate) fn fire(self, reason: StopReason) {
        match self.notify {
            WatchNotify::Actor(watcher) => {
                let died = LinkDied {
                    id: self.target.actor,
                    reason,
                    kind: self.kind,
                };
                if !watcher.deliver_link_died(died) {
                    tracing::debug!(watcher = %watcher.watcher_id(), "remote watch fired after its watcher stopped");
                }
            }
            WatchNotify::Waiter(waiter) => {
                // The waiting task may have been dropped; nobody is left to tell.
                let _ = waiter.send(reason);
            }
        }
    }
}

/// The remote watches of one proc, by watch id.
#[derive(Default)]
pub(crate) struct RemoteWatches {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, WatchEntry>>,
}

impl RemoteWatches {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, WatchEntry>> {
        // Inserts and removals are single calls; a panic elsewhere cannot leave the map
        // half-changed, so a poisoned lock is still sound to use.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a watch and returns its id, to be sent with the registration.
    pub(crate) fn insert(&self, entry: WatchEntry) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, entry);
        id
    }

    /// Fires the watch `id` if it has not fired yet; true if this call fired it.
    pub(crate) fn fire(&self, id: u64, reason: StopReason) -> bool {
        let entry = self.lock().remove(&id);
        match entry {
            Some(entry) => {
                entry.fire(reason);
                true
            }
            None => false,
        }
    }

    /// Fires the watch `id` if it has not fired yet and it watches `target` (a notice
    /// naming another actor is stale or forged, and fires nothing).
    pub(crate) fn fire_for(&self, id: u64, target: &ActorId, reason: StopReason) -> bool {
        let entry = {
            let mut entries = self.lock();
            match entries.get(&id) {
                Some(entry) if &entry.target.actor == target => entries.remove(&id),
                _ => None,
            }
        };
        match entry {
            Some(entry) => {
                entry.fire(reason);
                true
            }
            None => false,
        }
    }

    /// Fires one link-back entry: the link of local actor `watcher` on remote `target`.
    pub(crate) fn fire_link(
        &self,
        target: &ActorId,
        watcher: &ActorId,
        reason: StopReason,
    ) -> bool {
        let entry = {
            let mut entries = self.lock();
            let id = entries.iter().find_map(|(id, entry)| {
                let matches = entry.kind == LinkKind::Link
                    && &entry.target.actor == target
                    && matches!(&entry.notify, WatchNotify::Actor(w) if w.watcher_id() == watcher);
                matches.then_some(*id)
            });
            id.and_then(|id| entries.remove(&id))
        };
        match entry {
            Some(entry) => {
                entry.fire(reason);
                true
            }
            None => false,
        }
    }

    /// Forgets a watch without firing it (its waiter has gone).
    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Fires every watch on an actor at `location`; returns how many fired.
    pub(crate) fn fire_location(&self, location: &Location, reason: &StopReason) -> usize {
        let lost: Vec<WatchEntry> = {
            let mut entries = self.lock();
            let ids: Vec<u64> = entries
                .iter()
                .filter(|(_, entry)| &entry.target.location == location)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| entries.remove(id)).collect()
        };
        let count = lost.len();
        // Fired outside the lock: delivering reaches other actors' mailboxes.
        for entry in lost {
            entry.fire(reason.clone());
        }
        count
    }

    /// Fires every watch; returns how many fired.
    pub(crate) fn fire_all(&self, reason: &StopReason) -> usize {
        let all: Vec<WatchEntry> = self.lock().drain().map(|(_, entry)| entry).collect();
        let count = all.len();
        for entry in all {
            entry.fire(reason.clone());
        }
        count
    }

    /// How many watches wait for a notice.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ProcId;

    fn entry(waiter: oneshot::Sender<StopReason>) -> WatchEntry {
        WatchEntry {
            target: RemoteAddr {
                actor: ActorId::new(ProcId::new("far", 1), "target", 0),
                location: Location::Local(2),
            },
            kind: LinkKind::Watch,
            notify: WatchNotify::Waiter(waiter),
        }
    }

    /// A stop notice and a lost peer racing on two threads fire a watch exactly once.
    #[test]
    fn a_notice_racing_a_lost_peer_fires_once() {
        let watches = Arc::new(RemoteWatches::default());
        let target = ActorId::new(ProcId::new("far", 1), "target", 0);
        for _ in 0..200 {
            let (waiter, mut fired) = oneshot::channel();
            let id = watches.insert(entry(waiter));
            let notice = std::thread::spawn({
                let watches = watches.clone();
                let target = target.clone();
                move || usize::from(watches.fire_for(id, &target, StopReason::Stopped))
            });
            let lost = watches.fire_location(&Location::Local(2), &StopReason::Disconnected);
            let fired_by_notice = notice.join().unwrap_or(0);
            assert_eq!(lost + fired_by_notice, 1);
            let reason = fired.try_recv().ok();
            assert!(
                matches!(
                    reason,
                    Some(StopReason::Stopped) | Some(StopReason::Disconnected)
                ),
                "{reason:?}"
            );
            assert_eq!(watches.len(), 0);
        }
    }

    /// A notice that names another actor than the watch's target fires nothing.
    #[test]
    fn a_notice_for_another_target_fires_nothing() {
        let watches = RemoteWatches::default();
        let (waiter, _fired) = oneshot::channel();
        let id = watches.insert(entry(waiter));
        let other = ActorId::new(ProcId::new("far", 1), "other", 0);
        assert!(!watches.fire_for(id, &other, StopReason::Stopped));
        assert_eq!(watches.len(), 1);
        assert_eq!(
            watches.fire_location(&Location::Local(3), &StopReason::Disconnected),
            0
        );
        assert_eq!(
            watches.fire_location(&Location::Local(2), &StopReason::Disconnected),
            1
        );
    }
}
