//! Frames: length-prefixed batches of envelopes, written by a [`FrameEncoder`] and read
//! back, from input cut anywhere, by a [`FrameDecoder`].
//!
//! Both are sans-IO: the encoder fills a buffer the caller writes out, the decoder takes
//! whatever bytes the caller has read. Neither touches a socket or a clock, so the async
//! connection worker stays a loop that moves bytes, and the codec is tested without one.
//!
//! ```
//! use plexus_codec::{CodecConfig, Decoded, EnvelopeKind, FrameDecoder, FrameEncoder, NetworkEnvelope};
//!
//! let mut encoder = FrameEncoder::new(CodecConfig::default());
//! encoder.push(&NetworkEnvelope::control(EnvelopeKind::Ping { nonce: 1 }))?;
//! encoder.push(&NetworkEnvelope::control(EnvelopeKind::Ping { nonce: 2 }))?;
//! let bytes = encoder.finish();
//!
//! let mut decoder = FrameDecoder::new(CodecConfig::default());
//! let mut nonces = Vec::new();
//! // Bytes may arrive in any pieces; here, one at a time.
//! for byte in bytes.chunks(1) {
//!     let mut input = byte;
//!     while !input.is_empty() {
//!         let used = decoder.feed(input);
//!         input = &input[used..];
//!         while let Some(decoded) = decoder.next()? {
//!             if let Decoded::Envelope(envelope) = decoded {
//!                 if let EnvelopeKind::Ping { nonce } = envelope.kind {
//!                     nonces.push(nonce);
//!                 }
//!             }
//!         }
//!     }
//! }
//! assert_eq!(nonces, [1, 2]);
//! decoder.end_of_stream()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Wire format
//!
//! A connection carries frames back to back. Integers are little-endian; a *varint* is an
//! unsigned LEB128 of at most ten bytes.
//!
//! ```text
//! Frame
//! ┌──────────────────┬──────────────┬─────────────────────────────────────────────────────┐
//! │ field            │ size         │ presence                                            │
//! ├──────────────────┼──────────────┼─────────────────────────────────────────────────────┤
//! │ length           │ 4, u32       │ always: the bytes after this field, 1..=max         │
//! │ flags            │ 1            │ always: bit 0 compressed; other bits zero           │
//! │ decompressed len │ 4, u32       │ compressed frames: the body's size before lz4       │
//! │ body             │ the rest     │ always: envelopes back to back (an lz4 block of     │
//! │                  │              │ them when compressed); may be empty                 │
//! └──────────────────┴──────────────┴─────────────────────────────────────────────────────┘
//!
//! Envelope (in a body)
//! ┌──────────────────┬──────────────┬─────────────────────────────────────────────────────┐
//! │ field            │ size         │ presence                                            │
//! ├──────────────────┼──────────────┼─────────────────────────────────────────────────────┤
//! │ length           │ varint       │ always: the bytes of the envelope after this field  │
//! │ tag              │ 1            │ always: bits 0–3 kind (0 regular, 1 request,        │
//! │                  │              │ 2 request-all, 3 response, 4 ping, 5 pong,          │
//! │                  │              │ 6 credit, 7 flow-close), bit 4 sender, bit 5 trace  │
//! │                  │              │ id, bits 6–7 recipient form (0 actor, 1 group,      │
//! │                  │              │ 2 transport)                                        │
//! │ hop limit        │ 1            │ always                                              │
//! │ trace id         │ 8, u64       │ tag bit 5                                           │
//! │ sender           │ actor ref    │ tag bit 4                                           │
//! │ recipient        │ actor ref or │ recipient form 0 (actor) or 1 (group); nothing for  │
//! │                  │ string ref   │ form 2 (transport)                                  │
//! │ request id       │ varint       │ request, request-all, response                      │
//! │ response flags   │ 1            │ response: bits 0–1 outcome (0 ok, 1 failed,         │
//! │                  │              │ 2 ignored), bit 2 is_last; other bits zero          │
//! │ nonce            │ varint       │ ping, pong                                          │
//! │ flow             │ 1 + refs     │ credit, flow-close: bit 0 sender, bits 1–2          │
//! │                  │              │ recipient form; then the sender's actor ref and     │
//! │                  │              │ the recipient, as above                             │
//! │ messages, bytes  │ varint each  │ credit                                              │
//! ├──────────────────┼──────────────┼─────────────────────────────────────────────────────┤
//! │ name             │ string ref   │ always (empty for control envelopes)                │
//! │ payload          │ the rest     │ always: postcard bytes; may be empty                │
//! └──────────────────┴──────────────┴─────────────────────────────────────────────────────┘
//!
//! Reference (actor ref, string ref)
//! ┌──────────────────┬──────────────┬─────────────────────────────────────────────────────┐
//! │ varint value     │ then         │ meaning                                             │
//! ├──────────────────┼──────────────┼─────────────────────────────────────────────────────┤
//! │ 0                │ the value    │ a literal: not interned                             │
//! │ 1                │ the value    │ a definition: interned under the table's next id    │
//! │                  │              │ (0, 1, 2, … per table and direction)                │
//! │ n ≥ 2            │ nothing      │ the value interned under id n − 2                   │
//! └──────────────────┴──────────────┴─────────────────────────────────────────────────────┘
//! A string in full is a varint length and UTF-8 bytes; an actor id in full is its proc
//! label (string), proc instance (varint), actor name (string) and index (varint).
//! ```
//!
//! Everything above the line in the envelope table is the *header*: if it does not decode,
//! the frame is [malformed](crate::CodecError::Malformed). The name and payload are the
//! *body*: if the name does not decode (an unknown or broken interned id, a cut or non-UTF-8
//! text), the decoder yields [`Decoded::Skipped`](crate::Decoded::Skipped) and carries on
//! at the next envelope, which the length field locates.
//!
//! With interning, a tell of a `u64` from one named actor to another costs, once the
//! actors and the name have been sent: length 1, tag 1, hop limit 1, trace id 8, sender 1,
//! recipient 1, name 1, payload 1–10 — at most 24 bytes, 16 for a small value, plus a
//! share of the 5-byte frame header. Without a trace id it is 8 bytes less.
//!
//! # Limits and EOF
//!
//! - A frame's length is checked against
//!   [`CodecConfig::max_frame_size`](crate::CodecConfig::max_frame_size) (default 8 MiB)
//!   as soon as its four length bytes have arrived, before any memory is reserved for it;
//!   a larger frame is [`CodecError::FrameTooLarge`](crate::CodecError::FrameTooLarge).
//!   The frame's buffer then grows with the bytes that actually arrive, never past the
//!   declared length.
//! - A compressed frame's declared decompressed size is held to the same limit, and to
//!   what its compressed size could possibly expand to, before the output is allocated.
//! - The decoder holds at most one frame: [`FrameDecoder::feed`] takes bytes only up to the
//!   end of the frame being assembled, and none while a complete frame still has envelopes
//!   to read. So its memory stays below `max_frame_size` plus a few bytes, whatever the
//!   input (while decompressing, the compressed and decompressed bodies briefly coexist).
//!   Payloads are slices of their frame: holding one keeps its frame's memory alive.
//! - The interning tables are bounded too (see [`InternTable`](crate::InternTable)).
//! - No envelope type contains itself, so decoding uses a fixed amount of stack.
//! - After an error the decoder is spent: every later call returns the same error. The
//!   caller closes the connection.
//! - At end of stream, the caller drains [`FrameDecoder::next`] and then asks
//!   [`FrameDecoder::end_of_stream`]: it is `Ok` at a frame boundary and
//!   [`CodecError::TruncatedStream`](crate::CodecError::TruncatedStream) when the stream
//!   stopped inside a frame, whose envelopes are then lost.
//! - The encoder never writes a frame over `max_frame_size`: an envelope that does not fit
//!   in the current frame starts the next one, and one that cannot fit any frame is
//!   refused with [`EncodeError::EnvelopeTooLarge`](crate::EncodeError::EnvelopeTooLarge)
//!   without touching the buffer or the interning table.

mod compress;
mod decoder;
mod encoder;
#[cfg(test)]
mod tests;

pub use decoder::FrameDecoder;
pub use encoder::{FrameEncoder, FrameState};
