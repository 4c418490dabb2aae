//! Optional lz4 compression of frame bodies (feature `lz4`, capability `LZ4`).
//!
//! A compressed body is its decompressed length (`u32`, little-endian) followed by one lz4
//! block. The block format is used rather than lz4's frame format: the frame around it
//! already carries the length, and the block format has no checksum or header to pay for.

use std::fmt;

use bytes::BytesMut;

use crate::config::CodecConfig;
use crate::error::Malformation;

/// The most an lz4 block can expand: a run is coded at best as one byte per 255 output
/// bytes, plus the final literals.
#[cfg(feature = "lz4")]
const MAX_EXPANSION: u64 = 255;

/// Compresses frame bodies when the connection negotiated lz4 and it pays off.
pub(crate) struct Compressor {
    #[cfg(feature = "lz4")]
    lz4: Option<Lz4>,
}

#[cfg(feature = "lz4")]
struct Lz4 {
    threshold: usize,
    /// The hash table lz4 uses, kept between frames to save its allocation.
    table: lz4_flex::block::CompressTable,
    scratch: Vec<u8>,
}

impl Compressor {
    /// A compressor that is active when `config` has the `LZ4` capability (and the `lz4`
    /// feature is built).
    pub(crate) fn new(config: &CodecConfig) -> Self {
        #[cfg(feature = "lz4")]
        {
            let enabled = config
                .capabilities
                .contains(crate::version::Capabilities::LZ4);
            Compressor {
                lz4: enabled.then(|| Lz4 {
                    threshold: config.compress_threshold,
                    table: lz4_flex::block::CompressTable::default(),
                    scratch: Vec::new(),
                }),
            }
        }
        #[cfg(not(feature = "lz4"))]
        {
            let _ = config;
            Compressor {}
        }
    }

    /// Replaces `buf[body_start..]` by its compressed form if that is smaller; returns
    /// whether it did.
    pub(crate) fn compress(&mut self, buf: &mut BytesMut, body_start: usize) -> bool {
        #[cfg(feature = "lz4")]
        if let Some(lz4) = &mut self.lz4 {
            return lz4.compress(buf, body_start);
        }
        let _ = (buf, body_start);
        false
    }
}

#[cfg(feature = "lz4")]
impl Lz4 {
    fn compress(&mut self, buf: &mut BytesMut, body_start: usize) -> bool {
        use bytes::BufMut;

        let body = &buf[body_start..];
        if body.len() < self.threshold {
            return false;
        }
        self.scratch
            .resize(lz4_flex::block::get_maximum_output_size(body.len()), 0);
        let compressed = match lz4_flex::block::compress_into_with_table(
            body,
            &mut self.scratch,
            &mut self.table,
        ) {
            Ok(len) => len,
            Err(error) => {
                // The scratch is sized by lz4's own bound, so this is not expected; the
                // frame is still valid uncompressed.
                tracing::debug!(error = %error, "lz4 compression failed, frame sent plain");
                return false;
            }
        };
        let body_len = body.len();
        if compressed + 4 >= body_len {
            return false;
        }
        buf.truncate(body_start);
        // The body is within the frame limit, which fits a `u32`.
        buf.put_u32_le(body_len as u32);
        buf.extend_from_slice(&self.scratch[..compressed]);
        true
    }
}

/// Decompresses a compressed frame body, holding its declared size to `limit` before
/// allocating for it.
pub(crate) fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, Malformation> {
    #[cfg(feature = "lz4")]
    {
        let (declared, block) = body
            .split_first_chunk::<4>()
            .ok_or(Malformation::Truncated {
                field: "decompressed length",
            })?;
        let declared = u32::from_le_bytes(*declared);
        let possible = (block.len() as u64).saturating_mul(MAX_EXPANSION);
        if u64::from(declared) > limit as u64 || u64::from(declared) > possible {
            return Err(Malformation::DecompressedTooLarge {
                len: u64::from(declared),
                max: limit.min(usize::try_from(possible).unwrap_or(usize::MAX)),
            });
        }
        let declared = declared as usize;
        let mut output = vec![0; declared];
        match lz4_flex::block::decompress_into(block, &mut output) {
            Ok(len) if len == declared => Ok(output),
            Ok(len) => Err(Malformation::Decompress {
                declared,
                reason: format!("the block holds {len} bytes"),
            }),
            Err(error) => Err(Malformation::Decompress {
                declared,
                reason: error.to_string(),
            }),
        }
    }
    #[cfg(not(feature = "lz4"))]
    {
        let _ = (body, limit);
        Err(Malformation::CompressionUnsupported)
    }
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "lz4")]
        let active = self.lz4.is_some();
        #[cfg(not(feature = "lz4"))]
        let active = false;
        f.debug_struct("Compressor").field("lz4", &active).finish()
    }
}
