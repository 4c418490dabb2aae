//! The errors of the gateway: attaching a proc and posting an envelope.

use plexus_codec::Recipient;
use plexus_core::{DeliveryError, ProcId};

/// A proc could not be attached to a gateway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// A live proc with the same id is already attached.
    #[error("a live proc with id {proc} is already attached to this gateway")]
    AlreadyAttached {
        /// The id both procs share.
        proc: ProcId,
    },
}

/// An envelope posted to a gateway was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The recipient's proc is not attached and the gateway has no forwarder (it is
    /// isolated).
    #[error("proc {proc} is not attached and this gateway is isolated")]
    Unroutable {
        /// The proc the envelope was for.
        proc: ProcId,
    },
    /// The recipient names no proc (a group or a connection), and the gateway has no
    /// forwarder to hand it to.
    #[error("envelope for {recipient} names no proc and this gateway is isolated")]
    Unaddressed {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
    /// The envelope's kind is not delivered to an attached proc by this gateway yet:
    /// only tells (`regular` envelopes) are; ask correlation comes with remote refs.
    #[error("a {kind} envelope for attached proc {proc} is not delivered by this gateway")]
    UnsupportedKind {
        /// The envelope kind, as in [`EnvelopeKind::as_str`](plexus_codec::EnvelopeKind::as_str).
        kind: &'static str,
        /// The attached proc the envelope was for.
        proc: ProcId,
    },
    /// The attached proc refused the envelope; `source` holds the details (for a full
    /// mailbox, the decoded message waiting for a retry).
    #[error("proc {proc} refused the envelope: {source}")]
    Delivery {
        /// The attached proc.
        proc: ProcId,
        /// Why the proc refused it.
        source: DeliveryError,
    },
    /// The envelope has been forwarded as many times as its hop limit allows; a routing
    /// loop through proxies ends here instead of spinning.
    #[error("envelope for {recipient} dropped: its hop limit is spent")]
    TtlExpired {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
    /// The gateway behind a [`WeakGateway`](crate::WeakGateway) is gone.
    #[error("the gateway is gone, envelope for {recipient} bounced")]
    BrokenLink {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
}
