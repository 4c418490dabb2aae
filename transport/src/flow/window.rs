//! The sending end of a flow: credit to spend, waiters, and the table of windows.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use plexus_codec::{EnvelopeKind, Flow, NetworkEnvelope, Recipient};
use tokio::sync::Notify;

use super::{FlowConfig, FlowError, FlowKey, FlowMap, envelope_bytes, flow_key};

/// The credit a sender holds for one flow.
///
/// Starts with the full window of its [`FlowConfig`]; every envelope spends one message
/// and its payload bytes; [`grant`](Self::grant) adds what the receiver returns;
/// [`close`](Self::close) ends the flow for good.
///
/// ```
/// use plexus_codec::{Flow, Recipient};
/// use plexus_transport::{FlowConfig, FlowError, SendWindow};
///
/// let config = FlowConfig { window_messages: 2, ..FlowConfig::default() };
/// let window = SendWindow::new(Flow { sender: None, recipient: Recipient::Group("g".into()) }, &config);
/// window.try_acquire(10)?;
/// window.try_acquire(10)?;
/// assert!(matches!(window.try_acquire(10), Err(FlowError::NoCredit { .. })));
/// window.grant(1, 10);
/// window.try_acquire(10)?;
/// # Ok::<(), FlowError>(())
/// ```
#[derive(Debug)]
pub struct SendWindow {
    flow: Flow,
    max_envelope_bytes: u64,
    state: Mutex<Credit>,
    /// Woken on every grant and on close. Waiters register before they check the state,
    /// so a grant between their check and their sleep still wakes them.
    changed: Notify,
}

#[derive(Debug)]
struct Credit {
    messages: u32,
    bytes: u64,
    closed: bool,
}

impl SendWindow {
    /// A window for `flow` holding the full initial credit of `config`.
    pub fn new(flow: Flow, config: &FlowConfig) -> Self {
        SendWindow {
            flow,
            max_envelope_bytes: config.max_envelope_bytes(),
            state: Mutex::new(Credit {
                messages: config.window_messages,
                bytes: config.window_bytes,
                closed: false,
            }),
            changed: Notify::new(),
        }
    }

    /// The flow this window is for.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Spends the credit of one envelope of `bytes` payload bytes, or fails at once:
    /// [`FlowError::NoCredit`] when there is not enough now, [`FlowError::Closed`] after
    /// [`close`](Self::close), [`FlowError::TooLarge`] for an envelope no window admits.
    pub fn try_acquire(&self, bytes: u64) -> Result<(), FlowError> {
        let mut credit = self.lock();
        self.take(&mut credit, bytes)
    }

