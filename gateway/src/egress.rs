//! The way out of a networked gateway: the outproc transport manager, with one queue and
//! one sending task per lane, a (destination, sender, recipient) triple, so that posting
//! never waits and one slow flow never holds up another.
//!
//! `Forwarder::forward` must not block, but sending may wait for a dial, for room on the
//! connection and for the flow's credit (design 3.3, 3.4). Each lane therefore has a
//! bounded queue drained by its own task, which sends one envelope after another:
//! envelopes of one (sender, recipient) pair keep their order, a full queue refuses at
//! once ([`PostError::Full`]) and an awaited tell ([`NetworkEgress::send`]) waits for room
//! in it instead. A recipient that stops granting credit stalls only its own lanes. What
//! a task cannot send is bounced to the gateway, which logs and counts it.
//!
//! A lane's task ends after [`LANE_IDLE`] without traffic. Pushes into a queue and the
//! task's decision to end both happen under the lane table's lock, so nothing is ever
//! pushed into a queue whose task has ended:
//!
//! ```text
//! push: lock ─ lane? ─ no ─▶ new queue + task ─┐
//!                    └ yes ───────────────────┴▶ try_send ─ Full ─▶ reserve (unlocked),
//!                                                                   lock, same lane? ─▶ send
//! task: recv ─ idle for LANE_IDLE ─▶ lock ─ empty? ─ yes ─▶ remove lane, end
//! ```
//!
//! A route's tell skips the queue while its lane holds nothing (no envelope queued or in
//! its task's hands, counted by `pending`): it goes straight to the pair's wire the task
//! last used, and one the wire cannot take now (no credit, no room) waits for it on the
//! caller's own task ([`NetworkEgress::send`]), as `tell(..).await` waits for credit. A
//! sustained stream of one sender's tells thus costs no hand-off to the lane's task and
//! no second queue. Every push counts its envelope as pending first, so a tell never
//! skips past one queued before it; the task counts each out once it is on a connection.
//!
//! Requests use the manager's request path, whose responses are routed by id and which
//! fails at once with `Disconnected` when the connection carrying the request ends; a
//! request first waits until its lane's queued tells are sent, so a tell then an ask of
//! one sender arrive in that order.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use foldhash::fast::FixedState;
use futures::future::BoxFuture;
use plexus_codec::{EnvelopeKind, MessageName, NetworkEnvelope, Recipient};
use plexus_core::{ActorId, Location, Outbound, ProcId, RemoteAddr};
use plexus_transport::manager::PairSender;
use plexus_transport::{Dest, DestTransport, OutprocTransportManager, TransportError};
use tokio::sync::{mpsc, oneshot};

use crate::error::{PostError, RemoteRequestError};
use crate::gateway::Forwarder;
use crate::protocol;

/// How long a lane's task waits for more traffic before it ends.
pub(crate) const LANE_IDLE: Duration = Duration::from_secs(5);

/// What a sending task takes from its queue.
pub(crate) enum Outgoing {
    Envelope(NetworkEnvelope),
    /// An envelope whose sender waits to learn whether it was handed to a connection.
    Acked(NetworkEnvelope, oneshot::Sender<Result<(), PostError>>),
    /// Answered once everything queued before it was sent or bounced.
    Flush(oneshot::Sender<()>),
}

/// Called with every envelope a sending task could not send, and the proc it came from
/// when known (its undeliverable handler gets the report).
pub(crate) type Bounce = Arc<dyn Fn(NetworkEnvelope, PostError, Option<&ProcId>) + Send + Sync>;

/// One ordered stream towards a destination.
#[derive(Clone, Debug)]
struct Lane {
    dest: Dest,
    sender: Option<ActorId>,
    recipient: Recipient,
    /// The proc the lane's tells come from: the sender's, or for tells sent from outside
    /// any actor the proc whose route took them (`None` when nobody said). Its
    /// undeliverable handler hears of every tell the lane's task cannot send.
    origin: Option<ProcId>,
    /// The lane's key in the table: the hash of its parts.
    key: u64,
}

/// A lane named by borrowed parts, so that finding an existing lane copies nothing.
#[derive(Clone, Copy)]
struct LaneRef<'a> {
    dest: &'a Location,
    sender: Option<&'a ActorId>,
    recipient: RecipientRef<'a>,
    origin: Option<&'a ProcId>,
}

/// A lane's recipient, borrowed from an envelope or from a route's [`Outbound`], which
/// names an actor without a [`Recipient`] around it. An actor is always the `Actor`
/// variant, so both hash and compare alike.
#[derive(Clone, Copy)]
enum RecipientRef<'a> {
    Actor(&'a ActorId),
    Other(&'a Recipient),
}

impl<'a> RecipientRef<'a> {
    fn of(recipient: &'a Recipient) -> Self {
        match recipient {
            Recipient::Actor(actor) => RecipientRef::Actor(actor),
            other => RecipientRef::Other(other),
        }
    }

    fn is(self, held: &Recipient) -> bool {
        match (self, held) {
            (RecipientRef::Actor(actor), Recipient::Actor(held)) => same_actor(actor, held),
            (RecipientRef::Other(other), held) => other == held,
            (RecipientRef::Actor(_), _) => false,
        }
    }

    fn to_owned(self) -> Recipient {
        match self {
            RecipientRef::Actor(actor) => Recipient::Actor(actor.clone()),
            RecipientRef::Other(other) => other.clone(),
        }
    }
}

impl Hash for RecipientRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            RecipientRef::Actor(actor) => {
                state.write_u8(0);
                actor.hash(state);
            }
            RecipientRef::Other(other) => {
                state.write_u8(1);
                other.hash(state);
            }
        }
    }
}

