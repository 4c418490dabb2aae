//! The per-actor monitor: the probe core calls from the actor's own task, and the reading
//! of its state into an [`ActorSnapshot`].
//!
//! Per message the probe does a pointer comparison, a relaxed load of the coarse clock
//! and two relaxed stores (see [`ActorMonitor`]); everything rarer (restarts, panics,
//! links, asks, the stop) takes a mutex that only this actor's task and a snapshot ever
//! contend for.
//!
//! The handler running now is one `AtomicU64`: the top byte says which message type (0 =
//! none), the low 56 bits when it started, in nanoseconds since the monitor's epoch
//! (2^56 ns is over two years; elapsed times are taken modulo that, so only a handler
//! running for longer would read wrong). One word means a snapshot never sees the type of
//! one handler with the start of another.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use plexus_core::{
    ActorId, ActorInfo, ActorProbe, ActorStatus, LinkKind, Mailbox, MailboxGauge, Restart,
    StopReason, Supervision,
};

use crate::clock::CoarseClock;
use crate::message_types::{MessageTypes, SLOTS, TypeRef};
use crate::monitor::Shared;
use crate::snapshot::{ActorSnapshot, Link, MessageCount, PendingAsk, RunningHandler};
use crate::sync::lock;

/// Restart instants kept per actor for the windowed count, which so reads at most this
/// many; restart budgets are far smaller in practice.
const RESTART_HISTORY: usize = 64;
/// Links and watches kept per actor; the oldest are forgotten past this.
const LINKS_KEPT: usize = 256;
/// Bytes of a panic message kept.
const PANIC_MESSAGE_MAX: usize = 1024;

const TIME_BITS: u32 = 56;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const TAG_OVERFLOW: u64 = 0xff;

/// Follows one actor for a [`Monitor`](crate::Monitor); core calls it as the actor's
/// [`ActorProbe`]. Hot-path state is relaxed atomics written by the actor's own task.
pub struct ActorMonitor {
    id: ActorId,
    actor_type: &'static str,
    parent: Option<ActorId>,
    restart: Option<Restart>,
    mailbox: Mailbox,
    gauge: MailboxGauge,
    spawned_at: SystemTime,
    clock: Arc<CoarseClock>,
    shared: Weak<Shared>,
    parent_monitor: Option<Weak<ActorMonitor>>,
    status: AtomicU8,
    current: AtomicU64,
    types: MessageTypes,
    restarts: AtomicU32,
    panics: AtomicU64,
    rare: Mutex<Rare>,
    asks: Mutex<Asks>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::ActorMetrics,
}

/// State that changes a few times in an actor's life.
#[derive(Default)]
struct Rare {
    stop_reason: Option<StopReason>,
    stopped_at: Option<u64>,
    last_panic: Option<String>,
    supervision: Option<Supervision>,
    restart_times: VecDeque<u64>,
    children: Vec<ActorId>,
    links: VecDeque<Link>,
}

/// The asks this actor awaits now, each under the token handed to core.
#[derive(Default)]
struct Asks {
    next_token: u64,
    pending: Vec<(u64, ActorId, u64)>,
}

impl fmt::Debug for ActorMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorMonitor")
            .field("id", &self.id)
            .field("status", &self.status())
            .field("handled", &self.handled())
            .finish_non_exhaustive()
    }
}

impl ActorMonitor {
    pub(crate) fn new(
        info: &ActorInfo,
        shared: &Arc<Shared>,
        parent_monitor: Option<Weak<ActorMonitor>>,
    ) -> Self {
        ActorMonitor {
            id: info.id.clone(),
            actor_type: info.actor_type,
            parent: info.parent.clone(),
            restart: info.restart,
            mailbox: info.mailbox,
            gauge: info.gauge.clone(),
            spawned_at: SystemTime::now(),
            clock: shared.clock.clone(),
            shared: Arc::downgrade(shared),
            parent_monitor,
            status: AtomicU8::new(encode_status(ActorStatus::Starting)),
            current: AtomicU64::new(0),
            types: MessageTypes::default(),
            restarts: AtomicU32::new(0),
            panics: AtomicU64::new(0),
            rare: Mutex::new(Rare::default()),
            asks: Mutex::new(Asks::default()),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::ActorMetrics::register(&info.id, info.actor_type),
        }
    }

    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// The actor's lifecycle phase now.
    pub fn status(&self) -> ActorStatus {
        decode_status(self.status.load(Ordering::Relaxed))
    }

    /// Messages the actor has handled over all its incarnations, counted as each handler
    /// starts.
    pub fn handled(&self) -> u64 {
        self.types.total()
    }

    /// Messages in the actor's mailbox now.
    pub fn mailbox_depth(&self) -> usize {
        self.gauge.depth()
    }

