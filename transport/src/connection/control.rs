//! The control lane: how the reader's own envelopes reach the writer without waiting.
//!
//! Two channels, both drained by the writer before the send queue:
//!
//! - **replies** (pongs, `Failed` answers to undecodable requests) go through a bounded
//!   queue with `try_send`, and are dropped at overflow: a peer that pings or sends bad
//!   requests faster than it reads our answers loses some of them, and only itself waits.
//! - **credit** (`Credit` and `FlowClose` envelopes of flow control) goes through an
//!   unbounded channel and is never dropped: a lost grant would stall its flow for good.
//!
//! The credit lane is unbounded in type but bounded by construction. A `Credit` is only
//! produced when the local recipient consumes envelopes the peer sent, and the peer only
//! sends within its window, which grows only when our `Credit`s reach it: while they sit in
//! this lane, the peer cannot send more on that flow. So each flow has at most
//! `window_messages / update_threshold_messages + 1` `Credit`s queued here (3 with the
//! defaults: two batches and one flush), plus one `FlowClose`. Flows themselves are made
//! only by envelopes read from the socket, so the lane holds at most a few envelopes per
//! flow the peer actually opened, and grows only as fast as we read.

use plexus_codec::{EnvelopeKind, NetworkEnvelope};
use tokio::sync::mpsc;

/// How many replies of the reader itself (pongs, `Failed` responses) may wait for the
/// writer. Beyond it they are dropped: the peer is then sending pings or bad requests
/// faster than it reads, and blocking the reader on it would break its invariant.
pub(super) const REPLY_CAPACITY: usize = 1024;

/// The sending side of the control lane; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct ControlLane {
    replies: mpsc::Sender<NetworkEnvelope>,
    credit: mpsc::UnboundedSender<NetworkEnvelope>,
}

/// The writer's side of the control lane.
#[derive(Debug)]
pub(super) struct ControlReceiver {
    pub(super) replies: mpsc::Receiver<NetworkEnvelope>,
    pub(super) credit: mpsc::UnboundedReceiver<NetworkEnvelope>,
}

impl ControlReceiver {
    /// The next control envelope, credit first, without waiting.
    pub(super) fn try_recv(&mut self) -> Option<NetworkEnvelope> {
        self.credit
            .try_recv()
            .ok()
            .or_else(|| self.replies.try_recv().ok())
    }
}

/// A control lane and its receiving side.
pub(super) fn control_lane() -> (ControlLane, ControlReceiver) {
    let (replies_tx, replies) = mpsc::channel(REPLY_CAPACITY);
    let (credit_tx, credit) = mpsc::unbounded_channel();
    (
        ControlLane {
            replies: replies_tx,
            credit: credit_tx,
        },
        ControlReceiver { replies, credit },
    )
}

impl ControlLane {
    /// Hands `envelope` to the writer without waiting: flow-control envelopes on the
    /// lossless lane, anything else on the bounded one (dropped, and logged, when full).
    pub(crate) fn send(&self, envelope: NetworkEnvelope) {
        if is_credit(&envelope) {
            // Fails only once the writer is gone, when the connection is ending anyway.
            let _ = self.credit.send(envelope);
            return;
        }
        if self.replies.try_send(envelope).is_err() {
            // Full: the peer sends faster than it reads. Closed: the writer is gone and
            // the connection is ending anyway.
            tracing::debug!("dropping a reply, writer is behind");
        }
    }
}

/// Whether `envelope` carries flow-control state that must never be lost.
pub(crate) fn is_credit(envelope: &NetworkEnvelope) -> bool {
    matches!(
        envelope.kind,
        EnvelopeKind::Credit { .. } | EnvelopeKind::FlowClose { .. }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use plexus_codec::Flow;
    use plexus_codec::Recipient;

    use super::*;

    fn credit(n: u32) -> NetworkEnvelope {
        NetworkEnvelope::control(EnvelopeKind::Credit {
            flow: Box::new(Flow {
                sender: None,
                recipient: Recipient::Group("g".into()),
            }),
            messages: n,
            bytes: 0,
        })
    }

    /// Credit is never dropped, however far the writer is behind, and the writer gets it
    /// before any reply; replies beyond their capacity are dropped.
    #[test]
    fn credit_survives_a_full_reply_queue_and_comes_first() {
        let (lane, mut receiver) = control_lane();
        for nonce in 0..(REPLY_CAPACITY as u64 + 10) {
            lane.send(NetworkEnvelope::control(EnvelopeKind::Pong { nonce }));
        }
        let credits = REPLY_CAPACITY as u32 * 3;
        for n in 0..credits {
            lane.send(credit(n));
        }
        for n in 0..credits {
            let envelope = receiver.try_recv().unwrap();
            assert!(
                matches!(envelope.kind, EnvelopeKind::Credit { messages, .. } if messages == n),
                "{envelope:?}"
            );
        }
        let mut replies = 0;
        while let Some(envelope) = receiver.try_recv() {
            assert!(matches!(envelope.kind, EnvelopeKind::Pong { .. }));
            replies += 1;
        }
        assert_eq!(replies, REPLY_CAPACITY);
    }
}
