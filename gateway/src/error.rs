//! The errors of the gateway: building it, attaching procs, posting envelopes, serving
//! locations, requests and proxy attachment.

use std::time::Duration;

use plexus_codec::Recipient;
use plexus_core::{ActorId, DeliveryError, Location, ProcId, RemoteAskError};
use plexus_transport::{ConnectionConfigError, Dest, TransportError, WireError};

/// A gateway could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The transport settings are out of their bounds.
    #[error("invalid transport settings: {0}")]
    Config(#[from] ConnectionConfigError),
    /// A networked gateway runs tasks, and no tokio runtime is running on this thread.
    #[error("a networked gateway must be built inside a tokio runtime")]
    NoRuntime,
}

/// A proc could not be attached to a gateway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// A live proc with the same id is already attached (directly or through a proxy).
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
    /// The recipient's proc is not attached here and there is no way on: the gateway is
    /// isolated, or no location was given, or the location given is this gateway's own.
    #[error("proc {proc} is not attached to this gateway and cannot be routed")]
    Unroutable {
        /// The proc the envelope was for.
        proc: ProcId,
    },
    /// The recipient names no proc (a group or a connection), and the gateway has no
    /// forwarder to hand it to.
    #[error("envelope for {recipient} names no proc and this gateway cannot route it")]
    Unaddressed {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
    /// `post` carries tells only; a request goes through
    /// [`Gateway::request_to`](crate::Gateway::request_to), which waits for its answer.
    #[error("a {kind} envelope was posted; only tells are posted")]
    NotATell {
        /// The envelope kind, as in [`EnvelopeKind::as_str`](plexus_codec::EnvelopeKind::as_str).
        kind: &'static str,
    },
    /// The attached proc refused the envelope; `source` holds the details.
    #[error("proc {proc} refused the envelope: {source}")]
    Delivery {
        /// The attached proc.
        proc: ProcId,
        /// Why the proc refused it.
        source: DeliveryError,
    },
    /// Too many envelopes already wait for this actor's full mailbox.
    #[error("too many envelopes wait for the full mailbox of {actor}")]
    Overloaded {
        /// The recipient.
        actor: ActorId,
    },
    /// The queue of this lane towards the destination is full; an awaited tell would wait
    /// for room.
    #[error("the queue towards {dest} is full for this sender and recipient")]
    Full {
        /// The destination.
        dest: Location,
    },
    /// The queue of the connection a proxied proc is reached through is full.
    #[error("the link towards {recipient} is full")]
    LinkFull {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
    /// Sending to the destination failed (dial refused or timed out, backing off, every
    /// wire down). Reported for tells whose queue had already accepted them.
    #[error("sending to {dest} failed: {source}")]
    Transport {
        /// The destination.
        dest: Location,
        /// What the transport reported (boxed: it is large and rare).
        #[source]
        source: Box<TransportError>,
    },
    /// The envelope has been forwarded as many times as its hop limit allows; a routing
    /// loop through proxies ends here instead of spinning.
    #[error("envelope for {recipient} dropped: its hop limit is spent")]
    TtlExpired {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
    /// The gateway behind a [`WeakGateway`](crate::WeakGateway) is gone, or the connection
    /// an envelope was to take has closed.
    #[error("the gateway or its link is gone, envelope for {recipient} bounced")]
    BrokenLink {
        /// The recipient of the envelope.
        recipient: Recipient,
    },
}

/// A location could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Binding the listener failed.
    #[error(transparent)]
    Bind(#[from] WireError),
    /// The gateway cannot listen on this kind of location: it is isolated, or `local:`
    /// without an in-process network, or `unix://` without the `unix` feature.
    #[error("this gateway cannot serve {location}: {reason}")]
    Unsupported {
        /// The location asked for.
        location: Location,
        /// Why.
        reason: &'static str,
    },
    /// The server's accept loop ended abnormally (its task panicked or was cancelled).
    #[error("the server of {location} ended abnormally: {reason}")]
    Aborted {
        /// The served location.
        location: Location,
        /// What the runtime reported.
        reason: String,
    },
}

/// A request through the gateway got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteRequestError {
    /// The recipient's side answered with an error (not found, not exposed, decode,
    /// panicked, closed, ...).
    #[error(transparent)]
    Remote(RemoteAskError),
    /// No reply within the timeout.
    #[error("no reply within {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The connection the request travelled on was lost before the reply.
    #[error("connection to {dest} lost before the reply")]
    Disconnected {
        /// The destination.
        dest: Location,
    },
    /// The destination could not be reached (dial failed, backing off, no wire).
    #[error("cannot reach {dest}: {reason}")]
    Unreachable {
        /// The destination.
        dest: Location,
        /// What the transport reported.
        reason: String,
    },
    /// The recipient's proc is not attached here and there is no way on.
    #[error("proc {proc} cannot be routed")]
    Unroutable {
        /// The proc.
        proc: ProcId,
    },
    /// The peer could not handle the request (its envelope did not decode there).
    #[error("the peer failed to handle the request")]
    Failed,
    /// The peer dropped the request without replying.
    #[error("the peer ignored the request")]
    Ignored,
    /// The gateway, or the link the request was to take, is gone.
    #[error("the gateway or its link is gone")]
    BrokenLink,
}

impl RemoteRequestError {
    /// The error for a transport failure of a request to `dest`.
    pub(crate) fn from_transport(dest: &Dest, error: TransportError) -> Self {
        use plexus_transport::RequestError;
        match error {
            TransportError::Request { source, .. } => match source {
                RequestError::Disconnected { .. } => RemoteRequestError::Disconnected {
                    dest: dest.location().clone(),
                },
                RequestError::Timeout { after, .. } => RemoteRequestError::Timeout { after },
                RequestError::Ignored { .. } => RemoteRequestError::Ignored,
                RequestError::FailedWith { name, payload, .. } => {
                    crate::protocol::read_failure(&name, &payload)
                }
                _ => RemoteRequestError::Failed,
            },
            TransportError::NoHealthyWire { .. } => RemoteRequestError::Disconnected {
                dest: dest.location().clone(),
            },
            other => RemoteRequestError::Unreachable {
                dest: dest.location().clone(),
                reason: other.to_string(),
            },
        }
    }
}

/// A proc could not be attached through a remote gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proc could not be attached to this gateway first.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// This gateway is isolated: it dials nothing.
    #[error("an isolated gateway cannot attach through {location}")]
    Isolated {
        /// The remote gateway's location.
        location: Location,
    },
    /// Opening the connection to the remote gateway failed.
    #[error("connecting to {location} failed: {reason}")]
    Connect {
        /// The remote gateway's location.
        location: Location,
        /// What went wrong.
        reason: String,
    },
    /// The remote gateway refused the attachment or did not answer.
    #[error("{location} refused to attach proc {proc}: {reason}")]
    Refused {
        /// The remote gateway's location.
        location: Location,
        /// The proc.
        proc: ProcId,
        /// Why.
        reason: String,
    },
}
