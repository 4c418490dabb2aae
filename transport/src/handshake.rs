//! The connection handshake: a sans-IO exchange of [`Hello`]s and a thin async wrapper.
//!
//! Each side sends one hello as soon as the stream is open and reads the peer's. Neither
//! waits for the other before sending, so the exchange takes one round trip whichever side
//! dialled. The [`Handshake`] machine only turns bytes into an outcome; [`perform_handshake`]
//! moves the bytes over a stream and bounds the exchange in time.
//!
//! # Wire format
//!
//! | field          | size     | notes                                               |
//! |----------------|----------|-----------------------------------------------------|
//! | length         | 2 bytes  | little-endian `u16`, the body's length              |
//! | body           | `length` | the [`Hello`] encoded with postcard                 |
//!
//! The body starts with the hello's [`MAGIC`] (postcard writes a byte array as its raw
//! bytes), so the first ten bytes of a stream are always the length and the magic. The
//! machine checks the magic before it looks at the length: a peer that does not speak
//! plexus is told apart from a plexus peer whose hello is too large.
//!
//! # Limits
//!
//! A hello longer than [`MAX_HELLO_SIZE`] is refused from its length prefix, before any
//! memory is reserved for it. The machine never takes a byte past the end of the peer's
//! hello, so whatever the peer sends after it (its first frames) stays in the stream for
//! the frame decoder.
//!
//! # States
//!
//! ```text
//! Header (length + magic) ──▶ Body ──▶ Done(Negotiated)
//!          │                   │
//!          └───────────────────┴──▶ Failed
//! ```

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use plexus_codec::{
    Capabilities, CodecConfig, DEFAULT_MAX_FRAME_SIZE, SUPPORTED_VERSIONS, VersionRange,
};
use plexus_core::{Location, ProcId};
use serde::{Deserialize, Serialize};

use crate::{FlowConfig, FlowConfigError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first bytes of every plexus hello: `PLEXUS`, a zero byte and the handshake format
/// number (2: format 1 lacked the advertised location and flow window). A peer speaking
/// another format is refused with [`HandshakeError::BadMagic`] naming both.
pub const MAGIC: [u8; 8] = *b"PLEXUS\x00\x02";

/// The largest hello body accepted, in bytes. A hello holds a proc label and a few numbers,
/// so this leaves room for labels of several hundred bytes.
pub const MAX_HELLO_SIZE: usize = 1024;

/// The smallest frame limit a peer may announce. Below it ordinary envelopes would not fit
/// and every send would fail; such a peer is refused at the handshake instead.
pub const MIN_FRAME_SIZE: u32 = 4096;

/// The length prefix before the hello body.
const LEN_PREFIX: usize = 2;
/// The length prefix and the magic: what the machine reads before it trusts the length.
const HEADER: usize = LEN_PREFIX + MAGIC.len();

/// What each side announces when a connection opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`]; anything else is not a plexus peer.
    pub magic: [u8; 8],
    /// The protocol versions this side speaks.
    pub versions: VersionRange,
    /// The capabilities this side supports; the connection uses those both support.
    pub capabilities: Capabilities,
    /// This side's proc.
    pub proc: ProcId,
    /// A number drawn once per launch, so a restarted proc with the same id is told apart
    /// from its previous incarnation.
    pub launch_id: u64,
    /// The largest frame this side accepts, in bytes.
    pub max_frame_size: u32,
    /// Where this side accepts connections, if it does: the peer keys a connection this
    /// side dialed under this location, so two procs that dial each other can keep one
    /// connection (see [`prefer_connection`]).
    pub location: Option<Location>,
    /// The window this side's flow receiver grants each flow, if it runs one. The peer
    /// then spends credit against exactly this window on every flow-controlled envelope;
    /// without it the peer sends without credit.
    pub flow: Option<FlowConfig>,
}

impl Hello {
    /// The hello of `proc` in launch `launch_id`, announcing every version and capability
    /// this build supports and the default frame limit.
    pub fn new(proc: ProcId, launch_id: u64) -> Self {
        Hello {
            magic: MAGIC,
            versions: SUPPORTED_VERSIONS,
            capabilities: Capabilities::supported(),
            proc,
            launch_id,
            max_frame_size: u32::try_from(DEFAULT_MAX_FRAME_SIZE).unwrap_or(u32::MAX),
            location: None,
            flow: None,
        }
    }

