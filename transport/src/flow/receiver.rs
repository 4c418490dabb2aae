//! The receiving end of flow control for one connection: admits envelopes against their
//! flow's credit, delivers them without ever waiting, queues them per flow when the
//! recipient is full, and runs one pusher per blocked flow.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use plexus_codec::{Flow, NetworkEnvelope, Recipient};
use tokio::runtime::Handle;

use super::{FlowConfig, FlowError, RecvFlow, envelope_bytes, flow_of};

/// The local recipients of flow-controlled envelopes, as the receiver sees them; the
/// gateway implements it over its procs' mailboxes.
pub trait FlowTarget: Send + Sync + 'static {
    /// Hands `envelope` to its recipient if it has room now. **Must not block**: it is
    /// called from the connection reader. Gives the envelope back when the recipient is
    /// full or gone.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value; boxing it would allocate on every refusal"
    )]
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused>;

    /// Resolves once `recipient` may have room (then the pusher tries again, and waits
    /// again if it is still full) or once it is gone. It should not resolve
    /// [`Room::Available`] over and over while the recipient stays full, or the pusher
    /// spins.
    fn wait_for_room(&self, recipient: &Recipient) -> impl Future<Output = Room> + Send;
}

/// Why [`FlowTarget::try_deliver`] did not take an envelope; the envelope is handed back.
#[derive(Debug)]
pub enum Refused {
    /// The recipient's mailbox is full; it may have room later.
    Full(NetworkEnvelope),
    /// The recipient is gone (stopped, or never existed); it never will have room.
    Gone(NetworkEnvelope),
}

/// What [`FlowTarget::wait_for_room`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// The recipient may have room now.
    Available,
    /// The recipient is gone.
    Gone,
}

/// Where the receiver sends what it produces. Both methods are called from the
/// connection reader or a pusher and **must not block**.
pub trait FlowEvents: Send + Sync + 'static {
    /// Sends a `Credit` or `FlowClose` envelope to the peer (typically a `try_send` on the
    /// connection's control queue).
    fn send_control(&self, envelope: NetworkEnvelope);

    /// Takes an envelope that was admitted but cannot be delivered, with the reason, for
    /// the undeliverable handler (design 3.5). Its credit has been released.
    fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError);
}

/// What [`FlowReceiver::receive`] did with an envelope.
#[derive(Debug)]
pub enum Received {
    /// The recipient took it.
    Delivered,
    /// It waits in its flow's queue for the pusher.
    Queued,
    /// Its recipient is gone: it went to [`FlowEvents::undeliverable`].
    Undeliverable,
    /// It is not flow controlled (a response, a control envelope); handed back untouched
    /// for the caller to route.
    NotFlowControlled(NetworkEnvelope),
}

/// The receiving end of flow control for one connection.
///
/// Call [`receive`](Self::receive) from the connection reader for every envelope. It never
/// waits: an envelope goes straight to the [`FlowTarget`] when its flow has nothing
/// queued and the recipient has room, and otherwise to the back of the flow's queue,
/// which a pusher task (spawned directly on the runtime, the first time the flow is
/// blocked) drains in order as the recipient makes room. A blocked flow therefore delays
/// no other flow, and its sender runs out of credit instead of the connection stalling.
///
/// Cloning is cheap and shares the flows.
pub struct FlowReceiver<T, E> {
    inner: Arc<Inner<T, E>>,
}

