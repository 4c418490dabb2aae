//! The receiving end of one flow as a plain state machine: admitted credit, consumed
//! credit waiting to be granted back, and the queue of envelopes the recipient had no
//! room for.

use std::collections::VecDeque;

use plexus_codec::{EnvelopeKind, Flow, NetworkEnvelope};

use super::{FlowConfig, FlowError, envelope_bytes};

/// The receiver's bookkeeping for one flow. No I/O and no time: [`FlowReceiver`]
/// drives it from the connection reader and the pusher, and tests drive it together with
/// a [`SendWindow`] as a deterministic two-ended pair.
///
/// ```
/// use plexus_codec::{EnvelopeKind, Flow, Recipient};
/// use plexus_transport::{FlowConfig, RecvFlow};
///
/// let config = FlowConfig { window_messages: 4, window_bytes: 1024, update_percent: 50 };
/// let mut flow = RecvFlow::new(Flow { sender: None, recipient: Recipient::Group("g".into()) }, &config);
/// flow.admit(10)?;
/// assert!(flow.consumed(1, 10).is_none()); // below the threshold of 2 messages
/// flow.admit(10)?;
/// let credit = flow.consumed(1, 10).expect("threshold reached");
/// assert!(matches!(credit.kind, EnvelopeKind::Credit { messages: 2, bytes: 20, .. }));
/// # Ok::<(), plexus_transport::FlowError>(())
/// ```
///
/// [`FlowReceiver`]: super::FlowReceiver
/// [`SendWindow`]: super::SendWindow
#[derive(Debug)]
pub struct RecvFlow {
    flow: Flow,
    window_messages: u32,
    window_bytes: u64,
    threshold_messages: u32,
    threshold_bytes: u64,
    max_envelope_bytes: u64,
    /// Credit the sender still holds, as far as this end knows (grants count from the
    /// moment they are produced).
    outstanding_messages: u32,
    outstanding_bytes: u64,
    /// Consumed credit not yet granted back.
    pending_messages: u32,
    pending_bytes: u64,
    queue: VecDeque<NetworkEnvelope>,
    queued_bytes: u64,
}

