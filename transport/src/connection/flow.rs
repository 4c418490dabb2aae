//! Flow control on a connection: the receiving end run by the reader, and the glue that
//! gives the [`FlowReceiver`] kernel this connection's way back to the peer.
//!
//! The reader hands each flow-controlled envelope to a [`FlowReceiver`] over the user's
//! [`FlowTarget`], seen through [`ConnectionTarget`] so the target learns which connection
//! an envelope came on. What the receiver produces goes back through [`ConnectionEvents`]:
//! `Credit` and `FlowClose` on the lossless half of the control lane, and a `Failed`
//! answer for every request that cannot be delivered, so no requester waits for a
//! recipient that is gone.

use std::sync::Arc;

use plexus_codec::{EnvelopeKind, Flow, NetworkEnvelope, Outcome, Recipient, Skipped};
use tokio::runtime::Handle;

use super::ConnectionRef;
use super::control::ControlLane;
use crate::flow::{
    FlowCache, FlowConfig, FlowError, FlowEvents, FlowReceiver, FlowTarget, Received, Refused,
};

/// A [`FlowTarget`] shared by the connections of a manager, told which connection each
/// envelope came on.
pub(crate) struct ConnectionTarget<T> {
    target: Arc<T>,
    from: ConnectionRef,
}

impl<T: FlowTarget> FlowTarget for ConnectionTarget<T> {
    fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
        self.target.try_deliver_from(envelope, &self.from)
    }

    fn try_deliver_from(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
    ) -> Result<(), Refused> {
        self.target.try_deliver_from(envelope, from)
    }

    fn try_deliver_cached(
        &self,
        envelope: NetworkEnvelope,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        self.target
            .try_deliver_from_cached(envelope, &self.from, cache)
    }

    fn try_deliver_from_cached(
        &self,
        envelope: NetworkEnvelope,
        from: &ConnectionRef,
        cache: &mut FlowCache,
    ) -> Result<(), Refused> {
        self.target.try_deliver_from_cached(envelope, from, cache)
    }

    fn wait_for_room(
        &self,
        recipient: &Recipient,
    ) -> impl std::future::Future<Output = crate::Room> + Send {
        self.target.wait_for_room(recipient)
    }

    fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError) {
        self.target.undeliverable(envelope, reason);
    }
}

/// Where a connection's flow receiver sends what it produces.
pub(crate) struct ConnectionEvents<T> {
    control: ControlLane,
    target: Arc<T>,
    /// The connection, to write credit on directly when it is idle.
    connection: ConnectionRef,
}

impl<T: FlowTarget> FlowEvents for ConnectionEvents<T> {
    fn send_control(&self, envelope: NetworkEnvelope) {
        // An idle connection takes the envelope on this task, as it takes a lone reply
        // (see `outbox`): waking the writer task, often on another thread, for one small
        // envelope cost more than writing it. Either way it is never lost: what is not
        // written here goes to the lossless lane. Grants are additive and a closed
        // window ignores them, so one overtaking another on its way changes nothing.
        if let Some(connection) = self.connection.upgrade()
            && connection.write_directly(&envelope)
        {
            return;
        }
        self.control.send(envelope);
    }

    fn undeliverable(&self, envelope: NetworkEnvelope, reason: &FlowError) {
        tracing::debug!(
            recipient = %envelope.recipient,
            kind = %envelope.kind,
            %reason,
            "flow-controlled envelope undeliverable"
        );
        if let Some(id) = envelope.kind.request_id() {
            self.control.send(failed_response(
                id,
                envelope.sender.clone(),
                envelope.trace_id,
            ));
        }
        self.target.undeliverable(envelope, reason);
    }
}

/// The answer to request `id` that could not be handled, addressed back to its sender.
pub(super) fn failed_response(
    id: u64,
    sender: Option<plexus_core::ActorId>,
    trace_id: u64,
) -> NetworkEnvelope {
    let mut response = NetworkEnvelope::control(EnvelopeKind::Response {
        id,
        outcome: Outcome::Failed,
        is_last: true,
    });
    response.recipient = sender.map_or(Recipient::Transport, Recipient::Actor);
    response.trace_id = trace_id;
    response
}

