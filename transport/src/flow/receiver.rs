//! The receiving end of flow control for one connection: admits envelopes against their
//! flow's credit, delivers them without ever waiting, queues them per flow when the
//! recipient is full, and runs one pusher per blocked flow.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use plexus_codec::{Flow, NetworkEnvelope, Recipient};
use tokio::runtime::Handle;

use super::{FlowConfig, FlowError, FlowKey, FlowMap, RecvFlow, envelope_bytes, flow_key};

/// The local recipients of flow-controlled envelopes, as the receiver sees them; the
/// gateway implements it over its procs' mailboxes.
///
/// Its methods are called while the receiver holds the flow's lock, so they must not call
/// back into the same [`FlowReceiver`].
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
    ///
    /// # Cancel safety
    ///
    /// The future is dropped unfinished when the runtime shuts down, so it must hold
    /// nothing that dropping loses (a reserved slot, for instance, is given back).
    fn wait_for_room(&self, recipient: &Recipient) -> impl Future<Output = Room> + Send;

    /// Like [`try_deliver`](Self::try_deliver), told the connection the envelope came on,
    /// so that a request can be answered on it. The connection's flow receiver calls this
    /// one; the default forgets `from`. The same rules apply: it must not block.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value; boxing it would allocate on every refusal"
    )]
    fn try_deliver_from(
        &self,
        envelope: NetworkEnvelope,
        from: &crate::ConnectionRef,
    ) -> Result<(), Refused> {
        let _ = from;
        self.try_deliver(envelope)
    }

    /// Like [`try_deliver`](Self::try_deliver), with the [`FlowCache`] of the envelope's
    /// flow: what the target learnt about the flow's recipient on an earlier delivery
    /// (how to reach it, say), so it need not look it up for every envelope. A cached
    /// answer must be checked for staleness before it is used. The flow receiver calls
    /// this one, holding the flow's lock; the default ignores the cache.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value; boxing it would allocate on every refusal"
    )]
    fn try_deliver_cached(
        &self,
        envelope: NetworkEnvelope,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        let _ = cache;
        self.try_deliver(envelope)
    }

    /// [`try_deliver_from`](Self::try_deliver_from) with the flow's [`FlowCache`], as in
    /// [`try_deliver_cached`](Self::try_deliver_cached). The default ignores the cache.
    #[allow(
        clippy::result_large_err,
        reason = "the envelope is handed back by value; boxing it would allocate on every refusal"
    )]
    fn try_deliver_from_cached(
        &self,
        envelope: NetworkEnvelope,
        from: &crate::ConnectionRef,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        let _ = cache;
        self.try_deliver_from(envelope, from)
    }

    /// Told about an envelope that was admitted but cannot be delivered (its recipient is
    /// gone), after its credit was released and, for a request, a `Failed` answer was
    /// queued; report it to the undeliverable handler here. Must not block. The default
    /// drops it.
    fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError) {
        let _ = (envelope, reason);
    }
}

impl<T: FlowTarget> FlowTarget for Arc<T> {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        T::try_deliver(self, envelope)
    }

    fn wait_for_room(&self, recipient: &Recipient) -> impl Future<Output = Room> + Send {
        T::wait_for_room(self, recipient)
    }

    fn try_deliver_from(
        &self,
        envelope: NetworkEnvelope,
        from: &crate::ConnectionRef,
    ) -> Result<(), Refused> {
        T::try_deliver_from(self, envelope, from)
    }

    fn try_deliver_cached(
        &self,
        envelope: NetworkEnvelope,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        T::try_deliver_cached(self, envelope, cache)
    }

    fn try_deliver_from_cached(
        &self,
        envelope: NetworkEnvelope,
        from: &crate::ConnectionRef,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        T::try_deliver_from_cached(self, envelope, from, cache)
    }

    fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError) {
        T::undeliverable(self, envelope, reason);
    }
}

/// What a [`FlowTarget`] keeps about one flow between deliveries, in the flow's slot of
/// the receiver: one value of the target's own type, or nothing. It lives as long as the
/// flow (a flow forgotten when idle starts again with an empty cache).
#[derive(Default)]
pub struct FlowCache(Option<Box<dyn Any + Send>>);