impl RecvFlow {
    /// A new flow whose sender holds the full initial window of `config`.
    pub fn new(flow: Flow, config: &FlowConfig) -> Self {
        RecvFlow {
            flow,
            window_messages: config.window_messages,
            window_bytes: config.window_bytes,
            threshold_messages: config.update_threshold_messages(),
            threshold_bytes: config.update_threshold_bytes(),
            max_envelope_bytes: config.max_envelope_bytes(),
            outstanding_messages: config.window_messages,
            outstanding_bytes: config.window_bytes,
            pending_messages: 0,
            pending_bytes: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// The flow.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Lets in one arriving envelope of `bytes` payload bytes, spending the sender's
    /// credit, or fails with [`FlowError::CreditExceeded`] when the sender had not that
    /// much credit (a protocol violation; nothing is changed).
    pub fn admit(&mut self, bytes: u64) -> Result<(), FlowError> {
        if self.outstanding_messages == 0
            || bytes > self.outstanding_bytes
            || bytes > self.max_envelope_bytes
        {
            return Err(FlowError::CreditExceeded {
                recipient: self.flow.recipient.clone(),
                bytes,
                messages_left: self.outstanding_messages,
                bytes_left: self.outstanding_bytes,
            });
        }
        self.outstanding_messages -= 1;
        self.outstanding_bytes -= bytes;
        Ok(())
    }

    /// Records that the recipient took `messages` admitted envelopes holding `bytes`
    /// payload bytes (or that they were skipped or dropped, which returns their credit
    /// the same way), and returns the `Credit` envelope to send to the peer once the
    /// consumed credit reaches the update threshold in either dimension.
    pub fn consumed(&mut self, messages: u32, bytes: u64) -> Option<NetworkEnvelope> {
        self.pending_messages = self.pending_messages.saturating_add(messages);
        self.pending_bytes = self.pending_bytes.saturating_add(bytes);
        if self.pending_messages >= self.threshold_messages
            || self.pending_bytes >= self.threshold_bytes
        {
            Some(self.take_grant())
        } else {
            None
        }
    }

    /// Grants back whatever consumed credit is pending now, below the threshold or not,
    /// or `None` when nothing is pending. For a connection that wants to flush credit
    /// when it goes quiet.
    pub fn flush(&mut self) -> Option<NetworkEnvelope> {
        if self.pending_messages == 0 && self.pending_bytes == 0 {
            None
        } else {
            Some(self.take_grant())
        }
    }

    /// Puts an admitted envelope at the back of the queue.
    pub fn enqueue(&mut self, envelope: NetworkEnvelope) {
        self.queued_bytes = self.queued_bytes.saturating_add(envelope_bytes(&envelope));
        self.queue.push_back(envelope);
    }

    /// Takes the envelope at the front of the queue.
    pub fn dequeue(&mut self) -> Option<NetworkEnvelope> {
        let envelope = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(envelope_bytes(&envelope));
        Some(envelope)
    }

    /// Puts an envelope the recipient refused back at the front, keeping the order.
    pub fn requeue_front(&mut self, envelope: NetworkEnvelope) {
        self.queued_bytes = self.queued_bytes.saturating_add(envelope_bytes(&envelope));
        self.queue.push_front(envelope);
    }

    /// Ends the flow because its recipient is gone: returns the queued envelopes, whose
    /// credit is released, and the `FlowClose` envelope for the peer.
    pub fn close(&mut self) -> (Vec<NetworkEnvelope>, NetworkEnvelope) {
        let queued: Vec<_> = self.queue.drain(..).collect();
        let bytes = queued
            .iter()
            .map(envelope_bytes)
            .fold(0, u64::saturating_add);
        let messages = u32::try_from(queued.len()).unwrap_or(u32::MAX);
        self.queued_bytes = 0;
        // The credit goes back to the books rather than to the peer: the flow is over,
        // but the accounting stays whole for whoever inspects it.
        self.pending_messages = self.pending_messages.saturating_add(messages);
        self.pending_bytes = self.pending_bytes.saturating_add(bytes);
        let close = NetworkEnvelope::control(EnvelopeKind::FlowClose {
            flow: Box::new(self.flow.clone()),
        });
        (queued, close)
    }

    /// How many envelopes wait in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// How many payload bytes wait in the queue.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// The credit the sender holds as far as this end knows, as (messages, bytes).
    pub fn outstanding(&self) -> (u32, u64) {
        (self.outstanding_messages, self.outstanding_bytes)
    }

    /// Consumed credit not yet granted back, as (messages, bytes).
    pub fn pending(&self) -> (u32, u64) {
        (self.pending_messages, self.pending_bytes)
    }

    /// The window, as (messages, bytes).
    pub fn window(&self) -> (u32, u64) {
        (self.window_messages, self.window_bytes)
    }

    fn take_grant(&mut self) -> NetworkEnvelope {
        let messages = std::mem::take(&mut self.pending_messages);
        let bytes = std::mem::take(&mut self.pending_bytes);
        self.outstanding_messages = self.outstanding_messages.saturating_add(messages);
        self.outstanding_bytes = self.outstanding_bytes.saturating_add(bytes);
        tracing::trace!(recipient = %self.flow.recipient, messages, bytes, "granting flow credit");
        NetworkEnvelope::control(EnvelopeKind::Credit {
            flow: Box::new(self.flow.clone()),
            messages,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::VecDeque;

    use plexus_codec::Recipient;
    use proptest::prelude::*;

    use super::*;
    use crate::flow::SendWindow;

    fn flow() -> Flow {
        Flow {
            sender: None,
            recipient: Recipient::Group("g".into()),
        }
    }

    fn config(messages: u32, bytes: u64) -> FlowConfig {
        FlowConfig {
            window_messages: messages,
            window_bytes: bytes,
            update_percent: 50,
        }
    }

    fn credit_of(envelope: &NetworkEnvelope) -> (u32, u64) {
        match &envelope.kind {
            EnvelopeKind::Credit {
                messages, bytes, ..
            } => (*messages, *bytes),
            other => panic!("expected a credit envelope, got {other}"),
        }
    }

    /// Credit is granted back in batches exactly when the threshold is reached, and a
    /// grant restores what the sender is known to hold.
    #[test]
    fn credit_is_batched_at_the_threshold() {
        let mut recv = RecvFlow::new(flow(), &config(64, 1 << 20));
        for _ in 0..31 {
            recv.admit(10).unwrap();
            assert!(recv.consumed(1, 10).is_none());
        }
        recv.admit(10).unwrap();
        let credit = recv
            .consumed(1, 10)
            .expect("no credit at the threshold of 32");
        assert_eq!(credit_of(&credit), (32, 320));
        assert_eq!(recv.outstanding(), (64, 1 << 20));
        assert_eq!(recv.pending(), (0, 0));
        assert!(recv.flush().is_none());
    }

    /// A sender that sends beyond its credit, in messages or in bytes, is refused with a
    /// typed error and the books are left unchanged.
    #[test]
    fn exceeding_credit_is_a_typed_error() {
        let mut recv = RecvFlow::new(flow(), &config(3, 100));
        recv.admit(30).unwrap();
        recv.admit(30).unwrap();
        let too_many_bytes = recv.admit(45).unwrap_err();
        assert!(matches!(
            too_many_bytes,
            FlowError::CreditExceeded {
                bytes: 45,
                messages_left: 1,
                bytes_left: 40,
                ..
            }
        ));
        assert_eq!(
            too_many_bytes.to_string(),
            "peer exceeded its credit on the flow to group g: sent 45 bytes with 1 messages and 40 bytes of credit left"
        );
        recv.admit(10).unwrap();
        assert!(matches!(
            recv.admit(0),
            Err(FlowError::CreditExceeded {
                messages_left: 0,
                ..
            })
        ));
        assert_eq!(recv.outstanding(), (0, 30));
    }

    /// Closing a flow hands back its queue in order, releases the queued credit and
    /// produces a FlowClose for the flow.
    #[test]
    fn close_releases_queued_credit() {
        let mut recv = RecvFlow::new(flow(), &config(8, 1000));
        for seq in 0..3u64 {
            recv.admit(5).unwrap();
            recv.enqueue(NetworkEnvelope {
                payload: vec![0; 5].into(),
                ..NetworkEnvelope::control(EnvelopeKind::Regular).with_trace_id(seq)
            });
        }
        assert_eq!((recv.queued(), recv.queued_bytes()), (3, 15));
        let (queued, close) = recv.close();
        let order: Vec<_> = queued.iter().map(|envelope| envelope.trace_id).collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(
            close.kind,
            EnvelopeKind::FlowClose {
                flow: Box::new(flow())
            }
        );
        let (out_m, out_b) = recv.outstanding();
        let (pend_m, pend_b) = recv.pending();
        assert_eq!((out_m + pend_m, out_b + pend_b), recv.window());
        assert_eq!((recv.queued(), recv.queued_bytes()), (0, 0));
    }

    /// Two-ended simulation with a fast recipient and a one-round link: a sender that
    /// sends 8 envelopes a round never finds its window of 64 empty, and credit comes
    /// back in updates of exactly 32.
    #[test]
    fn fast_recipient_never_stalls_the_sender() {
        let config = config(64, 1 << 20);
        let window = SendWindow::new(flow(), &config);
        let mut recv = RecvFlow::new(flow(), &config);
        let mut credits_in_transit = Vec::new();
        let mut updates = 0;
        for round in 0..1000 {
            for (messages, bytes) in credits_in_transit.drain(..) {
                window.grant(messages, bytes);
            }
            for _ in 0..8 {
                window
                    .try_acquire(100)
                    .unwrap_or_else(|error| panic!("round {round}: sender stalled: {error}"));
                // One round of latency: what is sent now arrives and is consumed now, its
                // credit arrives at the start of the next round.
                recv.admit(100).unwrap();
                if let Some(credit) = recv.consumed(1, 100) {
                    let credit = credit_of(&credit);
                    assert_eq!(credit, (32, 3200));
                    credits_in_transit.push(credit);
                    updates += 1;
                }
            }
        }
        assert_eq!(updates, 8000 / 32);
    }

    /// Two-ended simulation with a recipient that takes nothing: the sender stops after
    /// exactly the window, the receiver's queue holds at most the window, and once the
    /// recipient drains the queue the sender resumes.
    #[test]
    fn blocked_recipient_bounds_the_queue_and_stalls_only_the_sender() {
        let config = config(64, 1 << 20);
        let window = SendWindow::new(flow(), &config);
        let mut recv = RecvFlow::new(flow(), &config);
        let mut sent = 0;
        while window.try_acquire(10).is_ok() {
            recv.admit(10).unwrap();
            recv.enqueue(NetworkEnvelope {
                payload: vec![0; 10].into(),
                ..NetworkEnvelope::control(EnvelopeKind::Regular)
            });
            sent += 1;
        }
        assert_eq!(sent, 64);
        assert_eq!(recv.queued(), 64);
        assert!(
            recv.admit(10).is_err(),
            "the receiver admitted beyond the window"
        );
        while let Some(envelope) = recv.dequeue() {
            if let Some(credit) = recv.consumed(1, envelope_bytes(&envelope)) {
                let (messages, bytes) = credit_of(&credit);
                window.grant(messages, bytes);
            }
        }
        assert_eq!(window.available(), (64, 1 << 20));
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// The sender sends an envelope of this size if it has credit.
        Send(u64),
        /// The oldest envelope in transit arrives at the receiver.
        Arrive,
        /// The recipient consumes the oldest admitted envelope.
        Consume,
        /// The oldest admitted envelope is skipped (undecodable) or dropped.
        Drop,
        /// The oldest credit update in transit arrives at the sender.
        Grant,
    }

    fn step(max_bytes: u64) -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..=max_bytes).prop_map(Step::Send),
            2 => Just(Step::Arrive),
            2 => Just(Step::Consume),
            1 => Just(Step::Drop),
            2 => Just(Step::Grant),
        ]
    }

    fn scenario() -> impl Strategy<Value = (FlowConfig, Vec<Step>)> {
        (1u32..=64, 1u64..=4096, 1u8..=99)
            .prop_map(|(messages, bytes, percent)| FlowConfig {
                window_messages: messages,
                window_bytes: bytes,
                update_percent: percent,
            })
            .prop_filter("valid config", |config| config.validate().is_ok())
            .prop_flat_map(|config| {
                let max = config.max_envelope_bytes();
                (Just(config), proptest::collection::vec(step(max), 0..400))
            })
    }

    proptest! {
        /// Under any interleaving of sends, arrivals, consumption, drops and grants: the
        /// receiver never sees a credit violation from an honest sender, the sender never
        /// has more than the window in flight, credit is conserved in both dimensions,
        /// and once everything settles the sender can send an envelope of the largest
        /// admitted size (batching never strands it).
        #[test]
        fn credit_is_conserved_and_bounded((config, steps) in scenario()) {
            let window = SendWindow::new(flow(), &config);
            let mut recv = RecvFlow::new(flow(), &config);
            let mut transit: VecDeque<u64> = VecDeque::new();
            let mut admitted: VecDeque<u64> = VecDeque::new();
            let mut credits: VecDeque<(u32, u64)> = VecDeque::new();
            let grant = |credit: Option<NetworkEnvelope>, credits: &mut VecDeque<(u32, u64)>| {
                if let Some(credit) = credit {
                    credits.push_back(credit_of(&credit));
                }
            };
            for step in steps {
                match step {
                    Step::Send(bytes) => {
                        if window.try_acquire(bytes).is_ok() {
                            transit.push_back(bytes);
                        }
                    }
                    Step::Arrive => {
                        if let Some(bytes) = transit.pop_front() {
                            prop_assert_eq!(recv.admit(bytes), Ok(()));
                            admitted.push_back(bytes);
                        }
                    }
                    Step::Consume | Step::Drop => {
                        if let Some(bytes) = admitted.pop_front() {
                            grant(recv.consumed(1, bytes), &mut credits);
                        }
                    }
                    Step::Grant => {
                        if let Some((messages, bytes)) = credits.pop_front() {
                            window.grant(messages, bytes);
                        }
                    }
                }
                let (avail_m, avail_b) = window.available();
                let (pend_m, pend_b) = recv.pending();
                let messages = u64::from(avail_m)
                    + transit.len() as u64
                    + admitted.len() as u64
                    + u64::from(pend_m)
                    + credits.iter().map(|(m, _)| u64::from(*m)).sum::<u64>();
                let bytes = avail_b
                    + transit.iter().sum::<u64>()
                    + admitted.iter().sum::<u64>()
                    + pend_b
                    + credits.iter().map(|(_, b)| b).sum::<u64>();
                prop_assert_eq!(messages, u64::from(config.window_messages));
                prop_assert_eq!(bytes, config.window_bytes);
                prop_assert!(avail_m <= config.window_messages && avail_b <= config.window_bytes);
                prop_assert!(transit.len() + admitted.len() <= config.window_messages as usize);
            }
            // Settle: everything arrives and is consumed, every update arrives.
            while let Some(bytes) = transit.pop_front() {
                prop_assert_eq!(recv.admit(bytes), Ok(()));
                admitted.push_back(bytes);
            }
            while let Some(bytes) = admitted.pop_front() {
                grant(recv.consumed(1, bytes), &mut credits);
            }
            while let Some((messages, bytes)) = credits.pop_front() {
                window.grant(messages, bytes);
            }
            prop_assert_eq!(window.try_acquire(config.max_envelope_bytes()), Ok(()));
        }
    }
}
