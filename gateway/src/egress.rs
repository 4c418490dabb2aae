//! The way out of a networked gateway: the outproc transport manager, with one queue and
//! one sending task per destination so that posting never waits.
//!
//! `Forwarder::forward` must not block, but sending to a destination may wait for its
//! dial and for room on its connection. Each destination therefore gets a bounded queue
//! drained by its own task, which sends one envelope after another: envelopes posted to
//! one destination keep their order (per-pair FIFO holds because the transport keeps a
//! pair on one wire), a full queue refuses at once ([`PostError::Full`]), and an awaited
//! tell ([`NetworkEgress::send`]) waits for room in it instead. What the task cannot send
//! is bounced to the gateway, which logs it, counts it and reports it to the sender.
//!
//! Requests do not take the queue: they use the manager's request path directly, whose
//! responses are routed by id and which fails at once with `Disconnected` when the
//! connection carrying the request ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use plexus_codec::NetworkEnvelope;
use plexus_core::Location;
use plexus_transport::{Dest, OutprocTransportManager};
use tokio::sync::{mpsc, oneshot};

use crate::error::{PostError, RemoteRequestError};
use crate::gateway::Forwarder;
use crate::protocol;

/// What a sending task takes from its queue.
pub(crate) enum Outgoing {
    Envelope(NetworkEnvelope),
    /// An envelope whose sender waits to learn whether it was handed to a connection.
    Acked(NetworkEnvelope, oneshot::Sender<Result<(), PostError>>),
    /// Answered once everything queued before it was sent or bounced.
    Flush(oneshot::Sender<()>),
}

/// Called with every envelope a sending task could not send.
pub(crate) type Bounce = Arc<dyn Fn(NetworkEnvelope, PostError) + Send + Sync>;

/// The manager and the per-destination queues.
pub(crate) struct NetworkEgress {
    manager: Arc<OutprocTransportManager>,
    queues: Mutex<HashMap<Dest, mpsc::Sender<Outgoing>>>,
    capacity: usize,
    bounce: Bounce,
}

impl NetworkEgress {
    pub(crate) fn new(manager: OutprocTransportManager, capacity: usize, bounce: Bounce) -> Self {
        NetworkEgress {
            manager: Arc::new(manager),
            queues: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            bounce,
        }
    }

