//! Flow control: per (remote sender → local recipient) credit windows (design 3.4).
//!
//! Every envelope addressed to an actor or a group travels in a [`Flow`], the pair of its
//! sender and its recipient. The receiving end lets a flow's sender have at most a window
//! of envelopes and payload bytes in flight ([`FlowConfig`]); as the local recipient takes
//! them, the receiver returns their credit in [`EnvelopeKind::Credit`] envelopes. A
//! recipient that stops taking envelopes therefore stalls only its own senders, never the
//! connection: the reader hands the envelope it cannot deliver to the flow's queue, and
//! a per-flow pusher task drains that queue once the recipient has room.
//!
//! - [`SendWindow`] and [`SendFlows`] are the sending end: credit per flow, spent by
//!   [`SendWindow::try_acquire`] or awaited by [`SendWindow::acquire`], refilled by
//!   [`SendWindow::grant`] when a `Credit` arrives and failed by [`SendWindow::close`] when
//!   a `FlowClose` does.
//! - [`RecvFlow`] is the receiving end's bookkeeping for one flow as a plain state machine
//!   (no I/O, no time), so both ends can be driven together in a deterministic test.
//! - [`FlowReceiver`] runs the receiving end for one connection over a [`FlowTarget`] (the
//!   local recipients) and [`FlowEvents`] (the way back to the peer and the undeliverable
//!   handler), with one pusher per blocked flow.
//!
//! Which envelopes take part is decided by [`flow_of`]: tells and requests to an actor
//! or a group do; responses and control envelopes do not, so a reply is never held back
//! by the window of the request that caused it. A group is its own recipient, so routed
//! messages have their own flow.
//!
//! # Credit
//!
//! Both ends start from the same window (`window_messages`, `window_bytes`); one envelope
//! costs one message and its payload length in bytes. At every moment, for each
//! dimension,
//!
//! ```text
//! window = sender's credit + in transit + queued or unconsumed at the receiver
//!        + consumed but not yet granted + granted but not yet arrived
//! ```
//!
//! The receiver grants consumed credit in batches, once at least the update threshold
//! ([`FlowConfig::update_threshold_messages`], [`FlowConfig::update_threshold_bytes`])
//! has accumulated. An envelope is at most [`FlowConfig::max_envelope_bytes`] (the byte
//! window minus the byte threshold): a sender waiting for room for such an envelope is
//! then owed at least a threshold's worth of bytes once everything it sent is consumed,
//! so batching can never leave it waiting forever.
//!
//! # States of a receiving flow
//!
//! ```text
//!  (new) ──▶ Direct ──target full: queue it, spawn the pusher──▶ Queued
//!             ▲  │                                                 │
//!             │  └── deliver ok: consume, grant credit in batches  │
//!             └─────────────── pusher drained the queue ───────────┘
//!
//!  Direct ──target gone──▶ Closed ◀──target gone── Queued
//!
//!  Closed: queued envelopes reported undeliverable with their credit released,
//!          FlowClose sent to the peer, flow forgotten
//! ```
//!
//! In `Queued` every new envelope of the flow joins the back of the queue, so the flow
//! stays FIFO; only the pusher delivers until the queue is empty again. A `Direct` flow
//! may also be forgotten by [`FlowReceiver::flush_idle`], which first grants back its
//! pending credit: it is then indistinguishable from `(new)`.
//!
//! **Invariant:** [`FlowReceiver::receive`] never awaits; the only wait on the reader's
//! path is a flow's lock, held by a pusher for one pass of non-blocking deliveries.
//!
//! # States of a sending window
//!
//! ```text
//!  (new, full window) ──acquire──▶ credit left ──acquire──▶ exhausted (acquire waits)
//!           ▲                          ▲   │                    │
//!           └──────── grant ───────────┴───┘◀──── grant ────────┘
//!  any state ──close (FlowClose)──▶ Closed: every acquire fails with FlowError::Closed
//! ```
//!
//! An open window with its full credit and no user is forgotten by
//! [`SendFlows::forget_idle`]; the next send starts a new one, which is the same thing.

#[cfg(test)]
mod end_to_end;
mod receiver;
mod recv;
mod window;

pub use receiver::{FlowCache, FlowEvents, FlowReceiver, FlowTarget, Received, Refused, Room};
pub use recv::RecvFlow;
pub use window::{SendFlows, SendWindow};

use plexus_codec::{EnvelopeKind, Flow, NetworkEnvelope, Recipient};
use plexus_core::ActorId;

/// A map keyed by flow, looked up for every flow-controlled envelope on both ends. Hashed
/// with foldhash: a flow is two actor ids, and SipHash over their names showed up in
/// the `remote_tell` profile. Flows come from the peer, but each one also costs it a
/// window's worth of credit, so collisions it could aim for buy it nothing it could not
/// do with plain sends.
pub(crate) type FlowMap<V> = std::collections::HashMap<Flow, V, foldhash::fast::RandomState>;