impl<'a> LaneRef<'a> {
    fn of(dest: &'a Location, envelope: &'a NetworkEnvelope, origin: Option<&'a ProcId>) -> Self {
        Self::new(
            dest,
            envelope.sender.as_ref(),
            RecipientRef::of(&envelope.recipient),
            origin,
        )
    }

    /// The lane of a route's tell from the proc `origin`.
    fn of_outbound(message: &'a Outbound, origin: &'a ProcId) -> Self {
        Self::new(
            &message.recipient.location,
            message.sender.as_ref(),
            RecipientRef::Actor(&message.recipient.actor),
            Some(origin),
        )
    }

    fn new(
        dest: &'a Location,
        sender: Option<&'a ActorId>,
        recipient: RecipientRef<'a>,
        origin: Option<&'a ProcId>,
    ) -> Self {
        let origin = match sender {
            Some(sender) => Some(sender.proc()),
            None => origin,
        };
        LaneRef {
            dest,
            sender,
            recipient,
            origin,
        }
    }

    fn key(&self, hasher: &FixedState) -> u64 {
        match self.sender {
            // The origin is the sender's proc then: hashing it again adds nothing.
            Some(sender) => hasher.hash_one((self.dest, sender, self.recipient)),
            None => hasher.hash_one((self.dest, self.recipient, self.origin)),
        }
    }

    fn to_lane(self, key: u64) -> Lane {
        Lane {
            dest: Dest::new(self.dest.clone()),
            sender: self.sender.cloned(),
            recipient: self.recipient.to_owned(),
            origin: self.origin.cloned(),
            key,
        }
    }
}

impl Lane {
    fn is(&self, other: &LaneRef<'_>) -> bool {
        let sender = match (self.sender.as_ref(), other.sender) {
            (Some(held), Some(sender)) => same_actor(held, sender),
            (None, None) => true,
            _ => false,
        };
        let origin = match (self.origin.as_ref(), other.origin) {
            (Some(held), Some(origin)) => same_proc(held, origin),
            (None, None) => true,
            _ => false,
        };
        sender
            && origin
            && other.recipient.is(&self.recipient)
            && self.dest.location() == other.dest
    }
}

/// Whether `a` and `b` are the same text, looking at where they are first: a lane's ids
/// are clones of its tells' ids, which share their strings, so most comparisons end
/// there without reading them.
fn same_str(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

fn same_proc(a: &ProcId, b: &ProcId) -> bool {
    a.instance() == b.instance() && same_str(a.label(), b.label())
}

/// `a == b`, cheaper for clones of one id (see [`same_str`]).
fn same_actor(a: &ActorId, b: &ActorId) -> bool {
    a.index() == b.index() && same_str(a.name(), b.name()) && same_proc(a.proc(), b.proc())
}

/// A lane's queue; compared by allocation to tell a lane from its successor.
struct Queue {
    tx: mpsc::Sender<Outgoing>,
    /// The lane, to check a tell against when the queue is found without the table.
    lane: Lane,
    /// Set once the lane is out of the table (its task ended or died), so a queue kept
    /// outside it is not used for the lane's next tells.
    retired: AtomicBool,
    /// Envelopes pushed into `tx` that the lane's task has not yet handed to a connection
    /// or bounced. While it is zero, every envelope of the lane is on a connection already,
    /// so a route's tell may skip the queue (see [`Queue::try_skip`]) and stay in order.
    pending: AtomicUsize,
    /// Set by a tell that skipped the queue, so the task does not take the lane for idle.
    skipped: AtomicBool,
    /// What the lane's task last sent with.
    cached: Mutex<Cached>,
}

/// A tell sent around the lane's queue from the caller's task, counted as pending until
/// it is handed to a connection or given up (also when its future is dropped).
struct Holding<'a>(&'a Queue);

impl<'a> Holding<'a> {
    fn new(queue: &'a Queue) -> Self {
        queue.pending.fetch_add(1, Ordering::AcqRel);
        Holding(queue)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.handed();
    }
}

/// The destination's transport and the lane's wire as the lane's task last found them.
#[derive(Default)]
struct Cached {
    /// So a tell can learn that its destination is connected without a lookup in the
    /// manager.
    transport: Option<Arc<DestTransport>>,
    /// The lane's pair sender on that transport, for tells that skip the queue.
    wire: Option<PairSender>,
}

impl Queue {
    fn new(tx: mpsc::Sender<Outgoing>, lane: Lane) -> Self {
        Queue {
            tx,
            lane,
            retired: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            skipped: AtomicBool::new(false),
            cached: Mutex::new(Cached::default()),
        }
    }

    fn cached(&self) -> MutexGuard<'_, Cached> {
        // Each field is replaced whole, so a poisoned lock is still valid.
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the transport the task last used still has a wire marked healthy. Reads
    /// flags only, as it runs on every tell: it takes none of the locks the lane's task
    /// sends under. A tell that slips through just after its connection ended is sent or
    /// bounced by the task like one that raced the loss.
    fn connected(&self) -> bool {
        self.cached()
            .transport
            .as_ref()
            .is_some_and(|transport| transport.is_marked_healthy())
    }

