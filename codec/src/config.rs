//! The settings of one connection's frame encoder and decoder.

use serde::{Deserialize, Serialize};

use crate::version::Capabilities;

/// The default [`CodecConfig::max_frame_size`]: 8 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 8 * 1024 * 1024;

/// Settings for a [`FrameEncoder`](crate::FrameEncoder) and a
/// [`FrameDecoder`](crate::FrameDecoder).
///
/// ```
/// use plexus_codec::{Capabilities, CodecConfig};
///
/// let config = CodecConfig {
///     max_frame_size: 1 << 20,
///     ..CodecConfig::default()
/// }
/// .with_capabilities(Capabilities::NAME_INTERNING);
/// assert_eq!(config.flush_threshold, 64 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodecConfig {
    /// The largest frame, counted after its 4-byte length prefix, that the decoder accepts
    /// and the encoder writes; the decompressed body of a compressed frame is held to the
    /// same limit. Default 8 MiB ([`DEFAULT_MAX_FRAME_SIZE`]); values above `u32::MAX` act
    /// as `u32::MAX`, the most the prefix can express. Both ends of a connection must use
    /// the same value, or the larger side's frames are refused as too large.
    pub max_frame_size: usize,
    /// The encoder advises a flush once this many bytes are buffered. Default 64 KiB: large
    /// enough to batch many small envelopes into one write, small enough to keep the
    /// latency of a full frame low. A frame never exceeds `max_frame_size` whatever this is.
    pub flush_threshold: usize,
    /// The capabilities negotiated for the connection; the encoder uses only these.
    /// Default: [`Capabilities::NAME_INTERNING`], which every decoder of protocol version 1
    /// accepts; compression is on only once the handshake found both ends support it.
    pub capabilities: Capabilities,
    /// Frame bodies shorter than this are never compressed, since lz4 rarely pays off on
    /// them. Default 1 KiB. Only read with the `lz4` capability.
    pub compress_threshold: usize,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            flush_threshold: 64 * 1024,
            capabilities: Capabilities::NAME_INTERNING,
            compress_threshold: 1024,
        }
    }
}

impl CodecConfig {
    /// Sets the negotiated capabilities.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The frame limit as enforced: `max_frame_size`, at most `u32::MAX`, and at least 1 so
    /// that a frame can hold its flags byte.
    pub(crate) fn frame_limit(&self) -> usize {
        self.max_frame_size.clamp(1, u32::MAX as usize)
    }
}