/// The flow settings. Both ends of a connection must use the same window, because the
/// sender starts with the window's credit that the receiver expects it to have.
///
/// ```
/// use plexus_transport::FlowConfig;
///
/// let config = FlowConfig { window_messages: 64, ..FlowConfig::default() };
/// config.validate()?;
/// assert_eq!(config.update_threshold_messages(), 32);
/// # Ok::<(), plexus_transport::FlowConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowConfig {
    /// How many envelopes one flow may have in flight (sent, not yet consumed and
    /// granted back). Default 1,024, the default mailbox's capacity: a smaller window
    /// stalled a sustained stream on every grant's round trip. Must be non-zero. Together
    /// with the recipient's mailbox it bounds what one slow recipient holds in memory per
    /// sender.
    pub window_messages: u32,
    /// How many payload bytes one flow may have in flight. Default 32 MiB; must leave a
    /// non-zero [`max_envelope_bytes`](Self::max_envelope_bytes), which should be at
    /// least the codec's frame limit (8 MiB by default) so that every envelope that fits
    /// a frame also fits the window.
    pub window_bytes: u64,
    /// How much of the window, in percent, the recipient consumes before its credit is
    /// granted back in one `Credit` envelope. Default 50; must be within 1..=99. Lower
    /// means more `Credit` envelopes and smoother sending; higher means fewer of them,
    /// a larger [`max_envelope_bytes`](Self::max_envelope_bytes) cost and burstier senders.
    pub update_percent: u8,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            window_messages: 1024,
            window_bytes: 32 * 1024 * 1024,
            update_percent: 50,
        }
    }
}

impl FlowConfig {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), FlowConfigError> {
        if self.window_messages == 0 {
            return Err(FlowConfigError::Zero {
                field: "window_messages",
            });
        }
        if !(1..=99).contains(&self.update_percent) {
            return Err(FlowConfigError::UpdatePercent {
                percent: self.update_percent,
            });
        }
        if self.max_envelope_bytes() == 0 {
            return Err(FlowConfigError::WindowBytes {
                window_bytes: self.window_bytes,
                percent: self.update_percent,
            });
        }
        Ok(())
    }

    /// How many consumed envelopes are granted back at once: `update_percent` of the
    /// message window, rounded up, at least 1 and at most the window.
    pub fn update_threshold_messages(&self) -> u32 {
        let threshold = (u64::from(self.window_messages) * u64::from(self.update_percent))
            .div_ceil(100)
            .max(1);
        u32::try_from(threshold)
            .unwrap_or(u32::MAX)
            .min(self.window_messages.max(1))
    }

    /// How many consumed payload bytes are granted back at once: `update_percent` of the
    /// byte window, rounded up.
    pub fn update_threshold_bytes(&self) -> u64 {
        let threshold =
            (u128::from(self.window_bytes) * u128::from(self.update_percent)).div_ceil(100);
        u64::try_from(threshold)
            .unwrap_or(u64::MAX)
            .min(self.window_bytes)
    }

    /// The largest payload one envelope of a flow may carry: the byte window minus the
    /// byte threshold. A larger one could wait forever for credit that batching never
    /// grants, so [`SendWindow`] refuses it with [`FlowError::TooLarge`] and the receiver
    /// counts it as a credit violation.
    pub fn max_envelope_bytes(&self) -> u64 {
        self.window_bytes - self.update_threshold_bytes()
    }
}

/// A [`FlowConfig`] outside its bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowConfigError {
    /// A size that must be non-zero is zero.
    #[error("{field} must be non-zero")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// The update threshold is not within 1..=99 percent.
    #[error("update_percent {percent} must be within 1..=99")]
    UpdatePercent {
        /// The configured percentage.
        percent: u8,
    },
    /// The byte window leaves no room for an envelope once the threshold is taken off.
    #[error(
        "window_bytes {window_bytes} leaves no room for an envelope with update_percent {percent}"
    )]
    WindowBytes {
        /// The configured byte window.
        window_bytes: u64,
        /// The configured update percentage.
        percent: u8,
    },
}

/// Why a flow operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The flow has no credit left for this envelope now; wait with
    /// [`SendWindow::acquire`] or report `Full` to the caller.
    #[error(
        "no credit for {bytes} bytes on the flow to {recipient}: {messages_left} messages and {bytes_left} bytes left"
    )]
    NoCredit {
        /// The flow's recipient.
        recipient: Recipient,
        /// The payload size asked for.
        bytes: u64,
        /// The messages of credit left.
        messages_left: u32,
        /// The bytes of credit left.
        bytes_left: u64,
    },
    /// The peer closed the flow because its recipient is gone.
    #[error("flow to {recipient} is closed: the recipient is gone")]
    Closed {
        /// The flow's recipient.
        recipient: Recipient,
    },
    /// The envelope is larger than any flow admits ([`FlowConfig::max_envelope_bytes`]).
    #[error("envelope of {bytes} bytes to {recipient} exceeds the flow limit of {max} bytes")]
    TooLarge {
        /// The flow's recipient.
        recipient: Recipient,
        /// The envelope's payload size.
        bytes: u64,
        /// The largest payload a flow admits.
        max: u64,
    },
    /// The peer sent more than its credit allowed: a protocol violation.
    #[error(
        "peer exceeded its credit on the flow to {recipient}: sent {bytes} bytes with {messages_left} messages and {bytes_left} bytes of credit left"
    )]
    CreditExceeded {
        /// The flow's recipient.
        recipient: Recipient,
        /// The payload size of the envelope that broke the window.
        bytes: u64,
        /// The messages of credit the peer had left.
        messages_left: u32,
        /// The bytes of credit the peer had left.
        bytes_left: u64,
    },
}