    /// Hands `envelope` straight to the lane's wire, skipping the queue and the task's
    /// wake-up, when nothing of the lane is queued or in the task's hands (so it cannot
    /// overtake an earlier tell of its pair) and the wire takes it without waiting. Hands
    /// it back otherwise, for the queue.
    #[allow(
        clippy::result_large_err,
        reason = "the tell is handed back by value for the queue"
    )]
    #[inline]
    fn try_skip(&self, envelope: NetworkEnvelope) -> Result<(), NetworkEnvelope> {
        if !self.may_skip() {
            return Err(envelope);
        }
        let cached = self.cached();
        let Some(wire) = cached.wire.as_ref() else {
            return Err(envelope);
        };
        wire.try_send(envelope)?;
        drop(cached);
        if !self.skipped.load(Ordering::Relaxed) {
            self.skipped.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether nothing of the lane is queued or in its task's hands, so a tell may skip
    /// the queue without overtaking one.
    fn may_skip(&self) -> bool {
        // Acquire: the task's hand-offs counted out before are in the connection's queue,
        // so a tell that skips lands behind them.
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Pushes one item without waiting, counting an envelope as pending while it is
    /// queued.
    #[allow(
        clippy::result_large_err,
        reason = "the channel's own error, handing the item back by value"
    )]
    fn try_push(&self, outgoing: Outgoing) -> Result<(), mpsc::error::TrySendError<Outgoing>> {
        let counted = !matches!(outgoing, Outgoing::Flush(_));
        if counted {
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
        self.tx.try_send(outgoing).inspect_err(|_| {
            if counted {
                self.pending.fetch_sub(1, Ordering::AcqRel);
            }
        })
    }

    /// Counts out one envelope the task handed to a connection or bounced.
    fn handed(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Records what the task sent its last batch with; `wire` is `None` when the batch
    /// ended on the waiting way (which may have moved the pair), so the next tells queue
    /// until a batch picks the wire again.
    fn remember(&self, transport: Option<&Arc<DestTransport>>, wire: Option<PairSender>) {
        let mut cached = self.cached();
        let same = match (cached.transport.as_ref(), transport) {
            (Some(held), Some(transport)) => Arc::ptr_eq(held, transport),
            (None, None) => true,
            _ => false,
        };
        if !same {
            cached.transport = transport.cloned();
        }
        cached.wire = wire;
    }
}

/// The lanes by the hash of their parts (collisions share a bucket). Lookups hash the
/// borrowed parts of a tell once with foldhash: no key is built or copied per tell.
struct Table {
    hasher: FixedState,
    buckets: HashMap<u64, Vec<(Lane, Arc<Queue>)>, FixedState>,
}

impl Table {
    fn find(&self, key: u64, lane: &LaneRef<'_>) -> Option<&Arc<Queue>> {
        self.buckets
            .get(&key)?
            .iter()
            .find(|(held, _)| held.is(lane))
            .map(|(_, queue)| queue)
    }

    /// Removes the lane of `key` whose queue is `queue`, if it is still there.
    fn remove(&mut self, key: u64, queue: &Arc<Queue>) {
        if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket.retain(|(_, held)| !Arc::ptr_eq(held, queue));
            queue.retired.store(true, Ordering::Release);
            // Kept only by tells under way and the last-lane slot now: let its
            // connection go.
            *queue.cached() = Cached::default();
            if bucket.is_empty() {
                self.buckets.remove(&key);
            }
        }
    }
}

type Lanes = Mutex<Table>;

/// A tell on its way into a lane's queue, handed back when the queue is full.
type Pending = (
    NetworkEnvelope,
    Option<oneshot::Sender<Result<(), PostError>>>,
);

fn outgoing((envelope, ack): Pending) -> Outgoing {
    match ack {
        Some(ack) => Outgoing::Acked(envelope, ack),
        None => Outgoing::Envelope(envelope),
    }
}

fn pending(outgoing: Outgoing) -> Option<Pending> {
    match outgoing {
        Outgoing::Envelope(envelope) => Some((envelope, None)),
        Outgoing::Acked(envelope, ack) => Some((envelope, Some(ack))),
        Outgoing::Flush(_) => None,
    }
}

/// The envelope of a route's tell that leaves this gateway, with the location it goes to:
/// a tell with the default hop limit, one hop already spent on leaving.
#[inline]
fn leaving_envelope(message: Outbound) -> (Location, NetworkEnvelope) {
    let Outbound {
        sender,
        recipient: RemoteAddr { actor, location },
        name,
        payload,
    } = message;
    let envelope = NetworkEnvelope {
        sender,
        recipient: Recipient::Actor(actor),
        trace_id: 0,
        hop_limit: plexus_codec::DEFAULT_HOP_LIMIT - 1,
        kind: EnvelopeKind::Regular,
        name: MessageName::from_static(name),
        payload: Bytes::from(payload),
    };
    (location, envelope)
}

/// The manager and the lanes.
pub(crate) struct NetworkEgress {
    manager: Arc<OutprocTransportManager>,
    lanes: Arc<Lanes>,
    /// The queue of the last route's tell, found again without the table's lock and
    /// without hashing: a sender's tells come in runs to one recipient.
    last: Mutex<Option<Arc<Queue>>>,
    capacity: usize,
    bounce: Bounce,
}

fn lock(lanes: &Lanes) -> MutexGuard<'_, Table> {
    // Every statement leaves the map consistent, so a poisoned lock is still valid.
    lanes.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NetworkEgress {
    pub(crate) fn new(manager: OutprocTransportManager, capacity: usize, bounce: Bounce) -> Self {
        // A fixed seed per gateway: keys stay stable for the table's life.
        let hasher = FixedState::with_seed(foldhash::fast::RandomState::default().hash_one(0u8));
        NetworkEgress {
            manager: Arc::new(manager),
            lanes: Arc::new(Mutex::new(Table {
                hasher,
                buckets: HashMap::with_hasher(FixedState::default()),
            })),
            last: Mutex::new(None),
            capacity: capacity.max(1),
            bounce,
        }
    }

    pub(crate) fn manager(&self) -> &OutprocTransportManager {
        &self.manager
    }

    /// How many lanes have a running task.
    #[cfg(test)]
    pub(crate) fn lane_count(&self) -> usize {
        lock(&self.lanes).buckets.values().map(Vec::len).sum()
    }

    /// The queue of `lane`, whose key is `key` (under the held lock), starting its task on
    /// first use. The caller hashes the lane once and passes the key, as it needs it too.
    fn queue(&self, table: &mut Table, lane: &LaneRef<'_>, key: u64) -> Arc<Queue> {
        if let Some(queue) = table.find(key, lane) {
            return Arc::clone(queue);
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        let lane = lane.to_lane(key);
        let queue = Arc::new(Queue::new(tx, lane.clone()));
        table
            .buckets
            .entry(key)
            .or_default()
            .push((lane.clone(), Arc::clone(&queue)));
        tokio::spawn(drain(
            Arc::clone(&self.manager),
            lane,
            Arc::clone(&queue),
            rx,
            Arc::downgrade(&self.lanes),
            Arc::clone(&self.bounce),
        ));
        queue
    }

    /// Pushes without waiting; hands the tell back when its lane's queue is full.
    #[allow(
        clippy::result_large_err,
        reason = "the tell is handed back by value to be pushed again; boxing it would \
                  allocate on every full queue"
    )]
    fn push_now(
        &self,
        dest: &Location,
        origin: Option<&ProcId>,
        mut tell: Pending,
    ) -> Result<(), Pending> {
        let mut table = lock(&self.lanes);
        // Twice at most: a lane whose task died without removing itself (a panic) is
        // replaced once.
        for _ in 0..2 {
            let lane = LaneRef::of(dest, &tell.0, origin);
            let key = lane.key(&table.hasher);
            let queue = self.queue(&mut table, &lane, key);
            match queue.try_push(outgoing(tell)) {
                Ok(()) => return Ok(()),
                // Only tells are pushed here, so `back` is one.
                Err(mpsc::error::TrySendError::Full(back)) => {
                    return pending(back).map_or(Ok(()), Err);
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    tracing::warn!(%dest, "lane task gone, lane replaced");
                    table.remove(key, &queue);
                    tell = match pending(back) {
                        Some(tell) => tell,
                        None => return Ok(()),
                    };
                }
            }
        }
        Err(tell)
    }

    /// Pushes, waiting for room in the lane's queue.
    async fn push(&self, dest: &Location, origin: Option<&ProcId>, mut tell: Pending) {
        loop {
            tell = match self.push_now(dest, origin, tell) {
                Ok(()) => return,
                Err(tell) => tell,
            };
            let queue = {
                let table = lock(&self.lanes);
                let lane = LaneRef::of(dest, &tell.0, origin);
                match table.find(lane.key(&table.hasher), &lane) {
                    Some(queue) => Arc::clone(queue),
                    None => continue,
                }
            };
            let Ok(permit) = queue.tx.reserve().await else {
                continue;
            };
            let table = lock(&self.lanes);
            let lane = LaneRef::of(dest, &tell.0, origin);
            // The slot is only used if its task still runs, which the table says.
            if table
                .find(lane.key(&table.hasher), &lane)
                .is_some_and(|current| Arc::ptr_eq(current, &queue))
            {
                let outgoing = outgoing(tell);
                if !matches!(outgoing, Outgoing::Flush(_)) {
                    queue.pending.fetch_add(1, Ordering::AcqRel);
                }
                permit.send(outgoing);
                return;
            }
        }
    }

    /// Queues a tell, waiting for room in its lane.
    ///
    /// While `dest` has a healthy connection this returns once the tell is queued. When it
    /// has none (first use, or lost), the call also waits for the sending task to hand the
    /// tell to a connection, so a destination that cannot be reached fails this call with
    /// [`PostError::Transport`] instead of a later bounce.
    ///
    /// # Cancel safety
    ///
    /// A dropped call never sends twice; a tell already queued is still sent.
    pub(crate) async fn send(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        origin: Option<&ProcId>,
    ) -> Result<(), PostError> {
        let envelope = match self.send_skipping(dest, origin, envelope).await {
            Ok(()) => return Ok(()),
            Err(envelope) => envelope,
        };
        let envelope = match self.push_connected(dest, origin, envelope) {
            Ok(()) => return Ok(()),
            Err(envelope) => envelope,
        };
        let connected = self
            .manager
            .transport(&Dest::new(dest.clone()))
            .is_some_and(|transport| transport.is_healthy());
        if connected {
            self.push(dest, origin, (envelope, None)).await;
            return Ok(());
        }
        let recipient = envelope.recipient.clone();
        let (ack, outcome) = oneshot::channel();
        self.push(dest, origin, (envelope, Some(ack))).await;
        outcome
            .await
            .unwrap_or(Err(PostError::BrokenLink { recipient }))
    }

    /// Sends a tell from the caller's task, waiting there for its flow's credit and the
    /// connection's room, when its lane is connected and holds nothing (nothing queued,
    /// nothing in its task's hands), so it overtakes no earlier tell of its pair and the
    /// lane stays empty for the tells after it. Hands the tell back, sent nowhere, for
    /// the lane when that does not hold or no wire of the lane's transport is healthy.
    /// A tell the wire refuses for good is bounced, as the lane's task would.
    async fn send_skipping(
        &self,
        dest: &Location,
        origin: Option<&ProcId>,
        envelope: NetworkEnvelope,
    ) -> Result<(), NetworkEnvelope> {
        let (queue, transport) = {
            let table = lock(&self.lanes);
            let lane = LaneRef::of(dest, &envelope, origin);
            let Some(queue) = table.find(lane.key(&table.hasher), &lane) else {
                return Err(envelope);
            };
            if !queue.may_skip() {
                return Err(envelope);
            }
            let transport = queue
                .cached()
                .transport
                .clone()
                .filter(|transport| transport.is_healthy());
            let Some(transport) = transport else {
                return Err(envelope);
            };
            (Arc::clone(queue), transport)
        };
        // Counted as pending while it waits: the lane's tells from other tasks queue
        // meanwhile rather than skip to the wire.
        let holding = Holding::new(&queue);
        let wire = transport.pair_sender(&envelope);
        match transport.send_or_return(envelope).await {
            Ok(()) => {
                queue.cached().wire = wire;
                queue.skipped.store(true, Ordering::Relaxed);
            }
            // Not queued anywhere: the lane may dial or move it.
            Err((TransportError::NoHealthyWire { .. }, envelope)) => return Err(envelope),
            Err((source, envelope)) => {
                let error = PostError::Transport {
                    dest: dest.clone(),
                    source: Box::new(source),
                };
                // The lane's origin: the sender's proc, else the route's.
                let origin = envelope
                    .sender
                    .as_ref()
                    .map(ActorId::proc)
                    .or(origin)
                    .cloned();
                (self.bounce)(envelope, error, origin.as_ref());
            }
        }
        drop(holding);
        Ok(())
    }

    /// Queues a tell without waiting when its lane's task last found the destination
    /// connected; hands it back otherwise (or when the queue is full).
    #[allow(
        clippy::result_large_err,
        reason = "the tell is handed back by value to take the slower way"
    )]
    pub(crate) fn push_connected(
        &self,
        dest: &Location,
        origin: Option<&ProcId>,
        envelope: NetworkEnvelope,
    ) -> Result<(), NetworkEnvelope> {
        // Under the table's lock, as every push: the task cannot end meanwhile.
        let mut table = lock(&self.lanes);
        let lane = LaneRef::of(dest, &envelope, origin);
        let key = lane.key(&table.hasher);
        let queue = self.queue(&mut table, &lane, key);
        if !queue.connected() {
            return Err(envelope);
        }
        match queue.try_push(Outgoing::Envelope(envelope)) {
            Ok(()) => Ok(()),
            Err(
                mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back),
            ) => match pending(back) {
                Some((envelope, _)) => Err(envelope),
                // Only tells are pushed here.
                None => Ok(()),
            },
        }
    }

    /// [`push_connected`](Self::push_connected) for a route's tell from the proc `origin`,
    /// which has not been made an envelope yet: its lane is found from the borrowed
    /// message and the envelope is built in the queue's slot, rather than built first
    /// and copied through every call on the way. Hands back the destination and the
    /// envelope to take the slower way.
    #[allow(
        clippy::result_large_err,
        reason = "the tell is handed back by value to take the slower way"
    )]
    pub(crate) fn push_outbound(
        &self,
        message: Outbound,
        origin: &ProcId,
    ) -> Result<(), (Location, NetworkEnvelope)> {
        // The last lane is found without the table, but only to skip its queue: that
        // pushes nothing, so the task's end does not matter.
        if let Some(queue) = self.last_lane(&LaneRef::of_outbound(&message, origin))
            && queue.may_skip()
        {
            let (location, envelope) = leaving_envelope(message);
            return queue
                .try_skip(envelope)
                .map_err(|envelope| (location, envelope));
        }
        // Under the table's lock, as every push: the task cannot end meanwhile.
        let mut table = lock(&self.lanes);
        let queue = {
            let lane = LaneRef::of_outbound(&message, origin);
            let key = lane.key(&table.hasher);
            self.queue(&mut table, &lane, key)
        };
        self.remember_last(&queue);
        let (location, envelope) = leaving_envelope(message);
        if queue.may_skip() {
            // A tell that skips the queue pushes nothing, so the lane's task may end
            // meanwhile, and a direct write to an idle connection holds up no other lane.
            drop(table);
            // One the wire cannot take now waits on the slower way, which sends it from
            // the caller's task too while the lane stays empty.
            return queue
                .try_skip(envelope)
                .map_err(|envelope| (location, envelope));
        }
        if !queue.connected() {
            return Err((location, envelope));
        }
        match queue.try_push(Outgoing::Envelope(envelope)) {
            Ok(()) => Ok(()),
            Err(
                mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back),
            ) => match pending(back) {
                Some((envelope, _)) => Err((location, envelope)),
                // Only tells are pushed here.
                None => Ok(()),
            },
        }
    }

    /// The queue of the last route's tell if `lane` is its lane and it is still in the
    /// table.
    fn last_lane(&self, lane: &LaneRef<'_>) -> Option<Arc<Queue>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|queue| !queue.retired.load(Ordering::Acquire) && queue.lane.is(lane))
            .cloned()
    }

    fn remember_last(&self, queue: &Arc<Queue>) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if !last.as_ref().is_some_and(|held| Arc::ptr_eq(held, queue)) {
            *last = Some(Arc::clone(queue));
        }
    }

    /// Sends a request to `dest` and waits at most `timeout` for its answer, after the
    /// tells queued before it on its lane.
    pub(crate) async fn request(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        timeout: Duration,
        origin: Option<&ProcId>,
    ) -> Result<Bytes, RemoteRequestError> {
        let started = tokio::time::Instant::now();
        let queued = {
            let table = lock(&self.lanes);
            let lane = LaneRef::of(dest, &envelope, origin);
            table
                .find(lane.key(&table.hasher), &lane)
                .map(|queue| queue.tx.clone())
        };
        if let Some(queue) = queued {
            if tokio::time::timeout(timeout, flush_queues(vec![queue]))
                .await
                .is_err()
            {
                return Err(RemoteRequestError::Timeout { after: timeout });
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        let dest = Dest::new(dest.clone());
        match self.manager.request(&dest, envelope, left).await {
            Ok(response) => protocol::read_response(&response),
            Err(error) => Err(RemoteRequestError::from_transport(&dest, error)),
        }
    }
}

impl NetworkEgress {
    /// Queues a tell without waiting, like [`Forwarder::forward`], for a tell that comes
    /// from `origin` (see [`Lane::origin`]).
    pub(crate) fn forward_from(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        origin: Option<&ProcId>,
    ) -> Result<(), PostError> {
        match self.push_now(dest, origin, (envelope, None)) {
            Ok(()) => Ok(()),
            Err((envelope, _)) => {
                tracing::debug!(%dest, recipient = %envelope.recipient, "lane full, envelope refused");
                Err(PostError::Full { dest: dest.clone() })
            }
        }
    }
}

impl Forwarder for NetworkEgress {
    fn forward(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError> {
        self.forward_from(dest, envelope, None)
    }

    fn flush(&self) -> BoxFuture<'static, ()> {
        let queues: Vec<mpsc::Sender<Outgoing>> = lock(&self.lanes)
            .buckets
            .values()
            .flatten()
            .map(|(_, queue)| queue.tx.clone())
            .collect();
        Box::pin(flush_queues(queues))
    }
}

/// Sends a flush marker down every queue and waits for each to come out.
pub(crate) async fn flush_queues(queues: Vec<mpsc::Sender<Outgoing>>) {
    let mut acks = Vec::with_capacity(queues.len());
    for queue in queues {
        let (tx, rx) = oneshot::channel();
        // A queue whose task ended has nothing pending; a marker that lands as it ends
        // is dropped with it, which answers the ack as well.
        if queue.send(Outgoing::Flush(tx)).await.is_ok() {
            acks.push(rx);
        }
    }
    for ack in acks {
        let _ = ack.await;
    }
}

/// How many queued items a lane's task takes at once.
const BATCH: usize = 64;

/// The sending task of one lane: takes what is queued in batches, hands each envelope to
/// a connection in order or bounces it; ends after [`LANE_IDLE`] without traffic.
///
/// One idle timer serves the lane's life: each batch only notes when it came, and the
/// timer, when it fires early, is moved to the idle end of the latest batch.
async fn drain(
    manager: Arc<OutprocTransportManager>,
    lane: Lane,
    queue: Arc<Queue>,
    mut rx: mpsc::Receiver<Outgoing>,
    lanes: Weak<Lanes>,
    bounce: Bounce,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let idle = tokio::time::sleep(LANE_IDLE);
    tokio::pin!(idle);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            received = rx.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                last = tokio::time::Instant::now();
            }
            () = &mut idle => {
                // Tells that skipped the queue count as traffic too.
                if queue.skipped.swap(false, Ordering::Relaxed) {
                    last = tokio::time::Instant::now();
                }
                if last.elapsed() < LANE_IDLE {
                    idle.as_mut().reset(last + LANE_IDLE);
                    continue;
                }
                let Some(lanes) = lanes.upgrade() else { return };
                let mut table = lock(&lanes);
                match rx.try_recv() {
                    Ok(outgoing) => {
                        batch.push(outgoing);
                        last = tokio::time::Instant::now();
                        idle.as_mut().reset(last + LANE_IDLE);
                    }
                    Err(_) => {
                        table.remove(lane.key, &queue);
                        return;
                    }
                }
            }
        }
        // The destination's transport, looked up once per batch rather than per envelope.
        let mut transport = manager
            .transport(&lane.dest)
            .filter(|transport| transport.is_healthy());
        // The lane's pair and so its wire are the same for every envelope: the wire is
        // picked once per batch, when the first envelope needs it, and again only after
        // an envelope went the waiting way, which may have moved the pair.
        let mut wire: Option<PairSender> = None;
        let mut sent_any = false;
        for outgoing in batch.drain(..) {
            let (envelope, ack) = match outgoing {
                Outgoing::Envelope(envelope) => (envelope, None),
                Outgoing::Acked(envelope, ack) => (envelope, Some(ack)),
                Outgoing::Flush(ack) => {
                    let _ = ack.send(());
                    continue;
                }
            };
            sent_any = true;
            let sent = if lanes.strong_count() == 0 {
                // The gateway is gone: sending would dial again from a gateway nobody holds.
                let error = PostError::BrokenLink {
                    recipient: envelope.recipient.clone(),
                };
                Err((error, envelope))
            } else {
                // Queued at once, without a future, while the wire has credit and room.
                if wire.is_none() {
                    wire = transport
                        .as_ref()
                        .and_then(|held| held.pair_sender(&envelope));
                }
                let envelope = match &wire {
                    Some(wire) => match wire.try_send(envelope) {
                        Ok(()) => {
                            queue.handed();
                            report(Ok(()), ack, lane.origin.as_ref(), &bounce);
                            continue;
                        }
                        Err(envelope) => envelope,
                    },
                    None => envelope,
                };
                // The waiting way. Only one envelope of the lane is in it at a time and the
                // next one is tried only after it, so none overtakes it. Boxed: its future
                // is large, and kept inline it made this task's future as large. Tells
                // queue behind it meanwhile, as it is pending; the wire they would skip to
                // is forgotten, as the pair may move.
                wire = None;
                queue.remember(transport.as_ref(), None);
                Box::pin(send_waiting(&manager, &lane.dest, &mut transport, envelope))
                    .await
                    .map_err(|(source, envelope)| {
                        let error = PostError::Transport {
                            dest: lane.dest.location().clone(),
                            source: Box::new(source),
                        };
                        (error, envelope)
                    })
            };
            queue.handed();
            report(sent, ack, lane.origin.as_ref(), &bounce);
        }
        if sent_any {
            queue.remember(transport.as_ref(), wire);
        }
    }
}

