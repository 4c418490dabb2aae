//! Reassembles frames from input cut anywhere and yields their envelopes one by one.

use bytes::{Bytes, BytesMut};

use crate::config::CodecConfig;
use crate::decode::{Decoded, read_envelope};
use crate::error::{CodecError, Malformation};
use crate::frame::compress::decompress;
use crate::intern::InternTable;
use crate::layout::{FLAG_COMPRESSED, KNOWN_FLAGS, LEN_PREFIX};
use crate::wire::{Reader, Short};

/// The smallest buffer reserved for a frame's body, so that a frame arriving in tiny
/// pieces does not reallocate for each one.
const FIRST_RESERVATION: usize = 4096;

/// Decodes a stream of frames fed in arbitrary pieces.
///
/// [`feed`](FrameDecoder::feed) takes input, [`next`](FrameDecoder::next) yields
/// [`Decoded`] envelopes until it needs more input. The decoder owns the inbound
/// [`InternTable`] of its connection. See the [module docs](crate::frame) for the format,
/// the limits and the end-of-stream rules.
///
/// ```
/// use plexus_codec::{CodecConfig, CodecError, FrameDecoder};
///
/// let mut decoder = FrameDecoder::new(CodecConfig { max_frame_size: 1024, ..CodecConfig::default() });
/// // A frame header declaring 1 MiB is refused before anything is allocated for it.
/// let used = decoder.feed(&(1u32 << 20).to_le_bytes());
/// assert_eq!(used, 4);
/// assert_eq!(
///     decoder.next(),
///     Err(CodecError::FrameTooLarge { len: 1 << 20, max: 1024 })
/// );
/// assert_eq!(decoder.feed(b"more"), 0);
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    limit: usize,
    /// The length prefix of the frame being assembled, as far as it has arrived.
    prefix: [u8; LEN_PREFIX],
    prefix_len: usize,
    /// The frame being assembled (flags byte and body), once its length is known. Between
    /// frames it is the empty tail of the last frame's buffer, which the next frame
    /// reclaims when nothing refers to the last frame any more: a connection then
    /// assembles frame after frame in one allocation instead of two new ones per frame
    /// (the buffer and the header that lets payloads share it).
    assembly: BytesMut,
    expected: Option<usize>,
    /// The frame whose envelopes are being read, its index, and the read position.
    current: Option<Bytes>,
    current_index: u64,
    position: usize,
    /// How many frames have been taken for reading.
    frames: u64,
    table: InternTable,
    failed: Option<CodecError>,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new(config: CodecConfig) -> Self {
        FrameDecoder {
            limit: config.frame_limit(),
            prefix: [0; LEN_PREFIX],
            prefix_len: 0,
            assembly: BytesMut::new(),
            expected: None,
            current: None,
            current_index: 0,
            position: 0,
            frames: 0,
            table: InternTable::new(),
            failed: None,
        }
    }

    /// Takes bytes from the front of `input` and returns how many it took.
    ///
    /// It takes at most up to the end of the frame being assembled, and nothing while a
    /// complete frame waits to be read or after an error: call [`next`](Self::next) until
    /// it returns `Ok(None)`, then feed the rest. After `next` returned `Ok(None)`, a
    /// non-empty `input` is always taken from (at least one byte).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        if self.failed.is_some() || self.frame_complete() {
            return 0;
        }
        if let Some(frame) = &self.current {
            if self.position < frame.len() {
                return 0;
            }
            // Fully read: let it go before assembling the next, so only one is held.
            self.current = None;
        }
        let mut used = 0;
        let expected = match self.expected {
            Some(expected) => expected,
            None => {
                let take = (LEN_PREFIX - self.prefix_len).min(input.len());
                self.prefix[self.prefix_len..self.prefix_len + take]
                    .copy_from_slice(&input[..take]);
                self.prefix_len += take;
                used += take;
                if self.prefix_len < LEN_PREFIX {
                    return used;
                }
                match self.start_frame() {
                    Some(expected) => expected,
                    None => return used,
                }
            }
        };
        let take = (expected - self.assembly.len()).min(input.len() - used);
        self.reserve(take, expected);
        self.assembly.extend_from_slice(&input[used..used + take]);
        used + take
    }

    /// The next envelope, `Ok(None)` when more input is needed, or the error that ends
    /// the stream (returned again by every later call).
    #[allow(clippy::should_implement_trait)] // fallible and resumable, unlike `Iterator`
    pub fn next(&mut self) -> Result<Option<Decoded>, CodecError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        loop {
            if let Some(frame) = &self.current {
                if self.position < frame.len() {
                    return match read_one(frame, &mut self.position, &mut self.table) {
                        Ok(decoded) => Ok(Some(decoded)),
                        Err((offset, fault)) => Err(self.fail_envelope(offset, fault)),
                    };
                }
                self.current = None;
            }
            if !self.frame_complete() {
                return Ok(None);
            }
            self.open_frame()?;
        }
    }

    /// Checks that the stream may end here: `Ok` at a frame boundary, an error if the
    /// stream stopped inside a frame or failed earlier. Drain [`next`](Self::next) first.
    pub fn end_of_stream(&self) -> Result<(), CodecError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let buffered = self.prefix_len + self.assembly.len();
        if buffered > 0 && !self.frame_complete() {
            return Err(CodecError::TruncatedStream { buffered });
        }
        Ok(())
    }

    /// The memory the decoder holds for frames: the buffer of the frame being assembled
    /// and the frame being read. Bounded by the frame limit (see the module docs).
    pub fn buffered_capacity(&self) -> usize {
        self.assembly.capacity() + self.current.as_ref().map_or(0, Bytes::len)
    }

    /// The inbound interning table.
    pub fn interned(&self) -> &InternTable {
        &self.table
    }

    fn frame_complete(&self) -> bool {
        self.expected == Some(self.assembly.len())
    }

    /// Checks a complete length prefix; returns the frame's length, or `None` after
    /// recording why it is refused.
    fn start_frame(&mut self) -> Option<usize> {
        let len = u32::from_le_bytes(self.prefix);
        if len as usize > self.limit {
            return self.fail(CodecError::FrameTooLarge {
                len: u64::from(len),
                max: self.limit,
            });
        }
        if len == 0 {
            let error = CodecError::Malformed {
                frame: self.frames,
                offset: 0,
                fault: Malformation::MissingFlags,
            };
            return self.fail(error);
        }
        self.expected = Some(len as usize);
        self.expected
    }

    /// Grows the assembly buffer for `more` bytes by doubling, never past `expected`.
    fn reserve(&mut self, more: usize, expected: usize) {
        let len = self.assembly.len();
        if self.assembly.capacity() - len >= more {
            return;
        }
        // A new frame first tries the last frame's buffer, when it is large enough and no
        // payload of it is alive; that allocation was already within the limit.
        if len == 0 && self.assembly.try_reclaim(expected) {
            return;
        }
        let target = (len + more)
            .max(self.assembly.capacity() * 2)
            .max(FIRST_RESERVATION)
            .min(expected);
        // A fresh buffer of exactly `target` (`BytesMut::reserve` may round up past the
        // declared length), carrying over what has arrived of the frame.
        let mut grown = BytesMut::with_capacity(target);
        grown.extend_from_slice(&self.assembly);
        self.assembly = grown;
    }

    /// Takes the complete frame out of assembly and makes it the one being read.
    fn open_frame(&mut self) -> Result<(), CodecError> {
        // `split` leaves the buffer's spare capacity here, and the buffer itself to be
        // reclaimed by the next frame once this one is dropped.
        let assembled = self.assembly.split().freeze();
        self.expected = None;
        self.prefix_len = 0;
        let index = self.frames;
        self.frames += 1;
        let malformed = |offset, fault| CodecError::Malformed {
            frame: index,
            offset,
            fault,
        };
        // `start_frame` refused length zero, so the flags byte is there.
        let flags = assembled.first().copied().unwrap_or_default();
        if flags & !KNOWN_FLAGS != 0 {
            return Err(self.fail_now(malformed(0, Malformation::UnknownFlags { flags })));
        }
        let body = if flags & FLAG_COMPRESSED != 0 {
            match decompress(assembled.get(1..).unwrap_or_default(), self.limit) {
                Ok(body) => Bytes::from(body),
                Err(fault) => return Err(self.fail_now(malformed(1, fault))),
            }
        } else {
            assembled.slice(1..)
        };
        self.current = Some(body);
        self.current_index = index;
        self.position = 0;
        Ok(())
    }

    fn fail_envelope(&mut self, offset: usize, fault: Malformation) -> CodecError {
        let error = CodecError::Malformed {
            frame: self.current_index,
            offset,
            fault,
        };
        self.fail_now(error)
    }

    /// Records `error` as the end of the stream and returns it.
    fn fail_now(&mut self, error: CodecError) -> CodecError {
        tracing::debug!(error = %error, "frame stream failed");
        self.current = None;
        self.assembly = BytesMut::new();
        self.failed = Some(error.clone());
        error
    }

    fn fail(&mut self, error: CodecError) -> Option<usize> {
        self.fail_now(error);
        None
    }
}