    /// This hello advertising `location` as where this side accepts connections.
    pub fn with_location(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// This hello announcing a flow receiver with window `flow` (see [`Hello::flow`]).
    pub fn with_flow(mut self, flow: FlowConfig) -> Self {
        self.flow = Some(flow);
        self
    }

    /// The hello with its length prefix, as sent on the wire.
    pub fn encode(&self) -> Result<Bytes, HandshakeError> {
        let body = postcard::to_allocvec(self).map_err(HandshakeError::Encode)?;
        if body.len() > MAX_HELLO_SIZE {
            return Err(HandshakeError::HelloTooLarge {
                len: body.len(),
                max: MAX_HELLO_SIZE,
            });
        }
        let mut out = BytesMut::with_capacity(LEN_PREFIX + body.len());
        // Cannot truncate: checked against MAX_HELLO_SIZE above.
        out.put_u16_le(body.len() as u16);
        out.put_slice(&body);
        Ok(out.freeze())
    }
}

/// What both sides agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The highest protocol version both sides speak.
    pub version: u16,
    /// The capabilities both sides support.
    pub capabilities: Capabilities,
    /// The peer's proc.
    pub peer: ProcId,
    /// The peer's launch id.
    pub peer_launch_id: u64,
    /// The largest frame the peer accepts: the encoder of this connection must stay under it.
    pub peer_max_frame_size: u32,
    /// Where the peer accepts connections, if it advertised it.
    pub peer_location: Option<Location>,
    /// The window of the peer's flow receiver: this side must spend credit against it.
    /// `None` when the peer runs no flow control.
    pub peer_flow: Option<FlowConfig>,
    /// The window this side advertised: this side must run a flow receiver with it.
    pub local_flow: Option<FlowConfig>,
}