/// Tells the waiting sender, if any, how its tell went; a tell that failed with nobody
/// waiting (or nobody left to hear) is bounced to the gateway.
fn report(
    sent: Result<(), (PostError, NetworkEnvelope)>,
    ack: Option<oneshot::Sender<Result<(), PostError>>>,
    origin: Option<&ProcId>,
    bounce: &Bounce,
) {
    match (sent, ack) {
        (Ok(()), Some(ack)) => {
            let _ = ack.send(Ok(()));
        }
        (Ok(()), None) => {}
        // The waiting sender learns the outcome and reports it itself.
        (Err((error, envelope)), Some(ack)) => {
            if let Err(Err(error)) = ack.send(Err(error)) {
                bounce(envelope, error, origin);
            }
        }
        (Err((error, envelope)), None) => bounce(envelope, error, origin),
    }
}

/// Hands `envelope` to a connection of the lane's cached `transport`, waiting for credit
/// and room, or through the manager when that transport has no healthy wire. A failure
/// hands the envelope back, so no copy is kept per envelope for the bounce report.
async fn send_waiting(
    manager: &OutprocTransportManager,
    dest: &Dest,
    transport: &mut Option<Arc<DestTransport>>,
    envelope: NetworkEnvelope,
) -> Result<(), (TransportError, NetworkEnvelope)> {
    let sent = match transport.as_ref() {
        Some(held) => held.send_or_return(envelope).await,
        None => Err((
            TransportError::NoHealthyWire { dest: dest.clone() },
            envelope,
        )),
    };
    match sent {
        // No wire took the envelope: it was not queued anywhere, so the manager may send
        // it without sending it twice.
        Err((TransportError::NoHealthyWire { .. }, envelope)) => {
            Box::pin(send_dialing(manager, dest, transport, envelope)).await
        }
        sent => sent,
    }
}