    /// The type of the message whose handler runs now, if any.
    pub fn handling(&self) -> Option<&'static str> {
        self.type_of(self.current.load(Ordering::Relaxed))
    }

    /// The message type recorded in a `current` word.
    fn type_of(&self, current: u64) -> Option<&'static str> {
        match current >> TIME_BITS {
            0 => None,
            TAG_OVERFLOW => self.types.name(TypeRef::Overflow),
            slot => self
                .types
                .name(TypeRef::Slot(usize::try_from(slot - 1).ok()?)),
        }
    }

    /// The actor's state at `now_nanos` (on the monitor's clock); links to actors for which
    /// `link_stopped` holds are left out. Takes this actor's own locks one at a time and no
    /// other actor's but its parent's.
    pub(crate) fn snapshot(
        &self,
        now_nanos: u64,
        link_stopped: impl Fn(&ActorId) -> bool,
    ) -> ActorSnapshot {
        let status = self.status();
        let handling = self.running_handler(now_nanos);
        let waiting_for = lock(&self.asks)
            .pending
            .iter()
            .map(|(_, target, since)| PendingAsk {
                target: target.clone(),
                elapsed: nanos_between(*since, now_nanos),
            })
            .collect();
        let window = self
            .parent_monitor
            .as_ref()
            .and_then(Weak::upgrade)
            .and_then(|parent| lock(&parent.rare).supervision)
            .map(|policy| policy.within);
        let rare = lock(&self.rare);
        let restarts_in_window = window.map_or(0, |within| {
            let within = u64::try_from(within.as_nanos()).unwrap_or(u64::MAX);
            let recent = rare
                .restart_times
                .iter()
                .filter(|&&at| now_nanos.saturating_sub(at) <= within)
                .count();
            u32::try_from(recent).unwrap_or(u32::MAX)
        });
        let mut message_types: Vec<MessageCount> = self
            .types
            .counts()
            .into_iter()
            .map(|(message_type, count)| MessageCount {
                message_type: message_type.to_owned(),
                count,
            })
            .collect();
        message_types.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.message_type.cmp(&b.message_type))
        });
        ActorSnapshot {
            id: self.id.clone(),
            actor_type: self.actor_type.to_owned(),
            // The reason is set before the status, so a reason seen means stopped.
            status: if rare.stop_reason.is_some() {
                ActorStatus::Stopped
            } else {
                status
            },
            stop_reason: rare.stop_reason.clone(),
            stopped_for: rare.stopped_at.map(|at| nanos_between(at, now_nanos)),
            spawned_at: self.spawned_at,
            mailbox: self.mailbox,
            depth: u64::try_from(self.gauge.depth()).unwrap_or(u64::MAX),
            handled: message_types.iter().map(|entry| entry.count).sum(),
            message_types,
            handling,
            waiting_for,
            restarts: self.restarts.load(Ordering::Relaxed),
            restarts_in_window,
            panics: self.panics.load(Ordering::Relaxed),
            last_panic: rare.last_panic.clone(),
            parent: self.parent.clone(),
            children: rare.children.clone(),
            links: rare
                .links
                .iter()
                .filter(|link| !link_stopped(&link.other))
                .cloned()
                .collect(),
            restart: self.restart,
            supervision: rare.supervision,
        }
    }

    /// The targets of the asks this actor awaits now: its wait-for edges.
    pub(crate) fn wait_targets(&self) -> Vec<ActorId> {
        lock(&self.asks)
            .pending
            .iter()
            .map(|(_, target, _)| target.clone())
            .collect()
    }

    /// When it stopped for good, in nanoseconds since the epoch.
    pub(crate) fn stopped_at(&self) -> Option<u64> {
        lock(&self.rare).stopped_at
    }

    pub(crate) fn add_child(&self, child: &ActorId) {
        lock(&self.rare).children.push(child.clone());
    }

    fn remove_child(&self, child: &ActorId) {
        lock(&self.rare).children.retain(|known| known != child);
    }

    fn running_handler(&self, now_nanos: u64) -> Option<RunningHandler> {
        let current = self.current.load(Ordering::Relaxed);
        Some(RunningHandler {
            message_type: self.type_of(current)?.to_owned(),
            elapsed: since_start(current, now_nanos),
        })
    }

    /// Exports the handled message and the time of the handler current until `now`, if
    /// one is.
    #[cfg(feature = "metrics")]
    fn record_finished(&self, now: u64) {
        let current = self.current.load(Ordering::Relaxed);
        if current != 0 {
            self.metrics.handler_finished(since_start(current, now));
        }
    }

    /// When a handler starts: the coarse clock, unless handler times are exported, which
    /// needs them exact.
    #[inline]
    fn handler_clock(&self) -> u64 {
        #[cfg(feature = "metrics")]
        return self.clock.now();
        #[cfg(not(feature = "metrics"))]
        return self.clock.coarse();
    }
}

