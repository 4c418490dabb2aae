//! Delivery to attached procs without waiting: envelopes go straight to
//! [`Proc::deliver_remote_to`] (by full actor id, so an envelope for an earlier actor of a
//! name never reaches the one that has the name now); an actor whose mailbox is full gets a
//! queue and a pusher task, and every later envelope for it waits in that queue, so its
//! order is kept and the caller (a connection reader) never waits.
//!
//! ```text
//! deliver ─ pusher for the actor? ─ yes ─▶ park behind it (bounded; beyond: Overloaded)
//!           no ─▶ deliver_remote_to ─ Full ─▶ start a pusher with the pending delivery
//!                                 ─ Ok / error ─▶ returned
//! pusher: drain the queue, waiting for room per message; when empty (checked under the
//!         table lock) remove itself, and the direct path resumes
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use plexus_codec::MessageName;
use plexus_core::{ActorId, DeliveryError, PendingDelivery, Proc, RemoteReply};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::PostError;

/// The queues of actors whose mailboxes were found full.
pub(crate) struct Ingress {
    pushers: Mutex<HashMap<ActorId, Arc<Pusher>>>,
    /// How many pushers the table holds, written under its lock. Nearly always zero, so
    /// every delivery reads it instead of taking the lock to learn that nothing waits.
    waiting: AtomicUsize,
    capacity: usize,
}

struct Pusher {
    tx: mpsc::UnboundedSender<Parked>,
    /// Messages parked and not yet pushed; the bound is checked against it.
    queued: AtomicUsize,
    /// Set once the queue is drained and the pusher gone: the actor takes envelopes
    /// directly again. A watch, so a waiter that subscribes late still sees it.
    drained: watch::Sender<bool>,
}

enum Parked {
    Message {
        name: MessageName,
        payload: Bytes,
        reply: Option<RemoteReply>,
    },
    Pending(PendingDelivery),
    Flush(oneshot::Sender<()>),
}

