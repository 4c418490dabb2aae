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
//! Requests use the manager's request path, whose responses are routed by id and which
//! fails at once with `Disconnected` when the connection carrying the request ends; a
//! request first waits until its lane's queued tells are sent, so a tell then an ask of
//! one sender arrive in that order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use plexus_codec::{NetworkEnvelope, Recipient};
use plexus_core::{ActorId, Location, ProcId};
use plexus_transport::{Dest, OutprocTransportManager};
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

impl Outgoing {
    fn recipient(&self) -> Recipient {
        match self {
            Outgoing::Envelope(envelope) | Outgoing::Acked(envelope, _) => {
                envelope.recipient.clone()
            }
            Outgoing::Flush(_) => Recipient::Transport,
        }
    }
}

/// Called with every envelope a sending task could not send, and the proc it came from
/// when known (its undeliverable handler gets the report).
pub(crate) type Bounce = Arc<dyn Fn(NetworkEnvelope, PostError, Option<&ProcId>) + Send + Sync>;

/// One ordered stream towards a destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Lane {
    dest: Dest,
    sender: Option<ActorId>,
    recipient: Recipient,
    /// The proc the lane's tells come from: the sender's, or for tells sent from outside
    /// any actor the proc whose route took them (`None` when nobody said). Its
    /// undeliverable handler hears of every tell the lane's task cannot send.
    origin: Option<ProcId>,
}

impl Lane {
    fn of(dest: &Location, envelope: &NetworkEnvelope, origin: Option<&ProcId>) -> Self {
        let origin = match &envelope.sender {
            Some(sender) => Some(sender.proc().clone()),
            None => origin.cloned(),
        };
        Lane {
            dest: Dest::new(dest.clone()),
            sender: envelope.sender.clone(),
            recipient: envelope.recipient.clone(),
            origin,
        }
    }
}

/// A lane's queue; compared by allocation to tell a lane from its successor.
struct Queue {
    tx: mpsc::Sender<Outgoing>,
}

type Lanes = Mutex<HashMap<Lane, Arc<Queue>>>;

/// The manager and the lanes.
pub(crate) struct NetworkEgress {
    manager: Arc<OutprocTransportManager>,
    lanes: Arc<Lanes>,
    capacity: usize,
    bounce: Bounce,
}

