//! The codec's errors, one enum per kind of consequence.
//!
//! - [`CodecError`]: the byte stream cannot be trusted any more; close the connection.
//! - [`DecodeError`]: one envelope's body or payload does not decode; skip it, release its
//!   credit, answer a request with `Decode`, keep the connection.
//! - [`EncodeError`]: an envelope could not be encoded; nothing was written.
//! - [`RegistryError`]: two message types claim one name; found at start-up.

use crate::envelope::MessageName;

/// The input is not a valid frame stream. The connection must be closed: after a framing
/// error there is no way to find the start of the next frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame header declares a length over the configured maximum. Checked before any
    /// memory for the frame is reserved.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared length.
        len: u64,
        /// The configured maximum ([`CodecConfig::max_frame_size`](crate::CodecConfig)).
        max: usize,
    },
    /// A frame or an envelope header is broken.
    #[error("malformed frame {frame} at byte {offset}: {fault}")]
    Malformed {
        /// The index of the frame on this connection, counting from zero.
        frame: u64,
        /// The offset of the fault within the frame's (decompressed) body.
        offset: usize,
        /// What is wrong.
        fault: Malformation,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame, {buffered} bytes of it received")]
    TruncatedStream {
        /// How many bytes of the unfinished frame had arrived.
        buffered: usize,
    },
}

/// What is wrong with a malformed frame (see [`CodecError::Malformed`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformation {
    /// A frame of length zero: it lacks even its flags byte.
    #[error("frame has no flags byte")]
    MissingFlags,
    /// The flags byte has bits this version does not define.
    #[error("unknown frame flags {flags:#04x}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A compressed frame arrived but this build has no `lz4` feature.
    #[error("frame is compressed but lz4 support is not built in")]
    CompressionUnsupported,
    /// A compressed frame declares a decompressed size over the frame limit.
    #[error("compressed frame declares {len} bytes, over the limit of {max} bytes")]
    DecompressedTooLarge {
        /// The declared decompressed size.
        len: u64,
        /// The frame limit.
        max: usize,
    },
    /// A compressed frame's block is corrupt or decompresses to a size other than declared.
    #[error("compressed frame does not decompress to its declared {declared} bytes: {reason}")]
    Decompress {
        /// The declared decompressed size.
        declared: usize,
        /// What the decompressor found.
        reason: String,
    },
    /// An envelope's length runs past the end of its frame.
    #[error("envelope of {len} bytes overruns the frame, {available} bytes left")]
    EnvelopeOverrun {
        /// The declared envelope length.
        len: u64,
        /// The bytes left in the frame.
        available: usize,
    },
    /// A header field runs past the end of its envelope.
    #[error("envelope header is cut short in its {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A varint header field does not fit its type.
    #[error("varint in the {field} does not fit its type")]
    VarintOverflow {
        /// The field being read.
        field: &'static str,
    },
    /// The envelope kind tag is not one this version defines.
    #[error("unknown envelope kind {kind}")]
    UnknownKind {
        /// The kind tag.
        kind: u8,
    },
    /// Bits that this version reserves are set.
    #[error("reserved bits {bits:#04x} set in the {field}")]
    ReservedBits {
        /// The field being read.
        field: &'static str,
        /// The offending bits.
        bits: u8,
    },
    /// A header refers to an interned entry the peer never defined.
    #[error("unknown interned {table} id {id}")]
    UnknownId {
        /// `actor` or `string`.
        table: &'static str,
        /// The id.
        id: u64,
    },
    /// A header refers to an interned entry whose definition was broken (see
    /// [`DecodeError::BrokenNameId`]); only a message name can do without its text.
    #[error("interned {table} id {id} was defined with a broken value")]
    BrokenId {
        /// `string`.
        table: &'static str,
        /// The id.
        id: u64,
    },
    /// A text field in the header is not UTF-8.
    #[error("the {field} is not valid utf-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// The peer defined more interned entries than the protocol allows, so the two ends'
    /// tables can no longer agree.
    #[error("the {table} intern table is full at {capacity} entries")]
    InternTableFull {
        /// `actor` or `string`.
        table: &'static str,
        /// The protocol's capacity for that table.
        capacity: usize,
    },
    /// The peer defined an interned entry longer than the protocol allows.
    #[error("interned {table} entry of {len} bytes is over the limit of {max} bytes")]
    InternedTooLong {
        /// `actor` or `string`.
        table: &'static str,
        /// The entry's length.
        len: u64,
        /// The protocol's limit.
        max: usize,
    },
}

/// One envelope's body or payload does not decode. The envelope is skipped; the connection
/// goes on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The envelope names its message by an interned id the peer never defined.
    #[error("unknown interned message name id {id}")]
    UnknownNameId {
        /// The id.
        id: u64,
    },
    /// The envelope names its message by an interned id whose definition was broken.
    #[error("interned message name id {id} was defined with a broken name")]
    BrokenNameId {
        /// The id.
        id: u64,
    },
    /// The message name runs past the end of its envelope.
    #[error("message name of {len} bytes overruns the envelope, {available} bytes left")]
    NameOverrun {
        /// The declared name length.
        len: u64,
        /// The bytes left in the envelope.
        available: usize,
    },
    /// The message name field is cut short or its varint does not fit.
    #[error("message name field is cut short")]
    NameTruncated,
    /// The message name is not UTF-8.
    #[error("message name is not valid utf-8")]
    InvalidName,
    /// No message type is registered under the envelope's name.
    #[error("no message type is registered under `{name}`")]
    UnknownName {
        /// The envelope's message name.
        name: MessageName,
    },
    /// A typed decode found a different message name.
    #[error("envelope carries `{found}` where `{expected}` was expected")]
    NameMismatch {
        /// The name of the type asked for.
        expected: &'static str,
        /// The envelope's message name.
        found: MessageName,
    },
    /// The payload does not have the registered type's shape.
    #[error("payload of `{name}` does not decode: {source}")]
    Payload {
        /// The message name.
        name: &'static str,
        /// What postcard found.
        #[source]
        source: postcard::Error,
    },
    /// The payload decoded but left bytes over, so it was not made from this type.
    #[error("payload of `{name}` decoded with {extra} bytes left over")]
    TrailingBytes {
        /// The message name.
        name: &'static str,
        /// The bytes left over.
        extra: usize,
    },
    /// A control envelope carries no message to decode.
    #[error("a {kind} envelope carries no message")]
    NotAMessage {
        /// The envelope kind.
        kind: &'static str,
    },
}

/// An envelope could not be encoded. Nothing was written and no interned entry was added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message does not serialize with postcard.
    #[error("message `{name}` does not encode: {source}")]
    Payload {
        /// The message name.
        name: &'static str,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The envelope alone is larger than a frame may be.
    #[error("envelope of {len} bytes does not fit a frame of at most {max} bytes")]
    EnvelopeTooLarge {
        /// The envelope's encoded size (or its payload size, if that alone is too large).
        len: usize,
        /// The frame limit.
        max: usize,
    },
}

/// A message type could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two different types claim one message name.
    #[error("message name `{name}` is claimed by both `{existing}` and `{new}`")]
    DuplicateName {
        /// The contested name.
        name: &'static str,
        /// The type registered first.
        existing: &'static str,
        /// The type whose registration was refused.
        new: &'static str,
    },
}
