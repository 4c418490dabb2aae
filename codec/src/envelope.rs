//! The network envelope: who sends what to whom, and in which role (tell, ask, reply,
//! control).
//!
//! These are plain data types. How they look on the wire is the business of
//! [`frame`](crate::frame); how a payload becomes a typed message is the business of the
//! [`MessageRegistry`](crate::MessageRegistry). No type here contains itself, so decoding
//! any input uses a bounded amount of stack.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use plexus_core::{ActorId, RemoteMessage};

use crate::error::{DecodeError, EncodeError};

/// The hop limit a new envelope starts with. Every gateway that forwards an envelope
/// decrements it; one that would forward an envelope whose limit is zero answers
/// `TtlExpired` instead, so a routing loop through proxies ends.
pub const DEFAULT_HOP_LIMIT: u8 = 16;

/// One message, request, reply or control signal travelling between two procs.
///
/// Build message envelopes with [`NetworkEnvelope::message`] and control envelopes with
/// [`NetworkEnvelope::control`]; encode them with a [`FrameEncoder`](crate::FrameEncoder).
///
/// ```
/// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
/// use plexus_core::{ActorId, ProcId, RemoteMessage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Add(u64);
/// impl RemoteMessage for Add {
///     const NAME: &'static str = "calc.Add";
/// }
///
/// let counter = ActorId::new(ProcId::new("calc", 1), "counter", 0);
/// let envelope =
///     NetworkEnvelope::message(None, Recipient::Actor(counter), EnvelopeKind::Regular, &Add(2))?;
/// assert_eq!(&*envelope.name, "calc.Add");
/// assert_eq!(envelope.decode_as::<Add>()?, Add(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkEnvelope {
    /// The sending actor, or `None` for a send from outside any actor (and for control
    /// envelopes).
    pub sender: Option<ActorId>,
    /// Where the envelope goes.
    pub recipient: Recipient,
    /// The trace id that ties this envelope to the operation that caused it; `0` means none
    /// (and costs no bytes on the wire).
    pub trace_id: u64,
    /// How many more gateways may forward this envelope (see [`DEFAULT_HOP_LIMIT`]).
    pub hop_limit: u8,
    /// The envelope's role.
    pub kind: EnvelopeKind,
    /// The payload's message name ([`RemoteMessage::NAME`]); empty for control envelopes.
    pub name: MessageName,
    /// The payload, a message encoded with postcard; empty for control envelopes.
    pub payload: Bytes,
}

impl NetworkEnvelope {
    /// An envelope carrying `message`, encoded with postcard, with no trace id and the
    /// default hop limit.
    pub fn message<M: RemoteMessage>(
        sender: Option<ActorId>,
        recipient: Recipient,
        kind: EnvelopeKind,
        message: &M,
    ) -> Result<Self, EncodeError> {
        Ok(NetworkEnvelope {
            sender,
            recipient,
            trace_id: 0,
            hop_limit: DEFAULT_HOP_LIMIT,
            kind,
            name: MessageName::from_static(M::NAME),
            payload: encode_payload(message)?,
        })
    }

    /// A control envelope for the connection at the other end: no sender, no name, no
    /// payload, recipient [`Recipient::Transport`].
    ///
    /// ```
    /// use plexus_codec::{EnvelopeKind, NetworkEnvelope, Recipient};
    ///
    /// let ping = NetworkEnvelope::control(EnvelopeKind::Ping { nonce: 7 });
    /// assert_eq!(ping.recipient, Recipient::Transport);
    /// assert!(ping.kind.is_control());
    /// ```
    pub fn control(kind: EnvelopeKind) -> Self {
        NetworkEnvelope {
            sender: None,
            recipient: Recipient::Transport,
            trace_id: 0,
            hop_limit: DEFAULT_HOP_LIMIT,
            kind,
            name: MessageName::from_static(""),
            payload: Bytes::new(),
        }
    }

    /// Sets the trace id.
    pub fn with_trace_id(mut self, trace_id: u64) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// Decodes the payload as `M`, after checking that the envelope carries `M`'s name.
    ///
    /// Use this when the expected type is known (a reply to a typed ask); use
    /// [`MessageRegistry::decode`](crate::MessageRegistry::decode) to dispatch by name.
    pub fn decode_as<M: RemoteMessage>(&self) -> Result<M, DecodeError> {
        if &*self.name != M::NAME {
            return Err(DecodeError::NameMismatch {
                expected: M::NAME,
                found: self.name.clone(),
            });
        }
        crate::registry::decode_payload::<M>(&self.payload)
    }
}

/// Encodes a message with postcard into exactly sized bytes.
fn encode_payload<M: RemoteMessage>(message: &M) -> Result<Bytes, EncodeError> {
    // Most messages are small: encode on the stack and copy out once, so the payload is
    // a single allocation of the right size instead of a growing vector.
    let mut small = [0u8; 64];
    match postcard::to_slice(message, &mut small) {
        Ok(encoded) => Ok(Bytes::copy_from_slice(encoded)),
        Err(postcard::Error::SerializeBufferFull) => postcard::to_allocvec(message)
            .map(Bytes::from)
            .map_err(|source| EncodeError::Payload {
                name: M::NAME,
                source,
            }),
        Err(source) => Err(EncodeError::Payload {
            name: M::NAME,
            source,
        }),
    }
}