impl<T, E> Clone for FlowReceiver<T, E> {
    fn clone(&self) -> Self {
        FlowReceiver {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<T, E> {
    config: FlowConfig,
    target: T,
    events: E,
    runtime: Handle,
    flows: Mutex<HashMap<Flow, Arc<Mutex<Slot>>>>,
}

/// One flow's state plus the two facts that decide who delivers: whether a pusher owns
/// the queue, and whether the flow is over.
struct Slot {
    state: RecvFlow,
    pushing: bool,
    closed: bool,
}

/// What a pass over a flow's queue ended with.
enum Drained {
    /// The queue is empty; the pusher is done.
    Empty,
    /// The recipient is full again.
    Full,
    /// The recipient is gone.
    Gone,
}

impl<T: FlowTarget, E: FlowEvents> FlowReceiver<T, E> {
    /// A receiver with no flows yet, whose pushers run on `runtime`.
    pub fn new(config: FlowConfig, target: T, events: E, runtime: Handle) -> Self {
        FlowReceiver {
            inner: Arc::new(Inner {
                config,
                target,
                events,
                runtime,
                flows: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes one envelope from the connection reader. Never waits.
    ///
    /// Fails with [`FlowError::CreditExceeded`] when the peer sent beyond its credit; the
    /// envelope then went to [`FlowEvents::undeliverable`] and the caller should close the
    /// connection, since the two ends no longer agree on the window.
    pub fn receive(&self, envelope: NetworkEnvelope) -> Result<Received, FlowError> {
        let Some(flow) = flow_of(&envelope) else {
            return Ok(Received::NotFlowControlled(envelope));
        };
        let bytes = envelope_bytes(&envelope);
        let slot = self.inner.slot(&flow);
        let mut guard = lock(&slot);
        if guard.closed {
            drop(guard);
            let reason = FlowError::Closed {
                recipient: flow.recipient.clone(),
            };
            self.inner.events.undeliverable(envelope, &reason);
            return Ok(Received::Undeliverable);
        }
        if let Err(error) = guard.state.admit(bytes) {
            drop(guard);
            tracing::warn!(recipient = %flow.recipient, error = %error, "peer broke its flow window");
            self.inner.events.undeliverable(envelope, &error);
            return Err(error);
        }
        if guard.pushing {
            // The pusher owns delivery until the queue is empty; joining the back keeps
            // the flow in order.
            guard.state.enqueue(envelope);
            return Ok(Received::Queued);
        }
        match self.inner.target.try_deliver(envelope) {
            Ok(()) => {
                let credit = guard.state.consumed(1, bytes);
                drop(guard);
                if let Some(credit) = credit {
                    self.inner.events.send_control(credit);
                }
                Ok(Received::Delivered)
            }
            Err(Refused::Full(envelope)) => {
                guard.state.enqueue(envelope);
                guard.pushing = true;
                drop(guard);
                tracing::debug!(recipient = %flow.recipient, "recipient full, starting flow pusher");
                // Spawned directly: starting the pusher must not depend on a message that
                // could itself fail to be delivered.
                let inner = Arc::clone(&self.inner);
                self.inner.runtime.spawn(inner.push(slot, flow));
                Ok(Received::Queued)
            }
            Err(Refused::Gone(envelope)) => {
                guard.state.enqueue(envelope);
                drop(guard);
                self.inner.close(&slot, &flow);
                Ok(Received::Undeliverable)
            }
        }
    }

    /// Returns the credit of an envelope of `flow` with `bytes` payload bytes that was
    /// skipped before delivery (its payload did not decode): it is admitted and consumed
    /// at once. Fails like [`receive`](Self::receive) when it broke the peer's credit.
    pub fn skipped(&self, flow: &Flow, bytes: u64) -> Result<(), FlowError> {
        let slot = self.inner.slot(flow);
        let mut guard = lock(&slot);
        if guard.closed {
            return Ok(());
        }
        guard.state.admit(bytes)?;
        let credit = guard.state.consumed(1, bytes);
        drop(guard);
        if let Some(credit) = credit {
            self.inner.events.send_control(credit);
        }
        Ok(())
    }

    /// How many envelopes of `flow` wait in its queue.
    pub fn queued(&self, flow: &Flow) -> usize {
        let slot = lock(&self.inner.flows).get(flow).cloned();
        slot.map_or(0, |slot| lock(&slot).state.queued())
    }

    /// How many flows are known (open, or closed with envelopes still arriving).
    pub fn flow_count(&self) -> usize {
        lock(&self.inner.flows).len()
    }

    /// The flow configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.inner.config
    }

    /// The local recipients.
    pub fn target(&self) -> &T {
        &self.inner.target
    }

    /// The event sink.
    pub fn events(&self) -> &E {
        &self.inner.events
    }
}

impl<T: FlowTarget, E: FlowEvents> Inner<T, E> {
    fn slot(&self, flow: &Flow) -> Arc<Mutex<Slot>> {
        let mut flows = lock(&self.flows);
        if let Some(slot) = flows.get(flow) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(Mutex::new(Slot {
            state: RecvFlow::new(flow.clone(), &self.config),
            pushing: false,
            closed: false,
        }));
        flows.insert(flow.clone(), Arc::clone(&slot));
        slot
    }

    /// The pusher of one flow: waits for room, delivers the queue in order, and ends when
    /// the queue is empty or the recipient is gone.
    async fn push(self: Arc<Self>, slot: Arc<Mutex<Slot>>, flow: Flow) {
        loop {
            if self.target.wait_for_room(&flow.recipient).await == Room::Gone {
                self.close(&slot, &flow);
                return;
            }
            match self.drain(&slot) {
                Drained::Empty => {
                    tracing::debug!(recipient = %flow.recipient, "flow queue drained, pusher done");
                    return;
                }
                Drained::Full => {}
                Drained::Gone => {
                    self.close(&slot, &flow);
                    return;
                }
            }
        }
    }

    /// Delivers queued envelopes until the queue is empty or the recipient refuses one.
    fn drain(&self, slot: &Mutex<Slot>) -> Drained {
        let mut credits = Vec::new();
        let drained = {
            let mut guard = lock(slot);
            loop {
                let Some(envelope) = guard.state.dequeue() else {
                    // Cleared under the lock the reader checks, so an envelope arriving
                    // now is either queued before this point (and delivered above) or
                    // delivered directly by the reader.
                    guard.pushing = false;
                    break Drained::Empty;
                };
                let bytes = envelope_bytes(&envelope);
                match self.target.try_deliver(envelope) {
                    Ok(()) => credits.extend(guard.state.consumed(1, bytes)),
                    Err(Refused::Full(envelope)) => {
                        guard.state.requeue_front(envelope);
                        break Drained::Full;
                    }
                    Err(Refused::Gone(envelope)) => {
                        guard.state.requeue_front(envelope);
                        break Drained::Gone;
                    }
                }
            }
        };
        for credit in credits {
            self.events.send_control(credit);
        }
        drained
    }

    /// Ends a flow whose recipient is gone: its queued envelopes go to the undeliverable
    /// handler with their credit released, the peer gets a `FlowClose`, and the flow is
    /// forgotten (an envelope still in transit makes a new flow that ends the same way).
    fn close(&self, slot: &Arc<Mutex<Slot>>, flow: &Flow) {
        let (queued, close) = {
            let mut guard = lock(slot);
            if guard.closed {
                return;
            }
            guard.closed = true;
            guard.pushing = false;
            guard.state.close()
        };
        tracing::debug!(recipient = %flow.recipient, undeliverable = queued.len(), "recipient gone, closing flow");
        let reason = FlowError::Closed {
            recipient: flow.recipient.clone(),
        };
        for envelope in queued {
            self.events.undeliverable(envelope, &reason);
        }
        self.events.send_control(close);
        let mut flows = lock(&self.flows);
        if flows
            .get(flow)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            flows.remove(flow);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock, and every state is valid between
    // statements, so a poisoned lock still guards consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