fn lock(lanes: &Lanes) -> MutexGuard<'_, HashMap<Lane, Arc<Queue>>> {
    // Every statement leaves the map consistent, so a poisoned lock is still valid.
    lanes.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NetworkEgress {
    pub(crate) fn new(manager: OutprocTransportManager, capacity: usize, bounce: Bounce) -> Self {
        NetworkEgress {
            manager: Arc::new(manager),
            lanes: Arc::new(Mutex::new(HashMap::new())),
            capacity: capacity.max(1),
            bounce,
        }
    }

    pub(crate) fn manager(&self) -> &OutprocTransportManager {
        &self.manager
    }

    /// The queue of `lane` (under the held lock), starting its task on first use.
    fn queue(&self, lanes: &mut HashMap<Lane, Arc<Queue>>, lane: &Lane) -> Arc<Queue> {
        if let Some(queue) = lanes.get(lane) {
            return Arc::clone(queue);
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        let queue = Arc::new(Queue { tx });
        lanes.insert(lane.clone(), Arc::clone(&queue));
        tokio::spawn(drain(
            Arc::clone(&self.manager),
            lane.clone(),
            Arc::clone(&queue),
            rx,
            Arc::downgrade(&self.lanes),
            Arc::clone(&self.bounce),
        ));
        queue
    }

    /// Pushes without waiting; hands the item back when the lane's queue is full.
    #[allow(
        clippy::result_large_err,
        reason = "the item is handed back by value to be pushed again; boxing it would \
                  allocate on every full queue"
    )]
    fn push_now(&self, lane: &Lane, mut outgoing: Outgoing) -> Result<(), Outgoing> {
        let mut lanes = lock(&self.lanes);
        // Twice at most: a lane whose task died without removing itself (a panic) is
        // replaced once.
        for _ in 0..2 {
            let queue = self.queue(&mut lanes, lane);
            match queue.tx.try_send(outgoing) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => return Err(back),
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    tracing::warn!(dest = %lane.dest, "lane task gone, lane replaced");
                    lanes.remove(lane);
                    outgoing = back;
                }
            }
        }
        Err(outgoing)
    }

    /// Pushes, waiting for room in the lane's queue.
    async fn push(&self, lane: &Lane, mut outgoing: Outgoing) {
        loop {
            outgoing = match self.push_now(lane, outgoing) {
                Ok(()) => return,
                Err(outgoing) => outgoing,
            };
            let queue = match lock(&self.lanes).get(lane) {
                Some(queue) => Arc::clone(queue),
                None => continue,
            };
            let Ok(permit) = queue.tx.reserve().await else {
                continue;
            };
            let lanes = lock(&self.lanes);
            // The slot is only used if its task still runs, which the table says.
            if lanes
                .get(lane)
                .is_some_and(|current| Arc::ptr_eq(current, &queue))
            {
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
        let lane = Lane::of(dest, &envelope, origin);
        let connected = self
            .manager
            .transport(&lane.dest)
            .is_some_and(|transport| transport.is_healthy());
        if connected {
            self.push(&lane, Outgoing::Envelope(envelope)).await;
            return Ok(());
        }
        let recipient = envelope.recipient.clone();
        let (ack, outcome) = oneshot::channel();
        self.push(&lane, Outgoing::Acked(envelope, ack)).await;
        outcome
            .await
            .unwrap_or(Err(PostError::BrokenLink { recipient }))
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
        let lane = Lane::of(dest, &envelope, origin);
        let started = tokio::time::Instant::now();
        let queued = lock(&self.lanes).get(&lane).map(|queue| queue.tx.clone());
        if let Some(queue) = queued {
            if tokio::time::timeout(timeout, flush_queues(vec![queue]))
                .await
                .is_err()
            {
                return Err(RemoteRequestError::Timeout { after: timeout });
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        match self.manager.request(&lane.dest, envelope, left).await {
            Ok(response) => protocol::read_response(&response),
            Err(error) => Err(RemoteRequestError::from_transport(&lane.dest, error)),
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
        let lane = Lane::of(dest, &envelope, origin);
        match self.push_now(&lane, Outgoing::Envelope(envelope)) {
            Ok(()) => Ok(()),
            Err(outgoing) => {
                tracing::debug!(%dest, recipient = %outgoing.recipient(), "lane full, envelope refused");
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
            .values()
            .map(|queue| queue.tx.clone())
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

/// The sending task of one lane: one envelope after another, each handed to a connection
/// or bounced; ends after [`LANE_IDLE`] without traffic.
async fn drain(
    manager: Arc<OutprocTransportManager>,
    lane: Lane,
    queue: Arc<Queue>,
    mut rx: mpsc::Receiver<Outgoing>,
    lanes: Weak<Lanes>,
    bounce: Bounce,
) {
    loop {
        let outgoing = match tokio::time::timeout(LANE_IDLE, rx.recv()).await {
            Ok(Some(outgoing)) => outgoing,
            Ok(None) => return,
            Err(_) => {
                let Some(lanes) = lanes.upgrade() else { return };
                let mut table = lock(&lanes);
                match rx.try_recv() {
                    Ok(outgoing) => outgoing,
                    Err(_) => {
                        if table
                            .get(&lane)
                            .is_some_and(|current| Arc::ptr_eq(current, &queue))
                        {
                            table.remove(&lane);
                        }
                        return;
                    }
                }
            }
        };
        let (envelope, ack) = match outgoing {
            Outgoing::Envelope(envelope) => (envelope, None),
            Outgoing::Acked(envelope, ack) => (envelope, Some(ack)),
            Outgoing::Flush(ack) => {
                let _ = ack.send(());
                continue;
            }
        };
        // Kept for the bounce report: the transport consumes the envelope (the copy shares
        // the payload's bytes).
        let kept = envelope.clone();
        if lanes.strong_count() == 0 {
            // The gateway is gone: sending would dial again from a gateway nobody holds.
            let recipient = envelope.recipient;
            let error = PostError::BrokenLink { recipient };
            match ack {
                Some(ack) => {
                    if let Err(Err(error)) = ack.send(Err(error)) {
                        bounce(kept, error, lane.origin.as_ref());
                    }
                }
                None => bounce(kept, error, lane.origin.as_ref()),
            }
            continue;
        }
        let outcome =
            manager
                .send(&lane.dest, envelope)
                .await
                .map_err(|source| PostError::Transport {
                    dest: lane.dest.location().clone(),
                    source: Box::new(source),
                });
        match (outcome, ack) {
            (outcome, Some(ack)) => {
                // The waiting sender learns the outcome and reports it itself.
                if let Err(Err(error)) = ack.send(outcome) {
                    bounce(kept, error, lane.origin.as_ref());
                }
            }
            (Err(error), None) => bounce(kept, error, lane.origin.as_ref()),
            (Ok(()), None) => {}
        }
    }
}

/// A copy of the envelope for a bounce report; the payload's bytes are shared, not
/// copied, so the sender's undeliverable handler can still get them.
pub(crate) fn header_of(envelope: &NetworkEnvelope) -> NetworkEnvelope {
    envelope.clone()
}