impl Negotiated {
    /// `local` adjusted to what was negotiated: the shared capabilities, and a frame limit
    /// no larger than either side's.
    pub fn codec_config(&self, local: &CodecConfig) -> CodecConfig {
        CodecConfig {
            max_frame_size: local.max_frame_size.min(self.peer_max_frame_size as usize),
            capabilities: local.capabilities.intersect(self.capabilities),
            ..local.clone()
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's first bytes are not the plexus magic.
    #[error("peer is not a plexus peer: expected magic {expected:02x?}, found {found:02x?}")]
    BadMagic {
        /// The magic this side expects.
        expected: [u8; 8],
        /// The bytes found in its place.
        found: [u8; 8],
    },
    /// A hello is longer than [`MAX_HELLO_SIZE`] (or shorter than its magic).
    #[error("hello of {len} bytes is outside the accepted size (at most {max} bytes)")]
    HelloTooLarge {
        /// The hello's declared (or, for the local hello, encoded) length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer's hello does not decode.
    #[error("peer hello does not decode: {0}")]
    Malformed(#[source] postcard::Error),
    /// The local hello does not encode.
    #[error("local hello does not encode: {0}")]
    Encode(#[source] postcard::Error),
    /// The two sides share no protocol version.
    #[error("no common protocol version: we speak {local}, the peer speaks {remote}")]
    VersionMismatch {
        /// The versions this side speaks.
        local: VersionRange,
        /// The versions the peer speaks.
        remote: VersionRange,
    },
    /// The peer announced a frame limit below [`MIN_FRAME_SIZE`].
    #[error("peer accepts frames of at most {peer} bytes, below the minimum of {min} bytes")]
    FrameLimitTooSmall {
        /// The peer's announced limit.
        peer: u32,
        /// The minimum.
        min: u32,
    },
    /// The peer advertised a flow window outside the bounds of [`FlowConfig::validate`].
    #[error("peer advertised an invalid flow window: {0}")]
    BadFlowWindow(#[source] FlowConfigError),
    /// The handshake did not finish in time.
    #[error("handshake did not finish within {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The stream ended before the peer's hello was complete.
    #[error("peer closed the stream after {received} bytes of its hello")]
    Eof {
        /// How many bytes of the hello had arrived.
        received: usize,
    },
    /// Reading or writing the stream failed.
    #[error("i/o error during the handshake: {0}")]
    Io(#[from] std::io::Error),
}

/// The handshake of one connection as a state machine over bytes.
///
/// Send [`transmit`](Self::transmit)'s bytes, [`feed`](Self::feed) what arrives, and read the
/// [`outcome`](Self::outcome) once [`needed`](Self::needed) is zero.
///
/// ```
/// use plexus_core::ProcId;
/// use plexus_transport::{Handshake, Hello};
///
/// let mut a = Handshake::new(Hello::new(ProcId::new("a", 1), 10))?;
/// let mut b = Handshake::new(Hello::new(ProcId::new("b", 1), 20))?;
/// let (to_b, to_a) = (a.transmit(), b.transmit());
/// assert_eq!(a.feed(&to_a)?, to_a.len());
/// assert_eq!(b.feed(&to_b)?, to_b.len());
/// assert_eq!(a.outcome().map(|n| n.peer_launch_id), Some(20));
/// assert_eq!(b.outcome().map(|n| n.peer.label()), Some("a"));
/// # Ok::<(), plexus_transport::HandshakeError>(())
/// ```
#[derive(Debug)]
pub struct Handshake {
    local: Hello,
    outgoing: Bytes,
    /// The peer's bytes so far: the header, then the body. Never longer than
    /// `LEN_PREFIX + MAX_HELLO_SIZE`.
    received: Vec<u8>,
    state: State,
}

#[derive(Debug)]
enum State {
    Header,
    Body { len: usize },
    Done(Negotiated),
    Failed,
}

impl Handshake {
    /// A handshake announcing `local`.
    pub fn new(local: Hello) -> Result<Self, HandshakeError> {
        let outgoing = local.encode()?;
        Ok(Handshake {
            local,
            outgoing,
            received: Vec::with_capacity(HEADER),
            state: State::Header,
        })
    }

    /// The bytes to send to the peer: the local hello with its length prefix.
    pub fn transmit(&self) -> Bytes {
        self.outgoing.clone()
    }

    /// How many more bytes the machine takes before it has an outcome; zero when done or
    /// failed. Reading exactly this many never takes a byte past the peer's hello.
    pub fn needed(&self) -> usize {
        match self.state {
            State::Header => HEADER - self.received.len(),
            State::Body { len } => LEN_PREFIX + len - self.received.len(),
            State::Done(_) | State::Failed => 0,
        }
    }

    /// Takes bytes from the front of `input`, never past the end of the peer's hello, and
    /// returns how many it took. An error fails the machine for good; later calls take
    /// nothing.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<usize, HandshakeError> {
        let start = input.len();
        while !input.is_empty() && self.needed() > 0 {
            let take = self.needed().min(input.len());
            self.received.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.needed() == 0 {
                if let Err(error) = self.advance() {
                    self.state = State::Failed;
                    return Err(error);
                }
            }
        }
        Ok(start - input.len())
    }

    /// The agreement, once the peer's hello has arrived and matched.
    pub fn outcome(&self) -> Option<&Negotiated> {
        match &self.state {
            State::Done(negotiated) => Some(negotiated),
            _ => None,
        }
    }

    /// The one transition function: called when the current part is complete.
    fn advance(&mut self) -> Result<(), HandshakeError> {
        match self.state {
            State::Header => {
                let mut found = [0; 8];
                found.copy_from_slice(&self.received[LEN_PREFIX..HEADER]);
                if found != MAGIC {
                    return Err(HandshakeError::BadMagic {
                        expected: MAGIC,
                        found,
                    });
                }
                let len = usize::from(u16::from_le_bytes([self.received[0], self.received[1]]));
                if !(MAGIC.len()..=MAX_HELLO_SIZE).contains(&len) {
                    return Err(HandshakeError::HelloTooLarge {
                        len,
                        max: MAX_HELLO_SIZE,
                    });
                }
                // The length is now known to be within the limit: reserve it once.
                self.received
                    .reserve_exact(LEN_PREFIX + len - self.received.len());
                self.state = State::Body { len };
                if self.needed() == 0 {
                    return self.advance();
                }
                Ok(())
            }
            State::Body { .. } => {
                let (remote, rest) =
                    postcard::take_from_bytes::<Hello>(&self.received[LEN_PREFIX..])
                        .map_err(HandshakeError::Malformed)?;
                if !rest.is_empty() {
                    return Err(HandshakeError::Malformed(
                        postcard::Error::DeserializeBadEncoding,
                    ));
                }
                let version = self
                    .local
                    .versions
                    .negotiate(remote.versions)
                    .map_err(|_| HandshakeError::VersionMismatch {
                        local: self.local.versions,
                        remote: remote.versions,
                    })?;
                if remote.max_frame_size < MIN_FRAME_SIZE {
                    return Err(HandshakeError::FrameLimitTooSmall {
                        peer: remote.max_frame_size,
                        min: MIN_FRAME_SIZE,
                    });
                }
                if let Some(flow) = &remote.flow {
                    flow.validate().map_err(HandshakeError::BadFlowWindow)?;
                }
                self.state = State::Done(Negotiated {
                    version,
                    capabilities: self.local.capabilities.intersect(remote.capabilities),
                    peer: remote.proc,
                    peer_launch_id: remote.launch_id,
                    peer_max_frame_size: remote.max_frame_size,
                    peer_location: remote.location,
                    peer_flow: remote.flow,
                    local_flow: self.local.flow.clone(),
                });
                Ok(())
            }
            State::Done(_) | State::Failed => Ok(()),
        }
    }
}

/// Exchanges hellos over `stream` and returns what both sides agreed on, or fails after
/// `timeout`.
///
/// It reads exactly the peer's hello and nothing after it, so the stream can be handed to
/// the connection worker as is. The local hello is written before the peer's is read; it
/// is at most [`MAX_HELLO_SIZE`] + 2 bytes, so an in-memory pipe needs at least that much
/// buffer.
///
/// # Cancel safety
///
/// Not cancel-safe: dropping the future may leave part of a hello written or read, so the
/// stream must be dropped with it.
pub async fn perform_handshake<S>(
    stream: &mut S,
    local: Hello,
    timeout: Duration,
) -> Result<Negotiated, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        let mut handshake = Handshake::new(local)?;
        stream.write_all(&handshake.transmit()).await?;
        stream.flush().await?;
        let mut buf = [0u8; LEN_PREFIX + MAX_HELLO_SIZE];
        let mut received = 0;
        while handshake.needed() > 0 {
            let want = handshake.needed();
            let n = stream.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(HandshakeError::Eof { received });
            }
            received += n;
            handshake.feed(&buf[..n])?;
        }
        match handshake.state {
            State::Done(negotiated) => Ok(negotiated),
            // `feed` returns the error of the transition that failed the machine.
            _ => Err(HandshakeError::Eof { received }),
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Timeout { after: timeout }),
    }
}

/// Whether to keep a connection between `local` and `remote` (each a proc and its launch
/// id) when the two may have dialled each other at once.
///
/// Both ends apply the same rule and reach the same answer for the same connection: the
/// connection dialled by the smaller of the two identities is kept and the other one is
/// closed. A proc talking to itself keeps the connections it dialled.
///
/// ```
/// use plexus_core::ProcId;
/// use plexus_transport::prefer_connection;
///
/// let (a, b) = ((ProcId::new("a", 1), 7), (ProcId::new("b", 1), 3));
/// // The connection `a` dialled is kept on both ends, the one `b` dialled is dropped.
/// assert!(prefer_connection((&a.0, a.1), (&b.0, b.1), true));
/// assert!(prefer_connection((&b.0, b.1), (&a.0, a.1), false));
/// assert!(!prefer_connection((&b.0, b.1), (&a.0, a.1), true));
/// ```
pub fn prefer_connection(
    local: (&ProcId, u64),
    remote: (&ProcId, u64),
    initiated_by_local: bool,
) -> bool {
    if local <= remote {
        initiated_by_local
    } else {
        !initiated_by_local
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn hello(label: &str, launch: u64) -> Hello {
        Hello::new(ProcId::new(label, 1), launch)
    }

    /// The machine reaches the same outcome when the peer's hello arrives one byte at a
    /// time, and it takes no byte past the hello.
    #[test]
    fn one_byte_at_a_time_negotiates_and_stops_at_the_hello() {
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        let b = Handshake::new(hello("b", 2)).unwrap();
        let mut input = b.transmit().to_vec();
        let hello_len = input.len();
        input.extend_from_slice(b"first frame");
        let mut taken = 0;
        for byte in &input {
            assert!(a.outcome().is_none() || taken == hello_len);
            taken += a.feed(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(taken, hello_len);
        let outcome = a.outcome().unwrap();
        assert_eq!(outcome.peer, ProcId::new("b", 1));
        assert_eq!(outcome.peer_launch_id, 2);
        assert_eq!(outcome.version, SUPPORTED_VERSIONS.max);
        assert_eq!(outcome.capabilities, Capabilities::supported());
    }

    /// A length prefix over the limit is refused after the header, with only the header's
    /// bytes ever buffered.
    #[test]
    fn an_oversized_hello_is_refused_from_its_prefix() {
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        let mut input = (u16::MAX).to_le_bytes().to_vec();
        input.extend_from_slice(&MAGIC);
        input.extend_from_slice(&[0; 64]);
        let error = a.feed(&input).unwrap_err();
        assert!(matches!(
            error,
            HandshakeError::HelloTooLarge {
                len: 65535,
                max: MAX_HELLO_SIZE
            }
        ));
        assert!(
            a.received.capacity() <= HEADER + 16,
            "{}",
            a.received.capacity()
        );
        assert_eq!(a.feed(&input).unwrap(), 0);
        assert!(a.outcome().is_none());
    }

    /// Anything but the magic fails with both the expected and the found bytes.
    #[test]
    fn bad_magic_is_refused() {
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        let error = a.feed(b"GET / HTTP/1.1\r\n").unwrap_err();
        let HandshakeError::BadMagic { found, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(found, b"T / HTTP");
        assert!(error.to_string().contains("expected magic"));
    }

    /// Disjoint version ranges fail on both sides, naming both ranges.
    #[test]
    fn disjoint_versions_fail_naming_both_ranges() {
        let mut old = hello("a", 1);
        old.versions = VersionRange::new(7, 9);
        let mut a = Handshake::new(old).unwrap();
        let b = Handshake::new(hello("b", 1)).unwrap();
        let error = a.feed(&b.transmit()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("7..=9"), "{message}");
        assert!(
            message.contains(&SUPPORTED_VERSIONS.to_string()),
            "{message}"
        );
    }

    /// A peer announcing a frame limit too small for ordinary envelopes is refused, and
    /// the encoder of an accepted one stays under the smaller of the two limits.
    #[test]
    fn frame_limits_are_bounded_and_combined() {
        let mut tiny = hello("b", 1);
        tiny.max_frame_size = 16;
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        let error = a
            .feed(&Handshake::new(tiny).unwrap().transmit())
            .unwrap_err();
        assert!(
            matches!(
                error,
                HandshakeError::FrameLimitTooSmall {
                    peer: 16,
                    min: MIN_FRAME_SIZE
                }
            ),
            "{error:?}"
        );

        let mut small = hello("b", 1);
        small.max_frame_size = MIN_FRAME_SIZE;
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        a.feed(&Handshake::new(small).unwrap().transmit()).unwrap();
        let config = a.outcome().unwrap().codec_config(&CodecConfig::default());
        assert_eq!(config.max_frame_size, MIN_FRAME_SIZE as usize);
    }

    /// A hello whose body is not a hello is malformed, not a panic.
    #[test]
    fn a_garbled_body_is_malformed() {
        let mut bytes = Handshake::new(hello("a", 1)).unwrap().transmit().to_vec();
        // The label's length varint, right after the magic and the version range and
        // capabilities, claims more bytes than the body holds.
        let len = bytes.len();
        bytes.truncate(HEADER + 3);
        bytes[0] = (bytes.len() - LEN_PREFIX) as u8;
        bytes[1] = 0;
        assert!(len > bytes.len());
        let mut b = Handshake::new(hello("b", 1)).unwrap();
        assert!(matches!(b.feed(&bytes), Err(HandshakeError::Malformed(_))));
    }

    /// The connection dialled by the smaller identity is kept, as seen from both ends, and
    /// exactly one of the two simultaneous connections survives.
    #[test]
    fn simultaneous_dials_keep_exactly_one_connection() {
        let ids = [
            (ProcId::new("a", 1), 5),
            (ProcId::new("a", 1), 6),
            (ProcId::new("a", 2), 0),
            (ProcId::new("b", 0), 0),
        ];
        for x in &ids {
            for y in &ids {
                if x == y {
                    continue;
                }
                let (x, y) = ((&x.0, x.1), (&y.0, y.1));
                // Connection 1 is dialled by x, connection 2 by y.
                let keep_1 = prefer_connection(x, y, true);
                assert_eq!(keep_1, prefer_connection(y, x, false), "ends disagree");
                let keep_2 = prefer_connection(x, y, false);
                assert_eq!(keep_2, prefer_connection(y, x, true), "ends disagree");
                assert!(keep_1 ^ keep_2, "exactly one survives");
                assert_eq!(keep_1, x < y);
            }
        }
    }

    /// The advertised location and flow window reach the peer, each side learns the
    /// other's window and keeps its own, and a hello without them negotiates neither.
    #[test]
    fn location_and_flow_window_are_exchanged() {
        let location: Location = "tcp://127.0.0.1:4000".parse().unwrap();
        let flow = FlowConfig {
            window_messages: 64,
            ..FlowConfig::default()
        };
        let mut a = Handshake::new(
            hello("a", 1)
                .with_location(location.clone())
                .with_flow(flow.clone()),
        )
        .unwrap();
        let mut b = Handshake::new(hello("b", 2)).unwrap();
        let (to_b, to_a) = (a.transmit(), b.transmit());
        a.feed(&to_a).unwrap();
        b.feed(&to_b).unwrap();
        let (at_a, at_b) = (a.outcome().unwrap(), b.outcome().unwrap());
        assert_eq!(at_b.peer_location, Some(location));
        assert_eq!(at_b.peer_flow, Some(flow.clone()));
        assert_eq!(at_b.local_flow, None);
        assert_eq!(at_a.peer_location, None);
        assert_eq!(at_a.peer_flow, None);
        assert_eq!(at_a.local_flow, Some(flow));
    }

    /// A peer advertising a window outside its bounds is refused: this side could not
    /// spend credit against it.
    #[test]
    fn an_invalid_flow_window_is_refused() {
        let mut bad = hello("b", 1);
        bad.flow = Some(FlowConfig {
            window_messages: 0,
            ..FlowConfig::default()
        });
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        let error = a
            .feed(&Handshake::new(bad).unwrap().transmit())
            .unwrap_err();
        assert!(
            matches!(error, HandshakeError::BadFlowWindow(_)),
            "{error:?}"
        );
    }

    /// A hello of the previous format (magic ending in 1) is refused with both magics.
    #[test]
    fn the_previous_format_is_refused_by_its_magic() {
        let mut old = Handshake::new(hello("b", 1)).unwrap().transmit().to_vec();
        old[LEN_PREFIX + MAGIC.len() - 1] = 1;
        let mut a = Handshake::new(hello("a", 1)).unwrap();
        let error = a.feed(&old).unwrap_err();
        assert!(
            matches!(error, HandshakeError::BadMagic { found, .. } if found[7] == 1),
            "{error:?}"
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn location() -> impl Strategy<Value = Option<Location>> {
            prop_oneof![
                Just(None),
                any::<u64>().prop_map(|n| Some(Location::Local(n))),
                (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| Some(Location::Tcp(
                    std::net::SocketAddr::from((ip, port))
                ))),
                "[a-z/]{1,200}".prop_map(|path| Some(Location::Unix(path.into()))),
            ]
        }

        fn flow() -> impl Strategy<Value = Option<FlowConfig>> {
            prop_oneof![
                Just(None),
                (1u32..=u32::MAX, 1u8..=99).prop_map(|(window_messages, update_percent)| {
                    Some(FlowConfig {
                        window_messages,
                        update_percent,
                        ..FlowConfig::default()
                    })
                }),
            ]
        }

        proptest! {
            /// Any hello with a label, location and window of bounded size stays within
            /// the hello limit and arrives intact, fed in chunks of any size.
            #[test]
            fn any_bounded_hello_round_trips(
                label in "[a-z]{1,200}",
                launch in any::<u64>(),
                location in location(),
                flow in flow(),
                chunk in 1usize..64,
            ) {
                let mut sent = Hello::new(ProcId::new(label.as_str(), 1), launch);
                sent.location = location.clone();
                sent.flow = flow.clone();
                let bytes = Handshake::new(sent).unwrap().transmit();
                prop_assert!(bytes.len() <= LEN_PREFIX + MAX_HELLO_SIZE);
                let mut a = Handshake::new(hello("a", 1)).unwrap();
                for part in bytes.chunks(chunk) {
                    a.feed(part).unwrap();
                }
                let outcome = a.outcome().unwrap();
                prop_assert_eq!(outcome.peer_launch_id, launch);
                prop_assert_eq!(&outcome.peer_location, &location);
                prop_assert_eq!(&outcome.peer_flow, &flow);
            }

            /// Arbitrary bytes after a valid header never panic the machine.
            #[test]
            fn garbage_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut input = ((MAGIC.len() + body.len()) as u16).to_le_bytes().to_vec();
                input.extend_from_slice(&MAGIC);
                input.extend_from_slice(&body);
                let mut a = Handshake::new(hello("a", 1)).unwrap();
                let _ = a.feed(&input);
            }
        }
    }
}