/// Hands `envelope` to a connection of `dest` through the manager, which dials, replaces a
/// lost transport or takes a newer one (which becomes the lane's cached `transport`), for
/// a lane whose cached transport has no healthy wire. A failure hands the envelope back.
/// Boxed by its caller: its future is several times the size of a send on a connected
/// transport, which would otherwise grow by it.
async fn send_dialing(
    manager: &OutprocTransportManager,
    dest: &Dest,
    transport: &mut Option<Arc<DestTransport>>,
    envelope: NetworkEnvelope,
) -> Result<(), (TransportError, NetworkEnvelope)> {
    *transport = None;
    // Only this slower way keeps a copy for the report: the manager does not hand the
    // envelope back.
    let kept = envelope.clone();
    if let Err(error) = manager.send(dest, envelope).await {
        return Err((error, kept));
    }
    *transport = manager
        .transport(dest)
        .filter(|transport| transport.is_healthy());
    Ok(())
}

/// A copy of the envelope for a bounce report; the payload's bytes are shared, not
/// copied, so the sender's undeliverable handler can still get them.
pub(crate) fn header_of(envelope: &NetworkEnvelope) -> NetworkEnvelope {
    envelope.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::Location;

    fn actor(proc: &str, name: &str) -> ActorId {
        ActorId::new(ProcId::new(proc, 1), name, 0)
    }

    /// A route's tell names its lane from the `Outbound`, a waiting or forwarded tell from
    /// its envelope: both find the same lane, so a pair's tells keep one order whichever
    /// way each took.
    #[test]
    fn a_route_tell_and_its_envelope_name_the_same_lane() {
        let hasher = FixedState::with_seed(7);
        let origin = ProcId::new("origin", 1);
        for sender in [Some(actor("a", "sender")), None] {
            let message = Outbound {
                sender: sender.clone(),
                recipient: RemoteAddr {
                    actor: actor("b", "counter"),
                    location: Location::Local(9),
                },
                name: "bench.Add",
                payload: vec![1, 2, 3],
            };
            let from_message = LaneRef::of_outbound(&message, &origin);
            let key = from_message.key(&hasher);
            let lane = from_message.to_lane(key);
            let (location, envelope) = leaving_envelope(message.clone());
            let from_envelope = LaneRef::of(&location, &envelope, Some(&origin));
            assert_eq!(
                from_envelope.key(&hasher),
                key,
                "keys differ for sender {sender:?}"
            );
            assert!(
                lane.is(&from_envelope),
                "lanes differ for sender {sender:?}"
            );
            assert!(lane.is(&from_message));
        }
    }

    /// The pointer shortcut of `same_actor` answers as `==` does: for clones, for equal
    /// ids built apart, and for ids that differ in any part.
    #[test]
    fn same_actor_agrees_with_equality() {
        let a = actor("p", "x");
        let others = [
            a.clone(),
            actor("p", "x"),
            actor("q", "x"),
            actor("p", "y"),
            ActorId::new(ProcId::new("p", 2), "x", 0),
            ActorId::new(ProcId::new("p", 1), "x", 1),
        ];
        for other in &others {
            assert_eq!(same_actor(&a, other), a == *other, "{a} against {other}");
        }
    }

    /// An actor and a group of the same destination and sender are different lanes.
    #[test]
    fn an_actor_and_a_group_are_different_lanes() {
        let location = Location::Local(9);
        let group = Recipient::Group("workers".into());
        let to_group = LaneRef::new(&location, None, RecipientRef::of(&group), None);
        let counter = actor("b", "counter");
        let to_actor = LaneRef::new(&location, None, RecipientRef::Actor(&counter), None);
        let hasher = FixedState::with_seed(7);
        let lane = to_group.to_lane(to_group.key(&hasher));
        assert!(lane.is(&to_group));
        assert!(!lane.is(&to_actor));
    }

    /// A tell leaving through a route has spent one hop, as `spend_hop` would.
    #[test]
    fn a_leaving_tell_has_spent_one_hop() {
        let message = Outbound {
            sender: None,
            recipient: RemoteAddr {
                actor: actor("b", "counter"),
                location: Location::Local(9),
            },
            name: "bench.Add",
            payload: vec![7],
        };
        let (location, envelope) = leaving_envelope(message);
        assert_eq!(location, Location::Local(9));
        assert_eq!(envelope.hop_limit, plexus_codec::DEFAULT_HOP_LIMIT - 1);
        assert_eq!(envelope.kind, EnvelopeKind::Regular);
        assert_eq!(&*envelope.name, "bench.Add");
        assert_eq!(&envelope.payload[..], &[7]);
    }

    /// A recorded tell, for the ordering test below.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Seq(u64);
    impl plexus_core::RemoteMessage for Seq {
        const NAME: &'static str = "egress-test.Seq";
    }

    /// Records the tells it takes, yielding now and then so its senders run out of
    /// credit and room.
    struct Recorder(tokio::sync::mpsc::UnboundedSender<u64>);
    impl plexus_core::Actor for Recorder {}
    impl plexus_core::Handler<Seq> for Recorder {
        type Reply = ();
        async fn handle(&mut self, Seq(n): Seq, _ctx: &mut plexus_core::Context<Self>) {
            if n % 7 == 0 {
                tokio::task::yield_now().await;
            }
            let _ = self.0.send(n);
        }
    }
    impl plexus_core::RemoteActor for Recorder {
        fn remote_handlers() -> plexus_core::RemoteHandlers<Self> {
            plexus_core::RemoteHandlers::new().tell::<Seq>()
        }
    }

    /// Tells that skip the lane's queue (straight to the wire, or waiting for credit on
    /// the caller's task) and tells that go through it (`try_tell`) keep one order, while
    /// the recipient's small mailbox and a small flow window make both ways meet a spent
    /// window again and again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tells_skipping_the_lane_and_tells_through_it_keep_their_order() {
        const COUNT: u64 = 3_000;
        let config = || crate::GatewayConfig {
            flow: Some(plexus_transport::FlowConfig {
                window_messages: 16,
                ..plexus_transport::FlowConfig::default()
            }),
            ..crate::GatewayConfig::default()
        };
        let here = crate::Gateway::new(Location::Local(0), config()).unwrap();
        let there = crate::Gateway::new(Location::Local(0), config()).unwrap();
        let server = there
            .serve("tcp://127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let far = plexus_core::Proc::builder(ProcId::unique("far"))
            .default_mailbox(plexus_core::Mailbox::Bounded(2))
            .build();
        let _far_attached = there.attach(&far).unwrap();
        let near = plexus_core::Proc::new(ProcId::unique("near"));
        let _near_attached = here.attach(&near).unwrap();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let recorder = far.spawn("recorder", Recorder(seen_tx)).unwrap();
        far.expose_remote(&recorder).unwrap();
        let addr = plexus_core::ProcAddr::new(far.id().clone(), server.location().clone());
        let remote: plexus_core::ActorRef<Recorder> =
            near.lookup_remote(&addr, "recorder").await.unwrap();

        let (mut skipped_or_waited, mut queued) = (0, 0);
        for n in 0..COUNT {
            if n % 5 == 0 {
                match remote.try_tell(Seq(n)) {
                    Ok(()) => queued += 1,
                    Err(error) => {
                        let Seq(n) = error.into_message().expect("only a full lane refuses");
                        remote.tell(Seq(n)).await.unwrap();
                    }
                }
            } else {
                remote.tell(Seq(n)).await.unwrap();
                skipped_or_waited += 1;
            }
        }
        for expected in 0..COUNT {
            let n = tokio::time::timeout(Duration::from_secs(10), seen.recv())
                .await
                .unwrap_or_else(|_| panic!("tell {expected} did not arrive"))
                .unwrap();
            assert_eq!(n, expected, "tells arrived out of order");
        }
        assert!(queued > 0 && skipped_or_waited > 0);
        assert_eq!(here.stats().bounced, 0);
    }
}