impl std::fmt::Debug for FlowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowCache")
            .field("set", &self.0.is_some())
            .finish()
    }
}

impl FlowCache {
    /// The value kept for this flow, when it is a `V`.
    ///
    /// ```
    /// use plexus_transport::FlowCache;
    ///
    /// let mut cache = FlowCache::default();
    /// assert_eq!(cache.get::<u32>(), None);
    /// cache.set(7u32);
    /// assert_eq!(cache.get::<u32>(), Some(&mut 7));
    /// assert_eq!(cache.get::<u64>(), None);
    /// cache.clear();
    /// assert_eq!(cache.get::<u32>(), None);
    /// ```
    pub fn get<V: Any + Send>(&mut self) -> Option<&mut V> {
        self.0.as_mut()?.downcast_mut()
    }

    /// Keeps `value` for this flow, in place of what was kept (reusing its allocation
    /// when that was a `V` too).
    pub fn set<V: Any + Send>(&mut self, value: V) {
        match self.get::<V>() {
            Some(kept) => *kept = value,
            None => self.0 = Some(Box::new(value)),
        }
    }

    /// The value kept for this flow when it is a `V`; otherwise keeps `make()` first.
    ///
    /// ```
    /// use plexus_transport::FlowCache;
    ///
    /// let mut cache = FlowCache::default();
    /// *cache.get_or_insert_with(|| 0u32) += 1;
    /// *cache.get_or_insert_with(|| 0u32) += 1;
    /// assert_eq!(cache.get::<u32>(), Some(&mut 2));
    /// ```
    pub fn get_or_insert_with<V: Any + Send>(&mut self, make: impl FnOnce() -> V) -> &mut V {
        if self.get::<V>().is_none() {
            self.0 = Some(Box::new(make()));
        }
        match self.0.as_mut().and_then(|kept| kept.downcast_mut()) {
            Some(kept) => kept,
            // Just stored a `V` above.
            None => unreachable!("the flow cache holds the value it was just given"),
        }
    }

    /// Forgets what was kept.
    pub fn clear(&mut self) {
        self.0 = None;
    }
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
    flows: Mutex<Slots>,
}

/// The flows' slots, and the one the last envelope went to.
#[derive(Default)]
struct Slots {
    map: FlowMap<Arc<Mutex<Slot>>>,
    /// The slot of the last lookup: a connection mostly carries runs of one flow, and
    /// comparing the envelope's actor ids with it (shared names, so pointer comparisons)
    /// costs far less than hashing both ids and cloning them into a key. Cleared
    /// wherever a slot leaves the map, so it is always a slot of the map.
    last: Option<(Flow, Arc<Mutex<Slot>>)>,
}

/// One flow's state plus the facts that decide who delivers: whether a pusher owns the
/// queue, whether the flow is over, and whether the slot has left the table.
struct Slot {
    state: RecvFlow,
    /// The target's memory of this flow's recipient.
    cache: FlowCache,
    pushing: bool,
    closed: bool,
    /// Forgotten by [`FlowReceiver::flush_idle`]: no longer in the table.
    retired: bool,
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
    ///
    /// `config` should pass [`FlowConfig::validate`] and match the peer's; an invalid
    /// one does not panic, it only makes credit updates more frequent.
    pub fn new(config: FlowConfig, target: T, events: E, runtime: Handle) -> Self {
        FlowReceiver {
            inner: Arc::new(Inner {
                config,
                target,
                events,
                runtime,
                flows: Mutex::new(Slots::default()),
            }),
        }
    }

    /// Takes one envelope from the connection reader. Never waits.
    ///
    /// Fails with [`FlowError::CreditExceeded`] when the peer sent beyond its credit; the
    /// envelope then went to [`FlowEvents::undeliverable`] and the caller should close the
    /// connection, since the two ends no longer agree on the window.
    pub fn receive(&self, envelope: NetworkEnvelope) -> Result<Received, FlowError> {
        let Some(key) = flow_key(&envelope) else {
            return Ok(Received::NotFlowControlled(envelope));
        };
        let bytes = envelope_bytes(&envelope);
        loop {
            let slot = self.inner.slot(key);
            let guard = lock(&slot);
            if guard.retired {
                // Retired slots have already left the table, so the next lookup finds
                // the live slot or makes a new one.
                continue;
            }
            return self.receive_locked(envelope, bytes, &slot, guard);
        }
    }