/// The flow `envelope` travels in, or `None` when it is not flow controlled.
///
/// Tells and requests to an actor or a group are; responses are not (a reply must never
/// wait behind the credit of other traffic), nor are control envelopes, nor anything
/// addressed to the transport itself.
///
/// ```
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Outcome, Recipient};
/// use plexus_transport::flow_of;
///
/// let tell = NetworkEnvelope { kind: EnvelopeKind::Regular, ..NetworkEnvelope::control(EnvelopeKind::Regular) };
/// let routed = NetworkEnvelope { recipient: Recipient::Group("workers".into()), ..tell.clone() };
/// assert_eq!(flow_of(&routed).map(|flow| flow.recipient), Some(Recipient::Group("workers".into())));
///
/// let reply = NetworkEnvelope {
///     kind: EnvelopeKind::Response { id: 1, outcome: Outcome::Ok, is_last: true },
///     ..routed
/// };
/// assert_eq!(flow_of(&reply), None);
/// ```
pub fn flow_of(envelope: &NetworkEnvelope) -> Option<Flow> {
    flow_key(envelope).map(|key| key.to_flow())
}

/// The flow of an envelope, borrowed from it: what [`flow_of`] returns, without cloning
/// two actor ids. Both ends look a flow up for every envelope, and a connection mostly
/// carries runs of one flow, so they compare this key with the flow they saw last (the
/// names are shared, so that is a few pointer comparisons) before they hash anything.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowKey<'a> {
    sender: Option<&'a ActorId>,
    recipient: &'a Recipient,
}

impl<'a> FlowKey<'a> {
    /// The key of `flow` itself.
    pub(crate) fn of(flow: &'a Flow) -> Self {
        FlowKey {
            sender: flow.sender.as_ref(),
            recipient: &flow.recipient,
        }
    }

    /// Whether `flow` is the flow this key names.
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        flow.sender.as_ref() == self.sender && flow.recipient == *self.recipient
    }

    /// The owned flow.
    pub(crate) fn to_flow(self) -> Flow {
        Flow {
            sender: self.sender.cloned(),
            recipient: self.recipient.clone(),
        }
    }
}

/// The borrowed flow of `envelope`, or `None` when it is not flow controlled; the rules
/// of [`flow_of`].
pub(crate) fn flow_key(envelope: &NetworkEnvelope) -> Option<FlowKey<'_>> {
    match envelope.kind {
        EnvelopeKind::Regular | EnvelopeKind::Request { .. } | EnvelopeKind::RequestAll { .. } => {}
        _ => return None,
    }
    match envelope.recipient {
        Recipient::Actor(_) | Recipient::Group(_) => Some(FlowKey {
            sender: envelope.sender.as_ref(),
            recipient: &envelope.recipient,
        }),
        Recipient::Transport => None,
    }
}

/// The credit one envelope costs in bytes: its payload length.
pub fn envelope_bytes(envelope: &NetworkEnvelope) -> u64 {
    u64::try_from(envelope.payload.len()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are within their own bounds and leave room for a full-size frame.
    #[test]
    fn defaults_are_valid_and_fit_a_frame() {
        let config = FlowConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert!(config.max_envelope_bytes() >= plexus_codec::DEFAULT_MAX_FRAME_SIZE as u64);
    }

    /// Each documented bound is refused with the error that names it.
    #[test]
    fn out_of_bounds_configs_are_refused() {
        let zero = FlowConfig {
            window_messages: 0,
            ..FlowConfig::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(FlowConfigError::Zero {
                field: "window_messages"
            })
        ));
        for percent in [0, 100, 255] {
            let config = FlowConfig {
                update_percent: percent,
                ..FlowConfig::default()
            };
            assert_eq!(
                config.validate(),
                Err(FlowConfigError::UpdatePercent { percent })
            );
        }
        let tiny = FlowConfig {
            window_bytes: 1,
            ..FlowConfig::default()
        };
        assert!(matches!(
            tiny.validate(),
            Err(FlowConfigError::WindowBytes {
                window_bytes: 1,
                ..
            })
        ));
    }

    /// Thresholds round up, stay within the window and are never zero.
    #[test]
    fn thresholds_round_up_within_the_window() {
        let config = FlowConfig {
            window_messages: 3,
            window_bytes: 10,
            update_percent: 50,
        };
        assert_eq!(config.update_threshold_messages(), 2);
        assert_eq!(config.update_threshold_bytes(), 5);
        assert_eq!(config.max_envelope_bytes(), 5);
        let one = FlowConfig {
            window_messages: 1,
            window_bytes: 100,
            update_percent: 1,
        };
        assert_eq!(one.update_threshold_messages(), 1);
        assert_eq!(one.update_threshold_bytes(), 1);
    }
}
