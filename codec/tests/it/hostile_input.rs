//! No input makes the decoder panic or hold more than one frame's worth of memory.

use plexus_codec::{
    CodecError, EnvelopeKind, FrameDecoder, FrameEncoder, MessageRegistry, NetworkEnvelope,
};
use proptest::prelude::*;

use crate::support::{chunk_sizes, config, decode_chunked, envelope};

const LIMIT: usize = 1024;

/// A registered message with a nested shape, for arbitrary payloads to be decoded as.
#[derive(serde::Serialize, serde::Deserialize)]
struct Tick(Vec<(String, Option<u64>)>);

impl plexus_core::RemoteMessage for Tick {
    const NAME: &'static str = "app.Tick";
}

/// Feeds `input` and checks the decoder ends in a consistent state: an error is sticky,
/// and success leaves it able to judge the end of the stream.
fn feed_all(input: &[u8], sizes: &[usize]) -> Result<(), TestCaseError> {
    let mut decoder = FrameDecoder::new(config(LIMIT, true, true));
    let mut registry = MessageRegistry::new();
    registry
        .register::<Tick>()
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    match decode_chunked(&mut decoder, input, sizes, LIMIT) {
        Ok(decoded) => {
            for item in decoded {
                if let plexus_codec::Decoded::Envelope(envelope) = item {
                    // Whatever the payload, decoding it answers rather than panics.
                    let _ = registry.decode(&envelope);
                }
            }
            let _ = decoder.end_of_stream();
        }
        Err(error) => {
            prop_assert_eq!(decoder.next(), Err(error.clone()));
            prop_assert_eq!(decoder.feed(b"more"), 0);
            prop_assert_eq!(decoder.end_of_stream(), Err(error));
        }
    }
    Ok(())
}

/// A frame header, declared length and flags chosen, around an arbitrary body, so that
/// the envelope parser sees deep inputs rather than failing at the first byte.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..600),
        prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
        prop::option::of(0..2048u32),
    )
        .prop_map(|(body, flags, declared)| {
            let len = declared.unwrap_or(body.len() as u32 + 1);
            let mut frame = len.to_le_bytes().to_vec();
            frame.push(flags);
            frame.extend_from_slice(&body);
            frame
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic the decoder and never make it hold more than the
    /// frame limit.
    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in chunk_sizes(),
    ) {
        feed_all(&input, &sizes)?;
    }

    /// Arbitrary frame bodies behind a plausible header never panic the decoder.
    #[test]
    fn arbitrary_frame_bodies_never_panic(
        frames in prop::collection::vec(framed_garbage(), 1..4),
        sizes in chunk_sizes(),
    ) {
        feed_all(&frames.concat(), &sizes)?;
    }

    /// A valid stream with bytes overwritten anywhere never panics the decoder.
    #[test]
    fn corrupted_streams_never_panic(
        envelopes in prop::collection::vec(envelope(), 1..12),
        corruptions in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        sizes in chunk_sizes(),
    ) {
        let mut encoder = FrameEncoder::new(config(LIMIT, true, true));
        for envelope in &envelopes {
            // Envelopes too large for the limit are simply left out.
            let _ = encoder.push(envelope);
        }
        encoder
            .push(&NetworkEnvelope::control(EnvelopeKind::Ping { nonce: 1 }))
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let mut stream = encoder.finish().to_vec();
        for (index, byte) in corruptions {
            let at = index.index(stream.len());
            stream[at] = byte;
        }
        feed_all(&stream, &sizes)?;
    }
}

/// A frame header declaring more than the limit is refused after four bytes, whatever
/// follows.
#[test]
fn an_oversized_header_is_refused_at_once() {
    let mut decoder = FrameDecoder::new(config(LIMIT, true, true));
    let mut input = (LIMIT as u32 + 1).to_le_bytes().to_vec();
    input.resize(64 * 1024, 0xab);
    assert_eq!(decoder.feed(&input), 4);
    assert_eq!(decoder.buffered_capacity(), 0);
    assert!(matches!(
        decoder.next(),
        Err(CodecError::FrameTooLarge { len, max: LIMIT }) if len == LIMIT as u64 + 1
    ));
}