    /// [`receive`](Self::receive) once the flow's live slot is locked.
    fn receive_locked(
        &self,
        envelope: NetworkEnvelope,
        bytes: u64,
        slot: &Arc<Mutex<Slot>>,
        mut guard: MutexGuard<'_, Slot>,
    ) -> Result<Received, FlowError> {
        if guard.closed {
            let reason = FlowError::Closed {
                recipient: guard.state.flow().recipient.clone(),
            };
            drop(guard);
            self.inner.events.undeliverable(envelope, &reason);
            return Ok(Received::Undeliverable);
        }
        if let Err(error) = guard.state.admit(bytes) {
            drop(guard);
            tracing::warn!(error = %error, "peer broke its flow window");
            self.inner.events.undeliverable(envelope, &error);
            return Err(error);
        }
        if guard.pushing {
            // The pusher owns delivery until the queue is empty; joining the back keeps
            // the flow in order.
            guard.state.enqueue(envelope);
            return Ok(Received::Queued);
        }
        let locked = &mut *guard;
        match self
            .inner
            .target
            .try_deliver_cached(envelope, &mut locked.cache)
        {
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
                let flow = guard.state.flow().clone();
                drop(guard);
                tracing::debug!(recipient = %flow.recipient, "recipient full, starting flow pusher");
                // Spawned directly: starting the pusher must not depend on a message that
                // could itself fail to be delivered.
                let inner = Arc::clone(&self.inner);
                self.inner.runtime.spawn(inner.push(Arc::clone(slot), flow));
                Ok(Received::Queued)
            }
            Err(Refused::Gone(envelope)) => {
                guard.state.enqueue(envelope);
                let flow = guard.state.flow().clone();
                drop(guard);
                self.inner.close(slot, &flow);
                Ok(Received::Undeliverable)
            }
        }
    }

    /// Returns the credit of an envelope of `flow` with `bytes` payload bytes that was
    /// skipped before delivery (its payload did not decode): it is admitted and consumed
    /// at once. Fails like [`receive`](Self::receive) when it broke the peer's credit.
    pub fn skipped(&self, flow: &Flow, bytes: u64) -> Result<(), FlowError> {
        let credit = self.inner.with_slot(FlowKey::of(flow), |mut guard| {
            if guard.closed {
                return Ok(None);
            }
            guard.state.admit(bytes)?;
            Ok(guard.state.consumed(1, bytes))
        })?;
        if let Some(credit) = credit {
            self.inner.events.send_control(credit);
        }
        Ok(())
    }

    /// Grants back the consumed credit of every flow with nothing queued and forgets
    /// those flows, returning how many were forgotten. Call it when the connection goes
    /// quiet (every ping interval, say): it bounds the table to the flows in use, and
    /// lets idle senders regain their full window rather than waiting for a threshold
    /// their trickle of traffic would take long to reach. A forgotten flow is
    /// indistinguishable from a new one: its sender holds the full window.
    pub fn flush_idle(&self) -> usize {
        let mut credits = Vec::new();
        let before;
        let after;
        {
            let mut flows = lock(&self.inner.flows);
            // Any slot may be retired below; the next lookup goes through the map.
            flows.last = None;
            before = flows.map.len();
            flows.map.retain(|_, slot| {
                let mut guard = lock(slot);
                if guard.pushing || guard.closed || guard.state.queued() > 0 {
                    return true;
                }
                credits.extend(guard.state.flush());
                // A reader that looked the slot up before this point finds it retired
                // once it gets the lock and looks the flow up again, so no credit is
                // counted in a slot that has left the table.
                guard.retired = true;
                false
            });
            after = flows.map.len();
        }
        for credit in credits {
            self.inner.events.send_control(credit);
        }
        before - after
    }

    /// How many envelopes of `flow` wait in its queue.
    pub fn queued(&self, flow: &Flow) -> usize {
        let slot = lock(&self.inner.flows).map.get(flow).cloned();
        slot.map_or(0, |slot| lock(&slot).state.queued())
    }

    /// How many flows are known (open, or closed with envelopes still arriving).
    pub fn flow_count(&self) -> usize {
        lock(&self.inner.flows).map.len()
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
    /// Runs `locked` on the live slot of `flow`, created if the flow is new.
    fn with_slot<R>(&self, key: FlowKey<'_>, locked: impl FnOnce(MutexGuard<'_, Slot>) -> R) -> R {
        loop {
            let slot = self.slot(key);
            let guard = lock(&slot);
            if guard.retired {
                // As in `receive`: the next lookup finds the live slot.
                continue;
            }
            return locked(guard);
        }
    }

    /// The slot of the flow `key` names, in the table or new; never a retired one as
    /// long as the table's lock is held, since retiring happens under it too.
    fn slot(&self, key: FlowKey<'_>) -> Arc<Mutex<Slot>> {
        let mut flows = lock(&self.flows);
        if let Some((flow, slot)) = &flows.last
            && key.matches(flow)
        {
            return Arc::clone(slot);
        }
        let flow = key.to_flow();
        let slot = match flows.map.get(&flow) {
            Some(slot) => Arc::clone(slot),
            None => {
                let slot = Arc::new(Mutex::new(Slot {
                    state: RecvFlow::new(flow.clone(), &self.config),
                    cache: FlowCache::default(),
                    pushing: false,
                    closed: false,
                    retired: false,
                }));
                flows.map.insert(flow.clone(), Arc::clone(&slot));
                slot
            }
        };
        flows.last = Some((flow, Arc::clone(&slot)));
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
            // The reader may wait on this lock for one pass of non-blocking deliveries (at
            // most a window of them), never for the recipient to make room.
            let mut guard = lock(slot);
            let locked = &mut *guard;
            loop {
                let Some(envelope) = locked.state.dequeue() else {
                    // Cleared under the lock the reader checks, so an envelope arriving
                    // now is either queued before this point (and delivered above) or
                    // delivered directly by the reader.
                    locked.pushing = false;
                    break Drained::Empty;
                };
                let bytes = envelope_bytes(&envelope);
                match self.target.try_deliver_cached(envelope, &mut locked.cache) {
                    Ok(()) => credits.extend(locked.state.consumed(1, bytes)),
                    Err(Refused::Full(envelope)) => {
                        locked.state.requeue_front(envelope);
                        break Drained::Full;
                    }
                    Err(Refused::Gone(envelope)) => {
                        locked.state.requeue_front(envelope);
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
            .map
            .get(flow)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            flows.map.remove(flow);
        }
        if flows
            .last
            .as_ref()
            .is_some_and(|(_, last)| Arc::ptr_eq(last, slot))
        {
            flows.last = None;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock, and every state is valid between
    // statements, so a poisoned lock still guards consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    use plexus_codec::{EnvelopeKind, Outcome};
    use plexus_core::{ActorId, ProcId};
    use tokio::sync::Notify;

    use super::*;
    use crate::flow::flow_of;

    /// Local mailboxes: each recipient has a room count (absent means unlimited) and may
    /// be gone; delivered envelopes are recorded as (recipient, sequence number).
    #[derive(Default)]
    struct Mailboxes {
        state: Mutex<Boxes>,
        changed: Notify,
    }

    #[derive(Default)]
    struct Boxes {
        room: HashMap<Recipient, usize>,
        gone: HashSet<Recipient>,
        delivered: Vec<(Recipient, u64)>,
    }

    impl Mailboxes {
        fn set_room(&self, recipient: &Recipient, room: usize) {
            lock(&self.state).room.insert(recipient.clone(), room);
            self.changed.notify_waiters();
        }

        fn set_gone(&self, recipient: &Recipient) {
            lock(&self.state).gone.insert(recipient.clone());
            self.changed.notify_waiters();
        }

        fn delivered_to(&self, recipient: &Recipient) -> Vec<u64> {
            lock(&self.state)
                .delivered
                .iter()
                .filter(|(to, _)| to == recipient)
                .map(|(_, seq)| *seq)
                .collect()
        }
    }

    impl FlowTarget for Mailboxes {
        fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
            let mut boxes = lock(&self.state);
            if boxes.gone.contains(&envelope.recipient) {
                return Err(Refused::Gone(envelope));
            }
            if let Some(room) = boxes.room.get_mut(&envelope.recipient) {
                if *room == 0 {
                    return Err(Refused::Full(envelope));
                }
                *room -= 1;
            }
            boxes
                .delivered
                .push((envelope.recipient.clone(), envelope.trace_id));
            Ok(())
        }

        async fn wait_for_room(&self, recipient: &Recipient) -> Room {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                {
                    let boxes = lock(&self.state);
                    if boxes.gone.contains(recipient) {
                        return Room::Gone;
                    }
                    if boxes.room.get(recipient).is_none_or(|room| *room > 0) {
                        return Room::Available;
                    }
                }
                changed.await;
            }
        }
    }

    #[derive(Default)]
    struct Sink {
        controls: Mutex<Vec<NetworkEnvelope>>,
        undeliverable: Mutex<Vec<(u64, FlowError)>>,
    }

    impl FlowEvents for Sink {
        fn send_control(&self, envelope: NetworkEnvelope) {
            lock(&self.controls).push(envelope);
        }

        fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError) {
            lock(&self.undeliverable).push((envelope.trace_id, reason.clone()));
        }
    }

    impl Sink {
        fn credits(&self) -> Vec<(u32, u64)> {
            lock(&self.controls)
                .iter()
                .filter_map(|envelope| match &envelope.kind {
                    EnvelopeKind::Credit {
                        messages, bytes, ..
                    } => Some((*messages, *bytes)),
                    _ => None,
                })
                .collect()
        }

        fn closes(&self) -> Vec<Flow> {
            lock(&self.controls)
                .iter()
                .filter_map(|envelope| match &envelope.kind {
                    EnvelopeKind::FlowClose { flow } => Some((**flow).clone()),
                    _ => None,
                })
                .collect()
        }

        fn undeliverable(&self) -> Vec<(u64, FlowError)> {
            lock(&self.undeliverable).clone()
        }
    }

    type Receiver = FlowReceiver<Mailboxes, Sink>;

    fn receiver(window_messages: u32) -> Receiver {
        FlowReceiver::new(
            FlowConfig {
                window_messages,
                window_bytes: 1 << 20,
                update_percent: 50,
            },
            Mailboxes::default(),
            Sink::default(),
            Handle::current(),
        )
    }

    fn actor(name: &str) -> ActorId {
        ActorId::new(ProcId::new("local", 1), name, 0)
    }

    fn to_actor(name: &str) -> Recipient {
        Recipient::Actor(actor(name))
    }

    fn tell(recipient: &Recipient, seq: u64) -> NetworkEnvelope {
        NetworkEnvelope {
            sender: Some(ActorId::new(ProcId::new("remote", 1), "sender", 0)),
            recipient: recipient.clone(),
            kind: EnvelopeKind::Regular,
            name: "test.Tell".into(),
            payload: vec![0; 10].into(),
            ..NetworkEnvelope::control(EnvelopeKind::Regular)
        }
        .with_trace_id(seq)
    }

    fn flow_to(recipient: &Recipient) -> Flow {
        flow_of(&tell(recipient, 0)).unwrap()
    }

    /// Counts, in each flow's cache, the deliveries of that flow, and records what the
    /// cache held at each delivery.
    #[derive(Default)]
    struct Counting {
        seen: Mutex<Vec<(Recipient, u32)>>,
    }

    impl FlowTarget for Counting {
        fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
            panic!("delivered without its flow's cache: {envelope:?}");
        }

        fn try_deliver_cached(
            &self,
            envelope: NetworkEnvelope,
            cache: &mut FlowCache,
        ) -> Result<(), Refused> {
            let count = cache.get::<u32>().map_or(1, |count| *count + 1);
            cache.set(count);
            lock(&self.seen).push((envelope.recipient, count));
            Ok(())
        }

        async fn wait_for_room(&self, _recipient: &Recipient) -> Room {
            Room::Available
        }
    }

    /// Each flow keeps its own cache from one envelope to the next, interleaved or not.
    #[tokio::test]
    async fn each_flow_keeps_its_own_cache() {
        let receiver = FlowReceiver::new(
            FlowConfig::default(),
            Counting::default(),
            Sink::default(),
            Handle::current(),
        );
        let (a, b) = (to_actor("a"), to_actor("b"));
        for (seq, to) in [&a, &a, &b, &a, &b].into_iter().enumerate() {
            assert!(matches!(
                receiver.receive(tell(to, seq as u64)),
                Ok(Received::Delivered)
            ));
        }
        let seen = lock(&receiver.target().seen).clone();
        let expected = [(&a, 1), (&a, 2), (&b, 1), (&a, 3), (&b, 2)];
        assert_eq!(seen.len(), expected.len());
        for ((to, count), (want_to, want)) in seen.iter().zip(expected) {
            assert_eq!((to, *count), (want_to, want));
        }
    }

    /// Waits up to five seconds for `condition`, failing with `what` if it never holds.
    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }

    /// With a recipient that always has room, every envelope is delivered at once and
    /// credit goes back in updates of half the window; responses bypass flow control.
    #[tokio::test]
    async fn fast_target_delivers_directly_and_grants_at_threshold() {
        let receiver = receiver(64);
        let a = to_actor("a");
        for seq in 0..64 {
            assert!(matches!(
                receiver.receive(tell(&a, seq)).unwrap(),
                Received::Delivered
            ));
        }
        assert_eq!(
            receiver.target().delivered_to(&a),
            (0..64).collect::<Vec<_>>()
        );
        assert_eq!(receiver.events().credits(), [(32, 320), (32, 320)]);
        let reply = NetworkEnvelope {
            kind: EnvelopeKind::Response {
                id: 1,
                outcome: Outcome::Ok,
                is_last: true,
            },
            ..tell(&a, 99)
        };
        assert!(matches!(
            receiver.receive(reply).unwrap(),
            Received::NotFlowControlled(_)
        ));
    }

    /// With a full recipient, a flow's envelopes queue in order; the pusher delivers them
    /// in order as room appears a little at a time, and afterwards delivery is direct again.
    #[tokio::test]
    async fn full_target_queues_in_order_and_pusher_drains_in_order() {
        let receiver = receiver(64);
        let a = to_actor("a");
        receiver.target().set_room(&a, 0);
        for seq in 0..10 {
            assert!(matches!(
                receiver.receive(tell(&a, seq)).unwrap(),
                Received::Queued
            ));
        }
        assert_eq!(receiver.queued(&flow_to(&a)), 10);
        for step in 1..=5 {
            receiver.target().set_room(&a, 2);
            eventually("the pusher delivers into the new room", || {
                receiver.target().delivered_to(&a).len() == step * 2
            })
            .await;
        }
        assert_eq!(
            receiver.target().delivered_to(&a),
            (0..10).collect::<Vec<_>>()
        );
        eventually("the pusher gives the flow back to the reader", || {
            receiver.queued(&flow_to(&a)) == 0
        })
        .await;
        receiver.target().set_room(&a, 1);
        // The pusher may still be between emptying the queue and returning; a later
        // envelope is either delivered directly or, at worst, by that same pusher.
        receiver.receive(tell(&a, 10)).unwrap();
        eventually("the envelope after the queue is delivered", || {
            receiver.target().delivered_to(&a).len() == 11
        })
        .await;
        assert_eq!(
            receiver.target().delivered_to(&a),
            (0..11).collect::<Vec<_>>()
        );
    }

    /// A blocked flow never delays another: the fast recipient's envelopes are delivered
    /// at once while the slow one's wait in their queue, including a group-routed flow
    /// from the same sender.
    #[tokio::test]
    async fn blocked_flow_does_not_delay_another() {
        let receiver = receiver(64);
        let slow = to_actor("slow");
        let fast = to_actor("fast");
        let group = Recipient::Group("workers".into());
        receiver.target().set_room(&slow, 0);
        for seq in 0..20 {
            assert!(matches!(
                receiver.receive(tell(&slow, seq)).unwrap(),
                Received::Queued
            ));
            assert!(matches!(
                receiver.receive(tell(&fast, seq)).unwrap(),
                Received::Delivered
            ));
            assert!(matches!(
                receiver.receive(tell(&group, seq)).unwrap(),
                Received::Delivered
            ));
        }
        assert_eq!(
            receiver.target().delivered_to(&fast),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(
            receiver.target().delivered_to(&group),
            (0..20).collect::<Vec<_>>()
        );
        assert!(receiver.target().delivered_to(&slow).is_empty());
        assert_eq!(receiver.queued(&flow_to(&slow)), 20);
        assert_eq!(receiver.flow_count(), 3);
    }

    /// A peer that sends beyond its window gets a typed error, and the envelope goes to
    /// the undeliverable handler instead of vanishing; the queue stays within the window.
    #[tokio::test]
    async fn exceeding_credit_is_a_typed_error() {
        let receiver = receiver(4);
        let a = to_actor("a");
        receiver.target().set_room(&a, 0);
        for seq in 0..4 {
            receiver.receive(tell(&a, seq)).unwrap();
        }
        let error = receiver.receive(tell(&a, 4)).unwrap_err();
        assert!(matches!(
            error,
            FlowError::CreditExceeded {
                messages_left: 0,
                ..
            }
        ));
        assert_eq!(receiver.events().undeliverable(), [(4, error)]);
        assert_eq!(receiver.queued(&flow_to(&a)), 4);
    }

    /// When the recipient of a blocked flow goes away, its queued envelopes are reported
    /// undeliverable in order, a FlowClose goes to the peer and the flow is forgotten.
    #[tokio::test]
    async fn gone_target_reports_queued_and_closes_the_flow() {
        let receiver = receiver(64);
        let a = to_actor("a");
        receiver.target().set_room(&a, 0);
        for seq in 0..5 {
            receiver.receive(tell(&a, seq)).unwrap();
        }
        receiver.target().set_gone(&a);
        eventually("the pusher closes the flow", || {
            !receiver.events().closes().is_empty()
        })
        .await;
        let reported: Vec<_> = receiver
            .events()
            .undeliverable()
            .into_iter()
            .map(|(seq, reason)| {
                assert!(matches!(reason, FlowError::Closed { .. }));
                seq
            })
            .collect();
        assert_eq!(reported, [0, 1, 2, 3, 4]);
        assert_eq!(receiver.events().closes(), [flow_to(&a)]);
        assert_eq!(receiver.flow_count(), 0);

        // A straggler the peer sent before it saw the close ends the same way.
        assert!(matches!(
            receiver.receive(tell(&a, 5)).unwrap(),
            Received::Undeliverable
        ));
        assert_eq!(receiver.events().undeliverable().len(), 6);
        assert_eq!(receiver.events().closes().len(), 2);
    }

    /// Flushing idle flows grants back their credit below the threshold and forgets
    /// them, keeps a flow that has envelopes queued, and a forgotten flow carries on as a
    /// new one with the full window.
    #[tokio::test]
    async fn flush_idle_grants_credit_and_forgets_idle_flows() {
        let receiver = receiver(64);
        let idle = to_actor("idle");
        let blocked = to_actor("blocked");
        receiver.target().set_room(&blocked, 0);
        for seq in 0..3 {
            receiver.receive(tell(&idle, seq)).unwrap();
            receiver.receive(tell(&blocked, seq)).unwrap();
        }
        assert!(receiver.events().credits().is_empty());
        assert_eq!(receiver.flush_idle(), 1);
        assert_eq!(receiver.events().credits(), [(3, 30)]);
        assert_eq!(receiver.flow_count(), 1);
        assert_eq!(receiver.queued(&flow_to(&blocked)), 3);
        // The sender now holds the full window again: 64 more are admitted.
        for seq in 3..67 {
            receiver.receive(tell(&idle, seq)).unwrap();
        }
        assert_eq!(
            receiver.target().delivered_to(&idle),
            (0..67).collect::<Vec<_>>()
        );
    }

    /// Skipped envelopes (payload did not decode) return their credit like consumed ones.
    #[tokio::test]
    async fn skipped_envelopes_return_credit() {
        let receiver = receiver(4);
        let flow = flow_to(&to_actor("a"));
        receiver.skipped(&flow, 7).unwrap();
        assert!(receiver.events().credits().is_empty());
        receiver.skipped(&flow, 3).unwrap();
        assert_eq!(receiver.events().credits(), [(2, 10)]);
    }
}