impl ActorProbe for ActorMonitor {
    fn status(&self, status: ActorStatus) {
        self.status.store(encode_status(status), Ordering::Relaxed);
    }

    fn supervision(&self, supervision: &Supervision) {
        lock(&self.rare).supervision = Some(*supervision);
    }

    fn handler_started(&self, message_type: &'static str) {
        let tag = match self.types.count(message_type) {
            TypeRef::Slot(slot) => slot as u64 + 1,
            TypeRef::Overflow => TAG_OVERFLOW,
        };
        let started = self.handler_clock() & TIME_MASK;
        // Core reports back-to-back handlers by their starts alone: one still current
        // has ended now, and its time is exported before it is overwritten.
        #[cfg(feature = "metrics")]
        self.record_finished(started);
        self.current
            .store((tag << TIME_BITS) | started, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.handler_started(&self.gauge);
    }

    fn handler_finished(&self) {
        #[cfg(feature = "metrics")]
        self.record_finished(self.clock.now());
        self.current.store(0, Ordering::Relaxed);
    }

    fn panicked(&self, message: &str) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        lock(&self.rare).last_panic = Some(cut(message, PANIC_MESSAGE_MAX).to_owned());
    }

    fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let mut rare = lock(&self.rare);
        if rare.restart_times.len() >= RESTART_HISTORY {
            rare.restart_times.pop_front();
        }
        rare.restart_times.push_back(now);
    }

    fn stopped(&self, reason: &StopReason) {
        let stopped_at = self.clock.now();
        {
            let mut rare = lock(&self.rare);
            if rare.stop_reason.is_some() {
                return;
            }
            rare.stop_reason = Some(reason.clone());
            rare.stopped_at = Some(stopped_at);
        }
        // A handler cut short by the stop left no `handler_finished`, and the asks it awaited
        // died with it: a stopped actor runs nothing and waits for no one.
        self.current.store(0, Ordering::Relaxed);
        lock(&self.asks).pending.clear();
        self.status
            .store(encode_status(ActorStatus::Stopped), Ordering::Relaxed);
        if let Some(parent) = self.parent_monitor.as_ref().and_then(Weak::upgrade) {
            parent.remove_child(&self.id);
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.bury(self);
        }
    }

    fn linked(&self, other: &ActorId, kind: LinkKind) {
        let mut rare = lock(&self.rare);
        if rare
            .links
            .iter()
            .any(|link| &link.other == other && link.kind == kind)
        {
            return;
        }
        if rare.links.len() >= LINKS_KEPT {
            rare.links.pop_front();
        }
        rare.links.push_back(Link {
            other: other.clone(),
            kind,
        });
    }

    fn ask_started(&self, target: &ActorId) -> u64 {
        let since = self.clock.coarse();
        let mut asks = lock(&self.asks);
        let token = asks.next_token;
        asks.next_token = asks.next_token.wrapping_add(1);
        asks.pending.push((token, target.clone(), since));
        token
    }

    fn ask_finished(&self, token: u64) {
        let mut asks = lock(&self.asks);
        if let Some(at) = asks.pending.iter().position(|(t, _, _)| *t == token) {
            // `remove`, not `swap_remove`: the pending list stays oldest first.
            asks.pending.remove(at);
        }
    }
}

const _: () = assert!(SLOTS < TAG_OVERFLOW as usize);

fn encode_status(status: ActorStatus) -> u8 {
    match status {
        ActorStatus::Starting => 0,
        ActorStatus::Running => 1,
        ActorStatus::Restarting => 2,
        ActorStatus::Stopping => 3,
        ActorStatus::Stopped => 4,
    }
}

fn decode_status(code: u8) -> ActorStatus {
    match code {
        0 => ActorStatus::Starting,
        1 => ActorStatus::Running,
        2 => ActorStatus::Restarting,
        3 => ActorStatus::Stopping,
        _ => ActorStatus::Stopped,
    }
}

/// How long the handler recorded in `current` has run at `now_nanos`, modulo 2^56 ns.
fn since_start(current: u64, now_nanos: u64) -> Duration {
    Duration::from_nanos(now_nanos.wrapping_sub(current & TIME_MASK) & TIME_MASK)
}

fn nanos_between(earlier: u64, later: u64) -> Duration {
    Duration::from_nanos(later.saturating_sub(earlier))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long panic message is cut on a char boundary.
    #[test]
    fn cut_keeps_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("short", 100), "short");
    }

    /// Every status survives the trip through its code.
    #[test]
    fn status_codes_round_trip() {
        for status in [
            ActorStatus::Starting,
            ActorStatus::Running,
            ActorStatus::Restarting,
            ActorStatus::Stopping,
            ActorStatus::Stopped,
        ] {
            assert_eq!(decode_status(encode_status(status)), status);
        }
    }
}