/// The receiving end of flow control as the reader sees it, with the target's type
/// erased.
pub(super) trait FlowIn: Send + Sync {
    /// See [`FlowReceiver::receive`].
    fn receive(&self, envelope: NetworkEnvelope) -> Result<Received, FlowError>;
    /// See [`FlowReceiver::skipped`].
    fn skipped(&self, flow: &Flow, bytes: u64) -> Result<(), FlowError>;
    /// See [`FlowReceiver::flush_idle`].
    fn flush_idle(&self) -> usize;
}

impl<T: FlowTarget> FlowIn for FlowReceiver<ConnectionTarget<T>, ConnectionEvents<T>> {
    fn receive(&self, envelope: NetworkEnvelope) -> Result<Received, FlowError> {
        FlowReceiver::receive(self, envelope)
    }

    fn skipped(&self, flow: &Flow, bytes: u64) -> Result<(), FlowError> {
        FlowReceiver::skipped(self, flow, bytes)
    }

    fn flush_idle(&self) -> usize {
        FlowReceiver::flush_idle(self)
    }
}

/// The receiving end of one connection over `target`.
pub(super) fn receiver<T: FlowTarget>(
    config: FlowConfig,
    target: Arc<T>,
    from: ConnectionRef,
    control: ControlLane,
) -> Box<dyn FlowIn> {
    Box::new(FlowReceiver::new(
        config,
        ConnectionTarget {
            target: Arc::clone(&target),
            from: from.clone(),
        },
        ConnectionEvents {
            control,
            target,
            connection: from,
        },
        Handle::current(),
    ))
}

/// The flow a skipped envelope would have travelled in, like [`flow_of`](crate::flow_of).
pub(super) fn flow_of_skipped(skipped: &Skipped) -> Option<Flow> {
    match skipped.kind {
        EnvelopeKind::Regular | EnvelopeKind::Request { .. } | EnvelopeKind::RequestAll { .. } => {}
        _ => return None,
    }
    match skipped.recipient {
        Recipient::Actor(_) | Recipient::Group(_) => Some(Flow {
            sender: skipped.sender.clone(),
            recipient: skipped.recipient.clone(),
        }),
        Recipient::Transport => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use plexus_core::ProcId;

    use super::super::control::control_lane;
    use super::super::{End, Inbound, inproc_pair};
    use super::*;
    use crate::Negotiated;

    struct Ignore;

    impl Inbound for Ignore {
        fn deliver(&self, _envelope: NetworkEnvelope) {}
    }

    impl FlowTarget for Ignore {
        fn try_deliver(&self, envelope: NetworkEnvelope) -> Result<(), Refused> {
            Err(Refused::Gone(envelope))
        }

        async fn wait_for_room(&self, _recipient: &Recipient) -> crate::Room {
            crate::Room::Gone
        }
    }

    fn end() -> End {
        End {
            negotiated: Negotiated {
                version: plexus_codec::SUPPORTED_VERSIONS.max,
                capabilities: plexus_codec::Capabilities::empty(),
                peer: ProcId::new("peer", 1),
                peer_launch_id: 1,
                peer_max_frame_size: u32::MAX,
                peer_location: None,
                peer_flow: None,
                local_flow: None,
            },
            inbound: Arc::new(Ignore),
        }
    }

    fn credit(messages: u32) -> NetworkEnvelope {
        NetworkEnvelope::control(EnvelopeKind::Credit {
            flow: Box::new(Flow {
                sender: None,
                recipient: Recipient::Group("g".into()),
            }),
            messages,
            bytes: 0,
        })
    }

    /// Credit that the connection cannot take directly (it has no outbox to write on, or
    /// it is gone) goes to the lossless lane instead: it is never dropped.
    #[tokio::test]
    async fn credit_not_written_directly_takes_the_lossless_lane() {
        let (a, _b) = inproc_pair(end(), end(), 4);
        let (lane, mut receiver) = control_lane();
        let events = ConnectionEvents {
            control: lane.clone(),
            target: Arc::new(Ignore),
            connection: a.downgrade(),
        };
        events.send_control(credit(1));
        drop(a);
        events.send_control(credit(2));
        for expected in [1, 2] {
            let envelope = receiver.try_recv().expect("credit lost");
            assert!(
                matches!(envelope.kind, EnvelopeKind::Credit { messages, .. } if messages == expected),
                "{envelope:?}"
            );
        }
    }
}