impl Ingress {
    pub(crate) fn new(capacity: usize) -> Self {
        Ingress {
            pushers: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    fn pushers(&self) -> MutexGuard<'_, HashMap<ActorId, Arc<Pusher>>> {
        // Every statement leaves the map consistent, so a poisoned lock is still valid.
        self.pushers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands one message to `actor` of `proc` without waiting. With `reply`, it is an ask
    /// and `reply` is called exactly once.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        proc: &Proc,
        actor: &ActorId,
        name: &MessageName,
        payload: &Bytes,
        mut reply: Option<RemoteReply>,
    ) -> Result<(), PostError> {
        if let Some(pusher) = self.pusher(actor) {
            let parked = Parked::Message {
                name: name.clone(),
                payload: payload.clone(),
                reply,
            };
            match self.park(&pusher, actor, parked) {
                Ok(outcome) => return outcome,
                // The pusher drained its queue and ended after the lookup, so nothing of
                // this actor waits any more and the direct path keeps the order.
                Err(Parked::Message { reply: back, .. }) => reply = back,
                Err(_) => return Ok(()),
            }
        }
        match proc.deliver_remote_to(actor, name, payload, reply) {
            Ok(()) => Ok(()),
            Err(DeliveryError::Full { pending }) => self.park_pending(proc, actor, *pending),
            Err(source) => {
                tracing::debug!(%actor, name = %name, error = %source, "attached proc refused envelope");
                Err(PostError::Delivery {
                    proc: proc.id().clone(),
                    source,
                })
            }
        }
    }

    /// Waits until everything parked before the call has been pushed or refused.
    pub(crate) async fn flush(&self) {
        let pushers: Vec<Arc<Pusher>> = self.pushers().values().cloned().collect();
        let mut acks = Vec::with_capacity(pushers.len());
        for pusher in pushers {
            let (tx, rx) = oneshot::channel();
            // A pusher that already ended has drained its queue; its ack then fails at once.
            let _ = pusher.tx.send(Parked::Flush(tx));
            acks.push(rx);
        }
        for ack in acks {
            let _ = ack.await;
        }
    }

    /// Parks `parked` behind `pusher`: `Ok` with the outcome (refused when the queue is at
    /// its bound), or the message back when the pusher has already ended.
    fn park(
        &self,
        pusher: &Pusher,
        actor: &ActorId,
        parked: Parked,
    ) -> Result<Result<(), PostError>, Parked> {
        if pusher.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            pusher.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%actor, capacity = self.capacity, "ingress queue full, envelope refused");
            // An ask's reply callback must be answered exactly once, also when refused.
            if let Parked::Message {
                reply: Some(reply), ..
            } = parked
            {
                reply(Err(plexus_core::RemoteAskError::Abandoned));
            }
            return Ok(Err(PostError::Overloaded {
                actor: actor.clone(),
            }));
        }
        match pusher.tx.send(parked) {
            Ok(()) => Ok(Ok(())),
            Err(mpsc::error::SendError(parked)) => {
                pusher.queued.fetch_sub(1, Ordering::AcqRel);
                Err(parked)
            }
        }
    }

    /// The pusher of `actor`, when its messages wait behind a full mailbox.
    fn pusher(&self, actor: &ActorId) -> Option<Arc<Pusher>> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.pushers().get(actor).cloned()
    }

    /// Whether envelopes for `actor` wait behind a full mailbox now.
    pub(crate) fn is_waiting(&self, actor: &ActorId) -> bool {
        // A pusher started on this thread was counted before this load; one started on
        // another thread concurrently is a race the lock did not decide either.
        self.waiting.load(Ordering::Acquire) != 0 && self.pushers().contains_key(actor)
    }

    /// Resolves once nothing waits for `actor` in this gateway any more (at once when
    /// nothing does now).
    pub(crate) fn drained(
        &self,
        actor: &ActorId,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut drained = self
            .pushers()
            .get(actor)
            .map(|pusher| pusher.drained.subscribe());
        async move {
            if let Some(drained) = drained.as_mut() {
                // An error means the pusher is gone, which is drained too.
                let _ = drained.wait_for(|done| *done).await;
            }
        }
    }

    /// Parks a delivery that found `actor`'s mailbox full, starting its pusher.
    pub(crate) fn park_pending(
        self: &Arc<Self>,
        proc: &Proc,
        actor: &ActorId,
        pending: PendingDelivery,
    ) -> Result<(), PostError> {
        let mut pushers = self.pushers();
        if let Some(pusher) = pushers.get(actor).cloned() {
            // Holding the table lock, the pusher cannot end between lookup and send.
            return match self.park(&pusher, actor, Parked::Pending(pending)) {
                Ok(outcome) => outcome,
                Err(_) => Err(PostError::Overloaded {
                    actor: actor.clone(),
                }),
            };
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No task can wait for room here; the pending delivery answers an ask with
            // `Abandoned` when dropped.
            return Err(PostError::Overloaded {
                actor: actor.clone(),
            });
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let pusher = Arc::new(Pusher {
            tx,
            queued: AtomicUsize::new(1),
            drained: watch::Sender::new(false),
        });
        if pusher.tx.send(Parked::Pending(pending)).is_err() {
            return Err(PostError::Overloaded {
                actor: actor.clone(),
            });
        }
        pushers.insert(actor.clone(), pusher.clone());
        self.waiting.store(pushers.len(), Ordering::Release);
        drop(pushers);
        tracing::debug!(%actor, "mailbox full, ingress queue started");
        runtime.spawn(push(
            Arc::downgrade(self),
            proc.clone(),
            actor.clone(),
            pusher,
            rx,
        ));
        Ok(())
    }
}

/// Drains one actor's queue, waiting for room for each message, and removes the queue
/// once it is empty.
async fn push(
    ingress: std::sync::Weak<Ingress>,
    proc: Proc,
    actor: ActorId,
    pusher: Arc<Pusher>,
    mut rx: mpsc::UnboundedReceiver<Parked>,
) {
    loop {
        let parked = match rx.try_recv() {
            Ok(parked) => parked,
            Err(_) => {
                let Some(ingress) = ingress.upgrade() else {
                    return;
                };
                let mut pushers = ingress.pushers();
                // Checked again under the lock: a sender that found this pusher in the map
                // has sent before the lock was released.
                match rx.try_recv() {
                    Ok(parked) => parked,
                    Err(_) => {
                        if pushers
                            .get(&actor)
                            .is_some_and(|current| Arc::ptr_eq(current, &pusher))
                        {
                            pushers.remove(&actor);
                            ingress.waiting.store(pushers.len(), Ordering::Release);
                        }
                        pusher.drained.send_replace(true);
                        tracing::debug!(%actor, "ingress queue drained");
                        return;
                    }
                }
            }
        };
        let outcome = match parked {
            Parked::Flush(ack) => {
                let _ = ack.send(());
                continue;
            }
            Parked::Pending(pending) => pending.deliver().await,
            Parked::Message {
                name,
                payload,
                reply,
            } => match proc.deliver_remote_to(&actor, &name, &payload, reply) {
                Err(DeliveryError::Full { pending }) => pending.deliver().await,
                other => other,
            },
        };
        pusher.queued.fetch_sub(1, Ordering::AcqRel);
        if let Err(error) = outcome {
            tracing::debug!(%actor, %error, "queued envelope not delivered");
        }
    }
}