/// Where an envelope goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// One actor.
    Actor(ActorId),
    /// A named group of actors on the receiving proc; the receiver picks the member(s).
    /// Routed messages have their own flow (design section 3, promise 4).
    Group(Arc<str>),
    /// The connection worker at the other end, for control envelopes.
    Transport,
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Actor(actor) => write!(f, "{actor}"),
            Recipient::Group(group) => write!(f, "group {group}"),
            Recipient::Transport => f.write_str("transport"),
        }
    }
}

/// What an envelope is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// A tell: no reply expected.
    Regular,
    /// An ask expecting one reply, correlated by `id`.
    Request {
        /// The requester's correlation id.
        id: u64,
    },
    /// An ask to a group expecting a reply from every member; the last one has `is_last`.
    RequestAll {
        /// The requester's correlation id.
        id: u64,
    },
    /// A reply to a request.
    Response {
        /// The correlation id of the request this answers.
        id: u64,
        /// Whether the handler replied, failed or dropped the reply token.
        outcome: Outcome,
        /// Whether this is the last reply the request will get.
        is_last: bool,
    },
    /// Asks the peer to answer with a [`Pong`](EnvelopeKind::Pong) carrying the same nonce
    /// (liveness and round-trip time).
    Ping {
        /// Echoed back in the pong; typically a send timestamp.
        nonce: u64,
    },
    /// The answer to a [`Ping`](EnvelopeKind::Ping).
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Grants the sender of `flow` more room: it may send `messages` more envelopes holding
    /// `bytes` more payload bytes.
    Credit {
        /// The flow the credit is for. Boxed because control envelopes are rare and this
        /// would otherwise double the size of every envelope.
        flow: Box<Flow>,
        /// How many more envelopes may be sent.
        messages: u32,
        /// How many more payload bytes may be sent.
        bytes: u64,
    },
    /// Tells the sender of `flow` that its recipient is gone; further sends fail.
    FlowClose {
        /// The flow that is closed.
        flow: Box<Flow>,
    },
}

impl EnvelopeKind {
    /// The request correlation id, for requests and responses.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            EnvelopeKind::Request { id }
            | EnvelopeKind::RequestAll { id }
            | EnvelopeKind::Response { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// Whether this is a control signal for the connection rather than a message for an
    /// actor.
    pub fn is_control(&self) -> bool {
        matches!(
            self,
            EnvelopeKind::Ping { .. }
                | EnvelopeKind::Pong { .. }
                | EnvelopeKind::Credit { .. }
                | EnvelopeKind::FlowClose { .. }
        )
    }

    /// A short name for logs: `regular`, `request`, `ping`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            EnvelopeKind::Regular => "regular",
            EnvelopeKind::Request { .. } => "request",
            EnvelopeKind::RequestAll { .. } => "request-all",
            EnvelopeKind::Response { .. } => "response",
            EnvelopeKind::Ping { .. } => "ping",
            EnvelopeKind::Pong { .. } => "pong",
            EnvelopeKind::Credit { .. } => "credit",
            EnvelopeKind::FlowClose { .. } => "flow-close",
        }
    }
}

impl fmt::Display for EnvelopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The handler replied; the payload is the reply.
    Ok,
    /// The request failed on the receiving side (for example its payload did not decode).
    Failed,
    /// The handler dropped the reply token without replying.
    Ignored,
}

/// One (sender → recipient) stream of envelopes whose credit window is managed as a unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The sending actor, or `None` for sends from outside any actor.
    pub sender: Option<ActorId>,
    /// The recipient of the flow's envelopes.
    pub recipient: Recipient,
}

/// A message name: a `&'static str` when it comes from [`RemoteMessage::NAME`], shared when
/// it was decoded, so neither path allocates per envelope.
///
/// Compares, hashes and derefs as the `str` it holds.
///
/// ```
/// use plexus_codec::MessageName;
///
/// let name = MessageName::from_static("calc.Add");
/// assert_eq!(name, MessageName::from(String::from("calc.Add")));
/// assert_eq!(name.len(), 8);
/// ```
#[derive(Clone)]
pub struct MessageName(NameRepr);

#[derive(Clone)]
enum NameRepr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl MessageName {
    /// A name backed by a static string.
    pub const fn from_static(name: &'static str) -> Self {
        MessageName(NameRepr::Static(name))
    }

    /// The name as a shared string, without copying it when it already is one.
    pub(crate) fn to_shared(&self) -> Arc<str> {
        match &self.0 {
            NameRepr::Static(name) => Arc::from(*name),
            NameRepr::Shared(name) => name.clone(),
        }
    }

    /// The name as a `str`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            NameRepr::Static(name) => name,
            NameRepr::Shared(name) => name,
        }
    }
}

impl Deref for MessageName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MessageName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<Arc<str>> for MessageName {
    fn from(name: Arc<str>) -> Self {
        MessageName(NameRepr::Shared(name))
    }
}

impl From<String> for MessageName {
    fn from(name: String) -> Self {
        MessageName(NameRepr::Shared(name.into()))
    }
}

impl From<&'static str> for MessageName {
    fn from(name: &'static str) -> Self {
        MessageName::from_static(name)
    }
}

impl PartialEq for MessageName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MessageName {}

impl Hash for MessageName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for MessageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MessageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
