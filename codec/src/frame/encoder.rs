//! Batches envelopes into frames in one reusable buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::CodecConfig;
use crate::encode::EnvelopeWriter;
use crate::envelope::NetworkEnvelope;
use crate::error::EncodeError;
use crate::frame::compress::Compressor;
use crate::intern::InternTable;
use crate::layout::{FRAME_HEADER, LEN_PREFIX};
use crate::version::Capabilities;
use crate::wire::{put_varint, varint_len};

/// Whether the caller should write out what the encoder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameState {
    /// Keep batching: fewer than [`CodecConfig::flush_threshold`] bytes are buffered.
    Buffered,
    /// The buffer reached the flush threshold: call [`FrameEncoder::finish`] and write the
    /// bytes out.
    FlushAdvised,
}

/// Appends envelopes to frames in a reusable buffer.
///
/// The connection writer pushes envelopes while its queue has them and calls
/// [`finish`](FrameEncoder::finish) when the queue is empty or [`push`](FrameEncoder::push)
/// advises a flush. The encoder owns the outbound [`InternTable`] of its connection, so
/// one encoder serves one connection for its whole life, and its output must be written in
/// order and in full.
///
/// ```
/// use plexus_codec::{CodecConfig, EnvelopeKind, FrameEncoder, FrameState, NetworkEnvelope};
///
/// let config = CodecConfig { flush_threshold: 64, ..CodecConfig::default() };
/// let mut encoder = FrameEncoder::new(config);
/// let mut state = FrameState::Buffered;
/// let mut nonce = 0;
/// while state == FrameState::Buffered {
///     nonce += 1;
///     state = encoder.push(&NetworkEnvelope::control(EnvelopeKind::Ping { nonce }))?;
/// }
/// let frame = encoder.finish();
/// assert!(frame.len() >= 64);
/// assert!(encoder.is_empty());
/// # Ok::<(), plexus_codec::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct FrameEncoder {
    config: CodecConfig,
    limit: usize,
    intern: bool,
    buf: BytesMut,
    /// The offset in `buf` of the open frame's length prefix.
    open: Option<usize>,
    table: InternTable,
    compressor: Compressor,
    /// Holds an envelope while the frame it overflowed is sealed.
    spill: Vec<u8>,
}

impl FrameEncoder {
    /// An encoder with an empty buffer and an empty interning table.
    pub fn new(config: CodecConfig) -> Self {
        FrameEncoder {
            limit: config.frame_limit(),
            intern: config.capabilities.contains(Capabilities::NAME_INTERNING),
            compressor: Compressor::new(&config),
            config,
            buf: BytesMut::new(),
            open: None,
            table: InternTable::new(),
            spill: Vec::new(),
        }
    }

    /// Appends `envelope` to the current frame, starting a new frame when it would
    /// overflow the current one.
    ///
    /// On error nothing was written and no interned entry was added.
    pub fn push(&mut self, envelope: &NetworkEnvelope) -> Result<FrameState, EncodeError> {
        // A frame holds a flags byte besides its envelopes, so a payload as large as the
        // limit can never fit; refuse it before copying it.
        if envelope.payload.len() >= self.limit {
            return Err(EncodeError::EnvelopeTooLarge {
                len: envelope.payload.len(),
                max: self.limit - 1,
            });
        }
        let frame_start = self.open_frame();
        let envelope_start = self.buf.len();
        let checkpoint = self.table.checkpoint();

        // Most envelopes are under 128 bytes, so reserve a one-byte length prefix and
        // move the envelope only when its length needs more.
        self.buf.put_u8(0);
        EnvelopeWriter {
            table: &mut self.table,
            intern: self.intern,
        }
        .write(&mut self.buf, envelope);
        let len = self.buf.len() - envelope_start - 1;
        let prefix = varint_len(len as u64);
        if prefix > 1 {
            let end = self.buf.len();
            self.buf.put_bytes(0, prefix - 1);
            self.buf
                .copy_within(envelope_start + 1..end, envelope_start + prefix);
        }
        let mut cursor = &mut self.buf[envelope_start..envelope_start + prefix];
        put_varint(&mut cursor, len as u64);

        let envelope_len = prefix + len;
        if 1 + envelope_len > self.limit {
            self.buf.truncate(envelope_start);
            self.table.rollback(checkpoint);
            if envelope_start == frame_start + FRAME_HEADER {
                // The frame was opened for this envelope alone; drop it again.
                self.buf.truncate(frame_start);
                self.open = None;
            }
            return Err(EncodeError::EnvelopeTooLarge {
                len: envelope_len,
                max: self.limit - 1,
            });
        }
        if self.buf.len() - frame_start - LEN_PREFIX > self.limit {
            self.move_to_next_frame(envelope_start);
        }
        Ok(if self.buf.len() >= self.config.flush_threshold {
            FrameState::FlushAdvised
        } else {
            FrameState::Buffered
        })
    }

    /// Seals the open frame and hands out everything buffered: zero or more whole frames,
    /// to be written in order. Empty when nothing was pushed since the last call.
    pub fn finish(&mut self) -> Bytes {
        self.seal();
        // `split` leaves the spare capacity behind, and `BytesMut` reclaims the whole
        // allocation once the returned bytes are dropped, so the buffer is reused.
        self.buf.split().freeze()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many bytes are buffered, frame headers included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The outbound interning table.
    pub fn interned(&self) -> &InternTable {
        &self.table
    }

    /// The configuration.
    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    /// Opens a frame if none is open; returns the offset of its length prefix.
    fn open_frame(&mut self) -> usize {
        match self.open {
            Some(start) => start,
            None => {
                let start = self.buf.len();
                // The length is filled in by `seal`; the flags start clear.
                self.buf.put_bytes(0, FRAME_HEADER);
                self.open = Some(start);
                start
            }
        }
    }

    /// Moves the envelope at `envelope_start`, which overflowed the open frame, into a
    /// frame of its own. Its interned definitions stay valid: the frames are sent in order.
    fn move_to_next_frame(&mut self, envelope_start: usize) {
        self.spill.clear();
        self.spill.extend_from_slice(&self.buf[envelope_start..]);
        self.buf.truncate(envelope_start);
        self.seal();
        self.open_frame();
        self.buf.extend_from_slice(&self.spill);
    }

    /// Completes the open frame: compresses its body if that pays, and writes its length.
    fn seal(&mut self) {
        let Some(start) = self.open.take() else {
            return;
        };
        let body_start = start + FRAME_HEADER;
        if self.buf.len() == body_start {
            self.buf.truncate(start);
            return;
        }
        if self.compressor.compress(&mut self.buf, body_start) {
            self.buf[start + LEN_PREFIX] |= crate::layout::FLAG_COMPRESSED;
        }
        // `push` keeps every frame within `limit`, which `frame_limit` caps at `u32::MAX`.
        let len = (self.buf.len() - start - LEN_PREFIX) as u32;
        self.buf[start..start + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
    }
}
