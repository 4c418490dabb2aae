//! Encoding then decoding is the identity, whatever the envelopes, the frame limit, the
//! capabilities and the way the bytes are cut.

use plexus_codec::{Decoded, EncodeError, FrameDecoder, FrameEncoder, FrameState};
use proptest::prelude::*;

use crate::support::{chunk_sizes, config, decode_chunked, envelope};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Arbitrary envelopes come back equal, in order, through frames cut into arbitrary
    /// pieces; only envelopes larger than a small frame limit are refused, and they leave
    /// the stream intact.
    #[test]
    fn envelopes_round_trip_through_chunked_frames(
        envelopes in prop::collection::vec(envelope(), 0..40),
        max_frame_size in prop::sample::select(vec![512usize, 4096, 1 << 20]),
        interning in any::<bool>(),
        lz4 in any::<bool>(),
        sizes in chunk_sizes(),
    ) {
        let config = config(max_frame_size, interning, lz4);
        let mut encoder = FrameEncoder::new(config.clone());
        let mut stream = Vec::new();
        let mut accepted = Vec::new();
        for envelope in envelopes {
            match encoder.push(&envelope) {
                Ok(FrameState::FlushAdvised) => stream.extend_from_slice(&encoder.finish()),
                Ok(FrameState::Buffered) => {}
                Err(EncodeError::EnvelopeTooLarge { .. }) if max_frame_size == 512 => continue,
                Err(error) => prop_assert!(false, "refused {envelope:?}: {error}"),
            }
            accepted.push(envelope);
        }
        stream.extend_from_slice(&encoder.finish());

        let mut decoder = FrameDecoder::new(config);
        let decoded = decode_chunked(&mut decoder, &stream, &sizes, max_frame_size)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let expected: Vec<_> = accepted.into_iter().map(Decoded::Envelope).collect();
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(decoder.end_of_stream(), Ok(()));
    }
}