/// Reads the envelope at `*position` in `frame` and moves `position` past it. A malformed
/// envelope is returned with its offset in the frame.
fn read_one(
    frame: &Bytes,
    position: &mut usize,
    table: &mut InternTable,
) -> Result<Decoded, (usize, Malformation)> {
    let mut reader = Reader::new(&frame[*position..]);
    let len = reader.varint().map_err(|short| {
        let field = "envelope length";
        let fault = match short {
            Short::Truncated => Malformation::Truncated { field },
            Short::VarintOverflow => Malformation::VarintOverflow { field },
        };
        (*position, fault)
    })?;
    let start = *position + reader.position();
    let available = reader.remaining();
    let end = match usize::try_from(len) {
        Ok(len) if len <= available => start + len,
        _ => return Err((*position, Malformation::EnvelopeOverrun { len, available })),
    };
    // Move past the envelope first, so a skipped one is not read again.
    *position = end;
    let decoded = read_envelope(frame, start, end, table)?;
    if let Decoded::Skipped(skipped) = &decoded {
        tracing::debug!(
            sender = ?skipped.sender,
            recipient = %skipped.recipient,
            kind = %skipped.kind,
            reason = %skipped.reason,
            "envelope skipped",
        );
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use bytes::Bytes;

    use super::*;
    use crate::{EnvelopeKind, FrameEncoder, NetworkEnvelope, Recipient};

    fn frame(payload: u8) -> Bytes {
        let mut encoder = FrameEncoder::new(CodecConfig::default());
        let mut envelope = NetworkEnvelope::control(EnvelopeKind::Regular);
        envelope.recipient = Recipient::Group("g".into());
        envelope.payload = Bytes::from(vec![payload; 16]);
        encoder.push(&envelope).unwrap();
        encoder.finish()
    }

    fn decode_one(decoder: &mut FrameDecoder, input: &[u8]) -> Bytes {
        assert_eq!(decoder.feed(input), input.len());
        let Some(Decoded::Envelope(envelope)) = decoder.next().unwrap() else {
            panic!("no envelope");
        };
        assert_eq!(decoder.next(), Ok(None));
        envelope.payload
    }

    /// Once nothing refers to a frame any more, the next frame is assembled in its
    /// buffer; a payload still held keeps its frame intact and the next frame gets a
    /// buffer of its own.
    #[test]
    fn frames_reuse_the_buffer_only_when_it_is_free() {
        let mut decoder = FrameDecoder::new(CodecConfig::default());
        let first = decode_one(&mut decoder, &frame(1));
        let first_at = first.as_ptr();
        drop(first);
        let second = decode_one(&mut decoder, &frame(2));
        assert_eq!(second.as_ptr(), first_at, "the free buffer was not reused");
        assert_eq!(&second[..], &[2; 16]);

        // `second` is still held: the third frame must not overwrite it.
        let third = decode_one(&mut decoder, &frame(3));
        assert_ne!(third.as_ptr(), second.as_ptr());
        assert_eq!(&second[..], &[2; 16]);
        assert_eq!(&third[..], &[3; 16]);
        assert!(decoder.buffered_capacity() <= frame(3).len());
    }
}