    /// Spends the credit of one envelope of `bytes` payload bytes, waiting for a grant
    /// while there is not enough. Fails like [`try_acquire`](Self::try_acquire) except
    /// that it waits instead of returning [`FlowError::NoCredit`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: credit is taken in one step under the lock, only when the future
    /// completes with `Ok`, so dropping it never loses credit.
    pub async fn acquire(&self, bytes: u64) -> Result<(), FlowError> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before checking: a grant that lands after the check but before the
            // await below then finds this waiter and wakes it.
            changed.as_mut().enable();
            match self.try_acquire(bytes) {
                Err(FlowError::NoCredit { .. }) => {}
                outcome => return outcome,
            }
            tracing::trace!(recipient = %self.flow.recipient, bytes, "waiting for flow credit");
            changed.await;
        }
    }

    /// Adds credit returned by the receiver (a `Credit` envelope) and wakes the waiters.
    /// Saturates rather than wrapping: a peer that grants absurd amounts only hurts its
    /// own memory, not this side's arithmetic.
    pub fn grant(&self, messages: u32, bytes: u64) {
        {
            let mut credit = self.lock();
            if credit.closed {
                return;
            }
            credit.messages = credit.messages.saturating_add(messages);
            credit.bytes = credit.bytes.saturating_add(bytes);
        }
        self.changed.notify_waiters();
    }

    /// Closes the flow (a `FlowClose` arrived): every waiting and later acquire fails
    /// with [`FlowError::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Whether the flow is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The credit left now, as (messages, bytes).
    pub fn available(&self) -> (u32, u64) {
        let credit = self.lock();
        (credit.messages, credit.bytes)
    }

    fn take(&self, credit: &mut Credit, bytes: u64) -> Result<(), FlowError> {
        if credit.closed {
            return Err(FlowError::Closed {
                recipient: self.flow.recipient.clone(),
            });
        }
        if bytes > self.max_envelope_bytes {
            return Err(FlowError::TooLarge {
                recipient: self.flow.recipient.clone(),
                bytes,
                max: self.max_envelope_bytes,
            });
        }
        if credit.messages == 0 || credit.bytes < bytes {
            return Err(FlowError::NoCredit {
                recipient: self.flow.recipient.clone(),
                bytes,
                messages_left: credit.messages,
                bytes_left: credit.bytes,
            });
        }
        credit.messages -= 1;
        credit.bytes -= bytes;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Credit> {
        // Nothing panics while holding the lock, and the state is valid after every
        // statement, so a poisoned lock still holds consistent credit.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending windows of one connection, keyed by [`Flow`], created on first use with
/// the initial window of the config.
///
/// Closed windows stay in the table so that later sends on the flow fail at once instead
/// of spending a fresh window on a recipient that is known to be gone.
///
/// ```
/// use plexus_codec::{EnvelopeKind, Flow, NetworkEnvelope, Recipient};
/// use plexus_transport::{FlowConfig, SendFlows};
///
/// let flows = SendFlows::new(FlowConfig::default());
/// let flow = Flow { sender: None, recipient: Recipient::Group("g".into()) };
/// flows.window(&flow).try_acquire(3)?;
/// let close = NetworkEnvelope::control(EnvelopeKind::FlowClose { flow: Box::new(flow.clone()) });
/// assert!(flows.handle_control(&close));
/// assert!(flows.window(&flow).is_closed());
/// # Ok::<(), plexus_transport::FlowError>(())
/// ```
#[derive(Debug)]
pub struct SendFlows {
    config: FlowConfig,
    windows: Mutex<Windows>,
}

/// The windows by flow, and the one used last.
#[derive(Debug, Default)]
struct Windows {
    map: FlowMap<Arc<SendWindow>>,
    /// The window of the last send: a sender mostly sends runs to one recipient, and
    /// comparing its flow with the envelope's (shared names, so pointer comparisons)
    /// costs far less than hashing two actor ids and cloning them into a key.
    last: Option<Arc<SendWindow>>,
}

impl SendFlows {
    /// An empty table whose windows start from `config`.
    ///
    /// `config` should pass [`FlowConfig::validate`] and match the peer's: a window larger
    /// than the peer's makes this side exceed the peer's credit.
    pub fn new(config: FlowConfig) -> Self {
        SendFlows {
            config,
            windows: Mutex::new(Windows::default()),
        }
    }

    /// The window of `flow`, created with the full initial credit if it is new.
    pub fn window(&self, flow: &Flow) -> Arc<SendWindow> {
        self.window_for(FlowKey::of(flow))
    }

    /// The window of the flow named by `key`, created if it is new.
    pub(crate) fn window_for(&self, key: FlowKey<'_>) -> Arc<SendWindow> {
        let mut windows = self.lock();
        if let Some(last) = &windows.last
            && key.matches(last.flow())
        {
            return Arc::clone(last);
        }
        let flow = key.to_flow();
        let window = match windows.map.get(&flow) {
            Some(window) => Arc::clone(window),
            None => {
                let window = Arc::new(SendWindow::new(flow.clone(), &self.config));
                windows.map.insert(flow, Arc::clone(&window));
                window
            }
        };
        windows.last = Some(Arc::clone(&window));
        window
    }

    /// Applies a `Credit` or `FlowClose` envelope from the peer and returns `true`, or
    /// returns `false` for any other envelope. Credit for a flow this side never used is
    /// ignored: it cannot be owed anything.
    pub fn handle_control(&self, envelope: &NetworkEnvelope) -> bool {
        match &envelope.kind {
            EnvelopeKind::Credit {
                flow,
                messages,
                bytes,
            } => {
                self.grant(flow, *messages, *bytes);
                true
            }
            EnvelopeKind::FlowClose { flow } => {
                self.close(flow);
                true
            }
            _ => false,
        }
    }

    /// Spends the credit `envelope` costs on its flow, or does nothing for an envelope
    /// that is not flow controlled (see [`flow_of`](crate::flow_of)). Fails like
    /// [`SendWindow::try_acquire`].
    pub fn try_acquire_for(&self, envelope: &NetworkEnvelope) -> Result<(), FlowError> {
        match flow_key(envelope) {
            Some(key) => self.window_for(key).try_acquire(envelope_bytes(envelope)),
            None => Ok(()),
        }
    }

    /// Spends the credit `envelope` costs on its flow, waiting for it while there is not
    /// enough, or returns at once for an envelope that is not flow controlled (a
    /// response is never held back). Fails like [`SendWindow::acquire`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`SendWindow::acquire`]: credit is only taken when the future
    /// completes with `Ok`.
    pub async fn acquire_for(&self, envelope: &NetworkEnvelope) -> Result<(), FlowError> {
        match flow_key(envelope) {
            Some(key) => {
                let window = self.window_for(key);
                window.acquire(envelope_bytes(envelope)).await
            }
            None => Ok(()),
        }
    }

    /// Adds credit to `flow`'s window, if it exists.
    pub fn grant(&self, flow: &Flow, messages: u32, bytes: u64) {
        let window = self.lock().map.get(flow).cloned();
        match window {
            Some(window) => window.grant(messages, bytes),
            None => tracing::debug!(
                recipient = %flow.recipient,
                messages,
                bytes,
                "credit for an unknown flow ignored"
            ),
        }
    }

    /// Closes `flow`'s window, creating a closed one if the flow is new, so that sends
    /// that start after the close fail too.
    pub fn close(&self, flow: &Flow) {
        tracing::debug!(recipient = %flow.recipient, "flow closed by peer");
        self.window(flow).close();
    }

    /// Forgets the windows that hold their full initial credit, are open and are not in
    /// use, returning how many were forgotten; the next send on such a flow starts from a
    /// new window that is identical. Bounds the table to the flows in use when called
    /// now and then (the receiver's [`FlowReceiver::flush_idle`] returns the credit that
    /// makes an idle window full). Closed windows are kept so that sends to a recipient
    /// known to be gone keep failing at once.
    ///
    /// [`FlowReceiver::flush_idle`]: super::FlowReceiver::flush_idle
    pub fn forget_idle(&self) -> usize {
        let full = (self.config.window_messages, self.config.window_bytes);
        let mut windows = self.lock();
        // The remembered window is a reference like any other; let it go so that the
        // count below sees only the tasks that hold the window.
        windows.last = None;
        let before = windows.map.len();
        windows.map.retain(|_, window| {
            // Windows are only handed out under this lock, so a count of one means no
            // task holds this window and none can get it while the lock is held.
            let (messages, bytes) = window.available();
            Arc::strong_count(window) > 1
                || window.is_closed()
                || messages < full.0
                || bytes < full.1
        });
        before - windows.map.len()
    }

    /// Closes every window, failing all waiters (the connection is gone).
    pub fn close_all(&self) {
        let windows: Vec<_> = self.lock().map.values().cloned().collect();
        for window in windows {
            window.close();
        }
    }

    /// How many flows have a window.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no flow has a window yet.
    pub fn is_empty(&self) -> bool {
        self.lock().map.is_empty()
    }

    /// The recipients of the closed flows, for diagnostics.
    pub fn closed_recipients(&self) -> Vec<Recipient> {
        self.lock()
            .map
            .values()
            .filter(|window| window.is_closed())
            .map(|window| window.flow().recipient.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Windows> {
        // The map is valid after every statement that changes it.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use plexus_core::{ActorId, ProcId};

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn flow(name: &str) -> Flow {
        Flow {
            sender: None,
            recipient: Recipient::Actor(ActorId::new(ProcId::new("p", 1), name, 0)),
        }
    }

    fn config(messages: u32, bytes: u64) -> FlowConfig {
        FlowConfig {
            window_messages: messages,
            window_bytes: bytes,
            update_percent: 50,
        }
    }

    /// With a window of 64, exactly 64 envelopes are sent without waiting and the 65th
    /// finds no credit.
    #[test]
    fn window_of_64_sends_exactly_64() {
        let window = SendWindow::new(flow("a"), &config(64, 1 << 20));
        for _ in 0..64 {
            window.try_acquire(8).unwrap();
        }
        assert!(matches!(
            window.try_acquire(8),
            Err(FlowError::NoCredit {
                messages_left: 0,
                ..
            })
        ));
        assert_eq!(window.available(), (0, (1 << 20) - 64 * 8));
    }

    /// The byte window binds on its own: with message credit left, an envelope larger
    /// than the bytes left waits, and a smaller one still goes.
    #[test]
    fn bytes_bound_as_well_as_messages() {
        let window = SendWindow::new(flow("a"), &config(64, 1000));
        window.try_acquire(400).unwrap();
        window.try_acquire(400).unwrap();
        assert!(matches!(
            window.try_acquire(300),
            Err(FlowError::NoCredit {
                messages_left: 62,
                bytes_left: 200,
                ..
            })
        ));
        window.try_acquire(200).unwrap();
        assert!(matches!(
            window.try_acquire(501),
            Err(FlowError::TooLarge { max: 500, .. })
        ));
        window.grant(2, 400);
        window.try_acquire(300).unwrap();
    }

    /// A waiter blocked on an empty window is woken by a grant, and only takes credit
    /// once; a second waiter stays blocked until the next grant.
    #[tokio::test]
    async fn grant_wakes_waiters() {
        let window = Arc::new(SendWindow::new(flow("a"), &config(1, 1000)));
        window.try_acquire(1).unwrap();
        let first = tokio::spawn({
            let window = Arc::clone(&window);
            async move { window.acquire(1).await }
        });
        let second = tokio::spawn({
            let window = Arc::clone(&window);
            async move { window.acquire(1).await }
        });
        tokio::task::yield_now().await;
        window.grant(1, 1);
        let woken = tokio::time::timeout(WAIT, async {
            loop {
                if first.is_finished() || second.is_finished() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(woken.is_ok(), "a grant did not wake either waiter");
        assert!(
            !(first.is_finished() && second.is_finished()),
            "one grant of one message let two envelopes through"
        );
        window.grant(1, 1);
        for waiter in [first, second] {
            let outcome = tokio::time::timeout(WAIT, waiter)
                .await
                .expect("a waiter was not woken by the second grant");
            assert_eq!(outcome.unwrap(), Ok(()));
        }
    }

    /// A grant that races the waiter's check is never lost: over many rounds, every
    /// acquire that needs the grant completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_lost_wakeup_between_check_and_wait() {
        let window = Arc::new(SendWindow::new(flow("a"), &config(1, 1000)));
        window.try_acquire(0).unwrap();
        for round in 0..2000 {
            let granter = {
                let window = Arc::clone(&window);
                tokio::spawn(async move { window.grant(1, 0) })
            };
            let acquired = tokio::time::timeout(WAIT, window.acquire(0)).await;
            assert!(acquired.is_ok(), "round {round}: the grant was lost");
            granter.await.unwrap();
        }
    }

    /// Closing a flow fails the current waiters at once and every later acquire.
    #[tokio::test]
    async fn close_fails_waiters_at_once() {
        let window = Arc::new(SendWindow::new(flow("a"), &config(1, 1000)));
        window.try_acquire(1).unwrap();
        let waiter = tokio::spawn({
            let window = Arc::clone(&window);
            async move { window.acquire(1).await }
        });
        tokio::task::yield_now().await;
        window.close();
        let outcome = tokio::time::timeout(WAIT, waiter)
            .await
            .expect("close did not wake the waiter")
            .unwrap();
        assert!(matches!(outcome, Err(FlowError::Closed { .. })));
        window.grant(5, 5);
        assert!(matches!(
            window.try_acquire(1),
            Err(FlowError::Closed { .. })
        ));
    }

    /// Dropping a waiting acquire loses no credit: the next acquire gets the grant.
    #[tokio::test]
    async fn cancelled_acquire_keeps_credit() {
        let window = SendWindow::new(flow("a"), &config(1, 1000));
        window.try_acquire(1).unwrap();
        let cancelled = tokio::time::timeout(Duration::from_millis(10), window.acquire(1)).await;
        assert!(cancelled.is_err());
        window.grant(1, 1);
        assert_eq!(window.available(), (1, 1000));
        tokio::time::timeout(WAIT, window.acquire(1))
            .await
            .expect("credit granted after a cancelled acquire was lost")
            .unwrap();
    }

    /// Envelopes spend credit on the flow of their (sender, recipient) pair, a response
    /// spends none and is never held back, even when that pair's window is empty.
    #[tokio::test]
    async fn acquire_for_spends_per_flow_and_never_holds_a_response() {
        use plexus_codec::Outcome;

        let flows = SendFlows::new(config(1, 100));
        let to_a = NetworkEnvelope {
            recipient: flow("a").recipient,
            kind: EnvelopeKind::Regular,
            payload: vec![0; 7].into(),
            ..NetworkEnvelope::control(EnvelopeKind::Regular)
        };
        flows.try_acquire_for(&to_a).unwrap();
        assert!(matches!(
            flows.try_acquire_for(&to_a),
            Err(FlowError::NoCredit { bytes: 7, .. })
        ));
        let reply = NetworkEnvelope {
            kind: EnvelopeKind::Response {
                id: 1,
                outcome: Outcome::Ok,
                is_last: true,
            },
            ..to_a.clone()
        };
        tokio::time::timeout(WAIT, flows.acquire_for(&reply))
            .await
            .expect("a response waited for flow credit")
            .unwrap();
        let to_b = NetworkEnvelope {
            recipient: flow("b").recipient,
            ..to_a.clone()
        };
        flows.try_acquire_for(&to_b).unwrap();
        assert_eq!(flows.window(&flow("a")).available(), (0, 93));
    }

    /// Only open, unused windows with their full credit are forgotten; a forgotten flow
    /// starts again from the full window.
    #[test]
    fn forget_idle_keeps_windows_in_use_spent_or_closed() {
        let flows = SendFlows::new(config(4, 100));
        let (idle, spent, held, closed) =
            (flow("idle"), flow("spent"), flow("held"), flow("closed"));
        flows.window(&idle);
        flows.window(&spent).try_acquire(1).unwrap();
        let holder = flows.window(&held);
        flows.close(&closed);
        assert_eq!(flows.forget_idle(), 1);
        assert_eq!(flows.len(), 3);
        flows.window(&spent).grant(1, 1);
        drop(holder);
        assert_eq!(flows.forget_idle(), 2);
        assert_eq!(flows.closed_recipients(), [closed.recipient]);
        assert_eq!(flows.window(&spent).available(), (4, 100));
    }

    /// The table creates each flow's window once with the initial credit, routes credit
    /// and close envelopes to it, and ignores credit for unknown flows.
    #[test]
    fn table_creates_on_first_use_and_routes_control() {
        let flows = SendFlows::new(config(4, 100));
        let a = flow("a");
        assert!(Arc::ptr_eq(&flows.window(&a), &flows.window(&a)));
        flows.window(&a).try_acquire(10).unwrap();
        assert_eq!(flows.window(&flow("b")).available(), (4, 100));
        let credit = NetworkEnvelope::control(EnvelopeKind::Credit {
            flow: Box::new(a.clone()),
            messages: 1,
            bytes: 10,
        });
        assert!(flows.handle_control(&credit));
        assert_eq!(flows.window(&a).available(), (4, 100));
        flows.grant(&flow("unknown"), 1, 1);
        assert_eq!(flows.len(), 2);
        assert!(!flows.handle_control(&NetworkEnvelope::control(EnvelopeKind::Ping { nonce: 1 })));
        flows.close_all();
        assert_eq!(flows.closed_recipients().len(), 2);
    }
}
