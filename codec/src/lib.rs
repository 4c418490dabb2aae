//! The network envelope, its framing and the message registry of plexus (design section 5).
//!
//! The codec turns [`NetworkEnvelope`]s into bytes and back for the transport, without any
//! socket of its own:
//!
//! - [`envelope`]: the envelope and its parts ([`Recipient`], [`EnvelopeKind`], [`Flow`]).
//! - [`frame`]: [`FrameEncoder`] batches envelopes into length-prefixed frames,
//!   [`FrameDecoder`] reads them back from input cut anywhere. The wire format, its limits
//!   and the end-of-stream rules are documented there.
//! - [`InternTable`]: message names, group names and actor ids are sent in full once per
//!   connection and by a small number afterwards.
//! - [`MessageRegistry`]: from a message name to the decoder of its
//!   [`RemoteMessage`](plexus_core::RemoteMessage) type.
//! - [`version`]: the protocol version, the [`Capabilities`] the handshake exchanges, and
//!   what changes are compatible.
//!
//! A broken frame is a [`CodecError`] and ends the connection; an envelope whose body does
//! not decode is [`Decoded::Skipped`] and the connection goes on.
//!
//! ```
//! use plexus_codec::{
//!     CodecConfig, Decoded, EnvelopeKind, FrameDecoder, FrameEncoder, MessageRegistry,
//!     NetworkEnvelope, Recipient,
//! };
//! use plexus_core::{ActorId, ProcId, RemoteMessage};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Greet(String);
//! impl RemoteMessage for Greet {
//!     const NAME: &'static str = "hello.Greet";
//! }
//!
//! let alice = ActorId::new(ProcId::new("a", 1), "alice", 0);
//! let bob = ActorId::new(ProcId::new("b", 1), "bob", 0);
//! let envelope = NetworkEnvelope::message(
//!     Some(alice),
//!     Recipient::Actor(bob),
//!     EnvelopeKind::Regular,
//!     &Greet("hi".into()),
//! )?;
//!
//! let mut encoder = FrameEncoder::new(CodecConfig::default());
//! encoder.push(&envelope)?;
//! let bytes = encoder.finish();
//!
//! let mut decoder = FrameDecoder::new(CodecConfig::default());
//! assert_eq!(decoder.feed(&bytes), bytes.len());
//! let Some(Decoded::Envelope(received)) = decoder.next()? else {
//!     panic!("one envelope was sent");
//! };
//! assert_eq!(received, envelope);
//!
//! let mut registry = MessageRegistry::new();
//! registry.register::<Greet>()?;
//! let message = registry.decode(&received)?;
//! assert_eq!(message.downcast_ref(), Some(&Greet("hi".into())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! - `lz4`: per-frame lz4 compression, used on connections that negotiate
//!   [`Capabilities::LZ4`].
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod decode;
mod encode;
pub mod envelope;
mod error;
pub mod frame;
mod intern;
mod layout;
mod registry;
pub mod version;
mod wire;

pub use config::{CodecConfig, DEFAULT_MAX_FRAME_SIZE};
pub use decode::{Decoded, Skipped};
pub use envelope::{
    DEFAULT_HOP_LIMIT, EnvelopeKind, Flow, MessageName, NetworkEnvelope, Outcome, Recipient,
};
pub use error::{CodecError, DecodeError, EncodeError, Malformation, RegistryError};
pub use frame::{FrameDecoder, FrameEncoder, FrameState};
pub use intern::{InternTable, MAX_INTERNED_ACTORS, MAX_INTERNED_LEN, MAX_INTERNED_STRINGS};
pub use registry::{DecodeFn, MessageRegistry};
pub use version::{
    Capabilities, PROTOCOL_VERSION, SUPPORTED_VERSIONS, VersionMismatch, VersionRange,
};