    pub(crate) fn manager(&self) -> &OutprocTransportManager {
        &self.manager
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<Dest, mpsc::Sender<Outgoing>>> {
        // Every statement leaves the map consistent, so a poisoned lock is still valid.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue of `dest`, starting its task on first use.
    fn queue(&self, dest: &Dest) -> mpsc::Sender<Outgoing> {
        let mut queues = self.queues();
        if let Some(queue) = queues.get(dest).filter(|queue| !queue.is_closed()) {
            return queue.clone();
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        queues.insert(dest.clone(), tx.clone());
        drop(queues);
        tokio::spawn(drain(
            Arc::clone(&self.manager),
            dest.clone(),
            rx,
            Arc::clone(&self.bounce),
        ));
        tx
    }

    /// Queues a tell for `dest`, waiting for room in its queue.
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
    ) -> Result<(), PostError> {
        let key = Dest::new(dest.clone());
        let queue = self.queue(&key);
        let connected = self
            .manager
            .transport(&key)
            .is_some_and(|transport| transport.is_healthy());
        let recipient = envelope.recipient.clone();
        let broken = || PostError::BrokenLink {
            recipient: recipient.clone(),
        };
        if connected {
            return queue
                .send(Outgoing::Envelope(envelope))
                .await
                .map_err(|_| broken());
        }
        let (ack, outcome) = oneshot::channel();
        queue
            .send(Outgoing::Acked(envelope, ack))
            .await
            .map_err(|_| broken())?;
        outcome.await.unwrap_or_else(|_| Err(broken()))
    }

    /// Waits until everything queued for `dest` so far was handed to a connection or
    /// bounced.
    async fn drain_queue(&self, dest: &Dest) {
        let queue = self.queues().get(dest).cloned();
        if let Some(queue) = queue {
            flush_queues(vec![queue]).await;
        }
    }

    /// Sends a request to `dest` and waits at most `timeout` for its answer.
    ///
    /// The request leaves after every tell queued for `dest` before it (so a tell then an
    /// ask from one sender arrive in that order), then takes the manager's request path.
    pub(crate) async fn request(
        &self,
        dest: &Location,
        envelope: NetworkEnvelope,
        timeout: Duration,
    ) -> Result<Bytes, RemoteRequestError> {
        let dest = Dest::new(dest.clone());
        let started = tokio::time::Instant::now();
        if tokio::time::timeout(timeout, self.drain_queue(&dest))
            .await
            .is_err()
        {
            return Err(RemoteRequestError::Timeout { after: timeout });
        }
        let left = timeout.saturating_sub(started.elapsed());
        match self.manager.request(&dest, envelope, left).await {
            Ok(response) => protocol::read_response(&response),
            Err(error) => Err(RemoteRequestError::from_transport(&dest, error)),
        }
    }
}

impl Forwarder for NetworkEgress {
    fn forward(&self, dest: &Location, envelope: NetworkEnvelope) -> Result<(), PostError> {
        let queue = self.queue(&Dest::new(dest.clone()));
        match queue.try_send(Outgoing::Envelope(envelope)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(%dest, "queue towards destination full, envelope refused");
                Err(PostError::Full { dest: dest.clone() })
            }
            Err(mpsc::error::TrySendError::Closed(outgoing)) => match outgoing {
                Outgoing::Envelope(envelope) | Outgoing::Acked(envelope, _) => {
                    Err(PostError::BrokenLink {
                        recipient: envelope.recipient,
                    })
                }
                Outgoing::Flush(_) => Ok(()),
            },
        }
    }

    fn flush(&self) -> BoxFuture<'static, ()> {
        let queues: Vec<mpsc::Sender<Outgoing>> = self.queues().values().cloned().collect();
        Box::pin(flush_queues(queues))
    }
}

/// Sends a flush marker down every queue and waits for each to come out.
pub(crate) async fn flush_queues(queues: Vec<mpsc::Sender<Outgoing>>) {
    let mut acks = Vec::with_capacity(queues.len());
    for queue in queues {
        let (tx, rx) = oneshot::channel();
        // A closed queue has no task left, so nothing of it is pending.
        if queue.send(Outgoing::Flush(tx)).await.is_ok() {
            acks.push(rx);
        }
    }
    for ack in acks {
        let _ = ack.await;
    }
}

/// The sending task of one destination: one envelope after another, each handed to a
/// connection or bounced.
async fn drain(
    manager: Arc<OutprocTransportManager>,
    dest: Dest,
    mut queue: mpsc::Receiver<Outgoing>,
    bounce: Bounce,
) {
    while let Some(outgoing) = queue.recv().await {
        let (envelope, ack) = match outgoing {
            Outgoing::Envelope(envelope) => (envelope, None),
            Outgoing::Acked(envelope, ack) => (envelope, Some(ack)),
            Outgoing::Flush(ack) => {
                let _ = ack.send(());
                continue;
            }
        };
        // Kept for the bounce report: the transport consumes the envelope.
        let header = header_of(&envelope);
        let outcome = manager
            .send(&dest, envelope)
            .await
            .map_err(|source| PostError::Transport {
                dest: dest.location().clone(),
                source: Box::new(source),
            });
        match (outcome, ack) {
            (outcome, Some(ack)) => {
                // The waiting sender learns the outcome and reports it itself.
                if let Err(Err(error)) = ack.send(outcome) {
                    bounce(header, error);
                }
            }
            (Err(error), None) => bounce(header, error),
            (Ok(()), None) => {}
        }
    }
}

/// The envelope without its payload: what a bounce report needs.
pub(crate) fn header_of(envelope: &NetworkEnvelope) -> NetworkEnvelope {
    NetworkEnvelope {
        sender: envelope.sender.clone(),
        recipient: envelope.recipient.clone(),
        trace_id: envelope.trace_id,
        hop_limit: envelope.hop_limit,
        kind: envelope.kind.clone(),
        name: envelope.name.clone(),
        payload: Bytes::new(),
    }
}
