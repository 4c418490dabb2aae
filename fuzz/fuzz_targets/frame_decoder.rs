//! Feeds arbitrary bytes, cut into pieces the input chooses, to a `FrameDecoder`.
//!
//! Checks that the decoder never panics, never holds more than its frame limit, always
//! takes input once drained, keeps an error once it has one, and that every envelope it
//! yields encodes and decodes back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_codec::{
    Capabilities, CodecConfig, Decoded, FrameDecoder, FrameEncoder, MessageRegistry,
    NetworkEnvelope,
};
use plexus_core::RemoteMessage;
use serde::{Deserialize, Serialize};

/// Small, so that the limit paths are reached often.
const LIMIT: usize = 64 * 1024;

/// A registered message with a nested shape, for payloads to be decoded as.
#[derive(Serialize, Deserialize)]
struct Probe(Vec<(String, Option<u64>)>, u8);

impl RemoteMessage for Probe {
    const NAME: &'static str = "fuzz.Probe";
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the piece size, so one input explores one way of cutting.
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut % 64) + 1;
    let config = CodecConfig {
        max_frame_size: LIMIT,
        ..CodecConfig::default()
    };
    let mut registry = MessageRegistry::new();
    if registry.register::<Probe>().is_err() {
        return;
    }

    let mut decoder = FrameDecoder::new(config);
    let mut envelopes = Vec::new();
    let mut failed = None;
    'input: for mut chunk in input.chunks(piece) {
        while !chunk.is_empty() {
            let used = decoder.feed(chunk);
            assert!(
                decoder.buffered_capacity() <= LIMIT,
                "decoder over its limit"
            );
            chunk = &chunk[used..];
            let mut progressed = used > 0;
            loop {
                match decoder.next() {
                    Ok(Some(Decoded::Envelope(envelope))) => {
                        let _ = registry.decode(&envelope);
                        envelopes.push(envelope);
                    }
                    Ok(Some(Decoded::Skipped(_))) => {}
                    Ok(None) => break,
                    Err(error) => {
                        failed = Some(error);
                        break 'input;
                    }
                }
                progressed = true;
            }
            assert!(progressed, "a drained decoder took no input");
        }
    }
    if let Some(error) = failed {
        assert_eq!(decoder.next(), Err(error.clone()), "errors are sticky");
        assert_eq!(decoder.feed(b"x"), 0, "a failed decoder takes no input");
    } else {
        let _ = decoder.end_of_stream();
    }
    round_trip(&envelopes);
});

/// Encodes `envelopes` afresh and checks they decode to themselves.
fn round_trip(envelopes: &[NetworkEnvelope]) {
    // A larger limit: definitions of names the input had interned make envelopes grow.
    let config = CodecConfig {
        max_frame_size: 4 * LIMIT,
        ..CodecConfig::default()
    }
    .with_capabilities(Capabilities::supported());
    let mut encoder = FrameEncoder::new(config.clone());
    for envelope in envelopes {
        encoder.push(envelope).expect("a decoded envelope encodes");
    }
    let bytes = encoder.finish();
    let mut decoder = FrameDecoder::new(config);
    let mut input = &bytes[..];
    let mut decoded = Vec::new();
    loop {
        while let Some(item) = decoder.next().expect("re-encoded frames decode") {
            match item {
                Decoded::Envelope(envelope) => decoded.push(envelope),
                Decoded::Skipped(skipped) => {
                    panic!("a re-encoded envelope was skipped: {skipped:?}")
                }
            }
        }
        if input.is_empty() {
            break;
        }
        let used = decoder.feed(input);
        input = &input[used..];
    }
    assert_eq!(
        decoded, envelopes,
        "envelopes change through encode and decode"
    );
}
