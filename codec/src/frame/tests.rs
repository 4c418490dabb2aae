use bytes::{BufMut, Bytes, BytesMut};
use plexus_core::{ActorId, ProcId, RemoteMessage};
use serde::{Deserialize, Serialize};

use crate::envelope::{EnvelopeKind, Flow, NetworkEnvelope, Outcome, Recipient};
use crate::error::{CodecError, DecodeError, EncodeError, Malformation};
use crate::frame::{FrameDecoder, FrameEncoder, FrameState};
use crate::version::Capabilities;
use crate::{CodecConfig, Decoded};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Count(u64);
impl RemoteMessage for Count {
    const NAME: &'static str = "test.Count";
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Blob(Vec<u8>);
impl RemoteMessage for Blob {
    const NAME: &'static str = "test.Blob";
}

fn actor(proc: &str, name: &str) -> ActorId {
    ActorId::new(ProcId::new(proc, 0x1234_5678_9abc), name, 3)
}

fn tell(value: u64) -> NetworkEnvelope {
    NetworkEnvelope::message(
        Some(actor("client", "sender")),
        Recipient::Actor(actor("server", "counter")),
        EnvelopeKind::Regular,
        &Count(value),
    )
    .unwrap()
}

fn config() -> CodecConfig {
    CodecConfig::default()
}

/// Feeds `bytes` in one piece and collects everything the decoder yields.
fn decode_all(decoder: &mut FrameDecoder, bytes: &[u8]) -> Result<Vec<Decoded>, CodecError> {
    let mut out = Vec::new();
    let mut input = bytes;
    loop {
        while let Some(decoded) = decoder.next()? {
            out.push(decoded);
        }
        if input.is_empty() {
            return Ok(out);
        }
        let used = decoder.feed(input);
        assert!(used > 0, "a drained decoder must take input");
        input = &input[used..];
    }
}

fn envelopes(decoded: Vec<Decoded>) -> Vec<NetworkEnvelope> {
    decoded
        .into_iter()
        .map(|decoded| match decoded {
            Decoded::Envelope(envelope) => envelope,
            Decoded::Skipped(skipped) => panic!("unexpected skip: {skipped:?}"),
        })
        .collect()
}

/// Wraps an envelope body (without its length) into a frame of its own.
fn frame_of(envelope_bodies: &[&[u8]]) -> Bytes {
    let mut body = BytesMut::new();
    for envelope in envelope_bodies {
        crate::wire::put_varint(&mut body, envelope.len() as u64);
        body.put_slice(envelope);
    }
    let mut frame = BytesMut::new();
    frame.put_u32_le(body.len() as u32 + 1);
    frame.put_u8(0);
    frame.put_slice(&body);
    frame.freeze()
}

/// After the first envelope has interned the name and both actors, a tell of a `u64` with
/// a trace id costs at most 24 bytes on the wire, whatever the value.
#[test]
fn small_tell_is_at_most_24_bytes_after_interning() {
    let mut encoder = FrameEncoder::new(config());
    let first = tell(1).with_trace_id(0x0123_4567_89ab_cdef);
    encoder.push(&first).unwrap();
    let first_frame = encoder.finish();
    for (value, budget) in [(u64::MAX, 24), (42, 16)] {
        let second = tell(value).with_trace_id(0xfedc_ba98_7654_3210);
        encoder.push(&second).unwrap();
        let frame = encoder.finish();
        let envelope_bytes = frame.len() - crate::layout::FRAME_HEADER;
        assert!(
            envelope_bytes <= budget,
            "a tell of {value} took {envelope_bytes} bytes, budget {budget}"
        );
        let mut stream = first_frame.to_vec();
        stream.extend_from_slice(&frame);
        let mut fresh = FrameDecoder::new(config());
        let decoded = envelopes(decode_all(&mut fresh, &stream).unwrap());
        assert_eq!(decoded, [first.clone(), second]);
    }
    // The first envelope carried the definitions, so it is the larger one.
    assert!(first_frame.len() > 40, "{} bytes", first_frame.len());
}

/// Without the interning capability every envelope carries its names in full, and still
/// round-trips.
#[test]
fn without_interning_names_are_sent_in_full() {
    let plain = config().with_capabilities(Capabilities::empty());
    let mut encoder = FrameEncoder::new(plain.clone());
    encoder.push(&tell(1)).unwrap();
    let first = encoder.finish();
    encoder.push(&tell(2)).unwrap();
    let second = encoder.finish();
    assert_eq!(first.len(), second.len());
    assert_eq!(encoder.interned().strings(), 0);
    let mut decoder = FrameDecoder::new(plain);
    let mut stream = first.to_vec();
    stream.extend_from_slice(&second);
    assert_eq!(
        envelopes(decode_all(&mut decoder, &stream).unwrap()),
        [tell(1), tell(2)]
    );
}

/// Every kind, recipient form and flow shape round-trips through one frame.
#[test]
fn every_kind_round_trips() {
    let flow = Flow {
        sender: Some(actor("a", "s")),
        recipient: Recipient::Group("workers".into()),
    };
    let kinds = [
        EnvelopeKind::Regular,
        EnvelopeKind::Request { id: u64::MAX },
        EnvelopeKind::RequestAll { id: 0 },
        EnvelopeKind::Response {
            id: 9,
            outcome: Outcome::Ignored,
            is_last: true,
        },
        EnvelopeKind::Response {
            id: 9,
            outcome: Outcome::Failed,
            is_last: false,
        },
        EnvelopeKind::Ping { nonce: 1 },
        EnvelopeKind::Pong { nonce: u64::MAX },
        EnvelopeKind::Credit {
            flow: Box::new(flow),
            messages: u32::MAX,
            bytes: 1 << 40,
        },
        EnvelopeKind::FlowClose {
            flow: Box::new(Flow {
                sender: None,
                recipient: Recipient::Actor(actor("b", "r")),
            }),
        },
    ];
    let mut sent = Vec::new();
    let mut encoder = FrameEncoder::new(config());
    for (n, kind) in kinds.into_iter().enumerate() {
        let mut envelope = NetworkEnvelope::control(kind).with_trace_id(n as u64);
        envelope.hop_limit = n as u8;
        encoder.push(&envelope).unwrap();
        sent.push(envelope);
    }
    sent.push(NetworkEnvelope {
        recipient: Recipient::Group("workers".into()),
        ..tell(5)
    });
    encoder.push(&sent[sent.len() - 1]).unwrap();
    let mut decoder = FrameDecoder::new(config());
    assert_eq!(
        envelopes(decode_all(&mut decoder, &encoder.finish()).unwrap()),
        sent
    );
    decoder.end_of_stream().unwrap();
}

/// The encoder advises a flush at the threshold and never writes a frame over the limit:
/// an envelope that would overflow the open frame starts the next one.
#[test]
fn frames_stay_within_the_limit_and_flush_is_advised() {
    let small = CodecConfig {
        max_frame_size: 200,
        flush_threshold: 500,
        ..config()
    };
    let mut encoder = FrameEncoder::new(small.clone());
    let mut sent = Vec::new();
    let mut state = FrameState::Buffered;
    while state == FrameState::Buffered {
        let envelope = tell(sent.len() as u64);
        state = encoder.push(&envelope).unwrap();
        sent.push(envelope);
    }
    assert!(encoder.len() >= 500);
    let bytes = encoder.finish();
    assert!(encoder.is_empty());
    let mut offset = 0;
    let mut frames = 0;
    while offset < bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        assert!(len <= 200, "frame of {len} bytes");
        offset += 4 + len;
        frames += 1;
    }
    assert_eq!(offset, bytes.len());
    assert!(frames >= 3, "{frames} frames");
    let mut decoder = FrameDecoder::new(small);
    assert_eq!(envelopes(decode_all(&mut decoder, &bytes).unwrap()), sent);
}

/// An envelope that cannot fit any frame is refused and leaves no trace: no bytes, no
/// interned entry, and the next envelope defines the same names afresh.
#[test]
fn an_envelope_too_large_leaves_no_trace() {
    let small = CodecConfig {
        max_frame_size: 100,
        ..config()
    };
    let mut encoder = FrameEncoder::new(small.clone());
    let big = NetworkEnvelope::message(
        Some(actor("client", "sender")),
        Recipient::Actor(actor("server", "counter")),
        EnvelopeKind::Regular,
        &Blob(vec![7; 95]),
    )
    .unwrap();
    let err = encoder.push(&big).unwrap_err();
    assert!(
        matches!(err, EncodeError::EnvelopeTooLarge { max: 99, .. }),
        "{err}"
    );
    assert!(encoder.is_empty());
    assert_eq!(
        (encoder.interned().strings(), encoder.interned().actors()),
        (0, 0)
    );

    // Also after another envelope has opened the frame.
    encoder.push(&tell(1)).unwrap();
    let before = encoder.len();
    assert!(encoder.push(&big).is_err());
    assert_eq!(encoder.len(), before);
    assert_eq!(
        (encoder.interned().strings(), encoder.interned().actors()),
        (1, 2)
    );

    let huge = NetworkEnvelope {
        payload: Bytes::from(vec![0; 100]),
        ..tell(0)
    };
    assert!(matches!(
        encoder.push(&huge),
        Err(EncodeError::EnvelopeTooLarge { len: 100, max: 99 })
    ));
    encoder.push(&tell(2)).unwrap();
    let mut decoder = FrameDecoder::new(small);
    assert_eq!(
        envelopes(decode_all(&mut decoder, &encoder.finish()).unwrap()),
        [tell(1), tell(2)]
    );
}

/// A frame header over the limit is refused as soon as its length is read, with nothing
/// reserved for it, and the decoder stays failed.
#[test]
fn a_frame_too_large_is_refused_before_allocating() {
    let mut decoder = FrameDecoder::new(CodecConfig {
        max_frame_size: 1000,
        ..config()
    });
    let mut input = 1001u32.to_le_bytes().to_vec();
    input.extend_from_slice(&[0; 64]);
    assert_eq!(decoder.feed(&input[..3]), 3);
    assert_eq!(decoder.next(), Ok(None));
    assert_eq!(decoder.feed(&input[3..]), 1);
    assert_eq!(decoder.buffered_capacity(), 0);
    let expected = CodecError::FrameTooLarge {
        len: 1001,
        max: 1000,
    };
    assert_eq!(decoder.next(), Err(expected.clone()));
    assert_eq!(decoder.feed(&input[4..]), 0);
    assert_eq!(decoder.next(), Err(expected.clone()));
    assert_eq!(decoder.end_of_stream(), Err(expected));
}

/// Broken framing and broken headers are malformed, with the frame index and the fault.
#[test]
fn broken_frames_and_headers_are_malformed() {
    let fault = |bytes: &[u8]| -> Malformation {
        let mut decoder = FrameDecoder::new(config());
        match decode_all(&mut decoder, bytes) {
            Err(CodecError::Malformed { fault, .. }) => fault,
            other => panic!("expected a malformed frame, got {other:?}"),
        }
    };
    assert_eq!(fault(&[0, 0, 0, 0]), Malformation::MissingFlags);
    assert_eq!(
        fault(&[1, 0, 0, 0, 0x80]),
        Malformation::UnknownFlags { flags: 0x80 }
    );
    // An envelope claiming more bytes than its frame holds.
    assert_eq!(
        fault(&[3, 0, 0, 0, 0, 5, 0]),
        Malformation::EnvelopeOverrun {
            len: 5,
            available: 1
        }
    );
    // Kind 9 does not exist.
    assert_eq!(
        fault(&frame_of(&[&[9, 0, 0]])),
        Malformation::UnknownKind { kind: 9 }
    );
    // Recipient form 3 is reserved.
    assert!(matches!(
        fault(&frame_of(&[&[0xc0, 0, 0]])),
        Malformation::ReservedBits {
            field: "recipient form",
            ..
        }
    ));
    // A request without its id.
    assert_eq!(
        fault(&frame_of(&[&[0x81, 0]])),
        Malformation::Truncated {
            field: "request id"
        }
    );
    // A recipient naming an actor id that was never defined.
    assert_eq!(
        fault(&frame_of(&[&[0x00, 0, 9]])),
        Malformation::UnknownId {
            table: "actor",
            id: 7
        }
    );
    // A response with an undefined outcome.
    assert!(matches!(
        fault(&frame_of(&[&[0x83, 0, 1, 3]])),
        Malformation::ReservedBits {
            field: "response flags",
            ..
        }
    ));
    #[cfg(not(feature = "lz4"))]
    assert_eq!(
        fault(&[5, 0, 0, 0, 1, 0, 0, 0, 0]),
        Malformation::CompressionUnsupported
    );
}

/// The peer cannot make the decoder's intern tables grow past the protocol's limits, and a
/// header cannot lean on a broken definition.
#[test]
fn intern_limits_are_enforced_on_the_decoder() {
    let fault = |bytes: &[u8]| -> Malformation {
        let mut decoder = FrameDecoder::new(config());
        match decode_all(&mut decoder, bytes) {
            Err(CodecError::Malformed { fault, .. }) => fault,
            other => panic!("expected a malformed frame, got {other:?}"),
        }
    };
    // A recipient actor defined with a label of 200 bytes and a name of 100.
    let mut long_actor = vec![0x00, 0, 1, 200, 1];
    long_actor.extend_from_slice(&[b'a'; 200]);
    long_actor.extend_from_slice(&[0, 100]);
    long_actor.extend_from_slice(&[b'b'; 100]);
    long_actor.push(0);
    assert_eq!(
        fault(&frame_of(&[&long_actor])),
        Malformation::InternedTooLong {
            table: "actor",
            len: 300,
            max: crate::MAX_INTERNED_LEN
        }
    );
    // One name definition more than the string table holds.
    let define: &[u8] = &[0x80, 0, 1, 1, b'x'];
    let many = vec![define; crate::MAX_INTERNED_STRINGS + 1];
    assert_eq!(
        fault(&frame_of(&many)),
        Malformation::InternTableFull {
            table: "string",
            capacity: crate::MAX_INTERNED_STRINGS
        }
    );
    // A broken name definition, then a group recipient naming it.
    let broken: &[u8] = &[0x80, 0, 1, 1, 0xff];
    let group: &[u8] = &[0x40, 0, 2, 2];
    assert_eq!(
        fault(&frame_of(&[broken, group])),
        Malformation::BrokenId {
            table: "string",
            id: 0
        }
    );
}

/// The error of a malformed frame names the frame and the offset of the fault.
#[test]
fn malformed_errors_locate_the_fault() {
    let mut encoder = FrameEncoder::new(config());
    encoder.push(&tell(1)).unwrap();
    let mut stream = encoder.finish().to_vec();
    stream.extend_from_slice(&frame_of(&[&[0x83, 0, 1, 3]]));
    let mut decoder = FrameDecoder::new(config());
    let err = decode_all(&mut decoder, &stream).unwrap_err();
    let CodecError::Malformed { frame, offset, .. } = err.clone() else {
        panic!("{err}");
    };
    assert_eq!((frame, offset), (1, 5));
    assert!(
        err.to_string()
            .starts_with("malformed frame 1 at byte 5: reserved bits 0x03")
    );
}

/// An envelope whose header decodes but whose name does not is skipped with the header's
/// details, and the envelopes after it still decode.
#[test]
fn an_undecodable_name_skips_one_envelope() {
    let mut encoder = FrameEncoder::new(config());
    encoder.push(&tell(1)).unwrap();
    let first = encoder.finish();

    // A request to a group (a string literal) whose name refers to interned id 40, and
    // one whose literal name is not UTF-8; then a valid envelope using the interned ids.
    let unknown_id: &[u8] = &[0x41, 7, 0, 1, b'g', 5, 42, 0xaa, 0xbb];
    let bad_utf8: &[u8] = &[0x01, 7, 3, 9, 0, 2, 0xff, 0xfe];
    let mut stream = first.to_vec();
    stream.extend_from_slice(&frame_of(&[unknown_id, bad_utf8]));
    encoder.push(&tell(2)).unwrap();
    stream.extend_from_slice(&encoder.finish());

    let mut decoder = FrameDecoder::new(config());
    let decoded = decode_all(&mut decoder, &stream).unwrap();
    assert_eq!(decoded.len(), 4);
    assert_eq!(decoded[0], Decoded::Envelope(tell(1)));
    let Decoded::Skipped(skipped) = &decoded[1] else {
        panic!("{:?}", decoded[1]);
    };
    assert_eq!(skipped.recipient, Recipient::Group("g".into()));
    assert_eq!(skipped.kind, EnvelopeKind::Request { id: 5 });
    assert_eq!(skipped.request_id, Some(5));
    assert_eq!(skipped.reason, DecodeError::UnknownNameId { id: 40 });
    assert_eq!(skipped.payload_len, 2);
    let Decoded::Skipped(skipped) = &decoded[2] else {
        panic!("{:?}", decoded[2]);
    };
    assert_eq!(
        skipped.recipient,
        Recipient::Actor(actor("server", "counter"))
    );
    assert_eq!(skipped.sender, None);
    assert_eq!(skipped.reason, DecodeError::InvalidName);
    assert_eq!(decoded[3], Decoded::Envelope(tell(2)));
}

/// A name definition whose text is broken still takes its id: the envelope that carried
/// it and every later one naming that id are skipped, and the next definition gets the
/// id after it, as on the encoder's side.
#[test]
fn a_broken_definition_keeps_ids_in_step() {
    // Definition of string id 0 with invalid UTF-8, a use of id 0, then a good
    // definition (id 1) and a use of it.
    let broken: &[u8] = &[0x80, 0, 1, 1, 0xff];
    let uses_broken: &[u8] = &[0x80, 0, 2];
    let good: &[u8] = &[0x80, 0, 1, 2, b'o', b'k', 1];
    let uses_good: &[u8] = &[0x80, 0, 3, 2];
    let mut decoder = FrameDecoder::new(config());
    let decoded = decode_all(
        &mut decoder,
        &frame_of(&[broken, uses_broken, good, uses_good]),
    )
    .unwrap();
    let reasons: Vec<_> = decoded
        .iter()
        .map(|decoded| match decoded {
            Decoded::Skipped(skipped) => Err(skipped.reason.clone()),
            Decoded::Envelope(envelope) => {
                Ok((envelope.name.to_string(), envelope.payload.clone()))
            }
        })
        .collect();
    assert_eq!(
        reasons,
        [
            Err(DecodeError::InvalidName),
            Err(DecodeError::BrokenNameId { id: 0 }),
            Ok(("ok".to_string(), Bytes::from_static(&[1]))),
            Ok(("ok".to_string(), Bytes::from_static(&[2]))),
        ]
    );
    assert_eq!(decoder.interned().strings(), 2);
}

/// A stream that stops inside a frame is reported at end of stream; one that stops at a
/// frame boundary is not.
#[test]
fn end_of_stream_inside_a_frame_is_an_error() {
    let mut encoder = FrameEncoder::new(config());
    encoder.push(&tell(1)).unwrap();
    let bytes = encoder.finish();
    let mut decoder = FrameDecoder::new(config());
    decoder.end_of_stream().unwrap();
    decode_all(&mut decoder, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(
        decoder.end_of_stream(),
        Err(CodecError::TruncatedStream {
            buffered: bytes.len() - 1
        })
    );
    let rest = decode_all(&mut decoder, &bytes[bytes.len() - 1..]).unwrap();
    assert_eq!(envelopes(rest), [tell(1)]);
    decoder.end_of_stream().unwrap();
}

/// The decoder takes no input while a complete frame still has envelopes to read, so it
/// holds one frame at a time.
#[test]
fn the_decoder_holds_one_frame_at_a_time() {
    let mut encoder = FrameEncoder::new(config());
    encoder.push(&tell(1)).unwrap();
    encoder.push(&tell(2)).unwrap();
    let one = encoder.finish();
    encoder.push(&tell(3)).unwrap();
    let two = encoder.finish();
    let mut stream = one.to_vec();
    stream.extend_from_slice(&two);

    let mut decoder = FrameDecoder::new(config());
    assert_eq!(decoder.feed(&stream), one.len());
    assert_eq!(decoder.feed(&stream[one.len()..]), 0);
    assert!(matches!(decoder.next(), Ok(Some(Decoded::Envelope(_)))));
    assert_eq!(decoder.feed(&stream[one.len()..]), 0);
    assert!(decoder.buffered_capacity() <= one.len());
    assert!(matches!(decoder.next(), Ok(Some(Decoded::Envelope(_)))));
    // The frame is read out; the next one may come in.
    assert_eq!(decoder.feed(&stream[one.len()..]), two.len());
    assert_eq!(envelopes(decode_all(&mut decoder, &[]).unwrap()), [tell(3)]);
}

#[cfg(feature = "lz4")]
mod lz4 {
    use super::*;
    use crate::layout::{FLAG_COMPRESSED, LEN_PREFIX};

    fn compressing() -> CodecConfig {
        config().with_capabilities(Capabilities::NAME_INTERNING | Capabilities::LZ4)
    }

    /// A compressible frame is sent compressed, flagged as such, smaller, and decodes to
    /// the same envelopes.
    #[test]
    fn compressed_frames_round_trip() {
        let mut encoder = FrameEncoder::new(compressing());
        let sent: Vec<_> = (0..50)
            .map(|n| {
                NetworkEnvelope::message(
                    Some(actor("client", "sender")),
                    Recipient::Actor(actor("server", "counter")),
                    EnvelopeKind::Request { id: n },
                    &Blob(vec![n as u8; 200]),
                )
                .unwrap()
            })
            .collect();
        let mut raw_len = 0;
        for envelope in &sent {
            encoder.push(envelope).unwrap();
            raw_len += envelope.payload.len();
        }
        let bytes = encoder.finish();
        assert_eq!(bytes[LEN_PREFIX] & FLAG_COMPRESSED, FLAG_COMPRESSED);
        assert!(
            bytes.len() < raw_len / 4,
            "{} of {raw_len} bytes",
            bytes.len()
        );
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(envelopes(decode_all(&mut decoder, &bytes).unwrap()), sent);
    }

    /// Frames below the threshold, or that lz4 cannot shrink, are sent plain.
    #[test]
    fn small_or_incompressible_frames_stay_plain() {
        let mut encoder = FrameEncoder::new(compressing());
        encoder.push(&tell(1)).unwrap();
        let bytes = encoder.finish();
        assert_eq!(bytes[LEN_PREFIX], 0);

        let mut noise = Vec::with_capacity(4096);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.push(state as u8);
        }
        let envelope = NetworkEnvelope::message(
            None,
            Recipient::Transport,
            EnvelopeKind::Regular,
            &Blob(noise),
        )
        .unwrap();
        encoder.push(&envelope).unwrap();
        let bytes = encoder.finish();
        assert_eq!(bytes[LEN_PREFIX], 0);
        let mut decoder = FrameDecoder::new(config());
        assert_eq!(
            envelopes(decode_all(&mut decoder, &bytes).unwrap()),
            [envelope]
        );
    }

    /// A compressed frame claiming to expand past the frame limit, or past what its
    /// block could expand to, is refused before the output is allocated; a corrupt block
    /// is malformed.
    #[test]
    fn decompression_is_bounded_and_checked() {
        let compressed_frame = |declared: u32, block: &[u8]| {
            let mut frame = BytesMut::new();
            frame.put_u32_le(1 + 4 + block.len() as u32);
            frame.put_u8(FLAG_COMPRESSED);
            frame.put_u32_le(declared);
            frame.put_slice(block);
            frame
        };
        let fault = |bytes: &[u8]| {
            let mut decoder = FrameDecoder::new(CodecConfig {
                max_frame_size: 1 << 16,
                ..config()
            });
            match decode_all(&mut decoder, bytes) {
                Err(CodecError::Malformed { fault, .. }) => fault,
                other => panic!("expected a malformed frame, got {other:?}"),
            }
        };
        assert!(matches!(
            fault(&compressed_frame(1 << 17, &[0; 1024])),
            Malformation::DecompressedTooLarge {
                len: 131072,
                max: 65536
            }
        ));
        assert!(matches!(
            fault(&compressed_frame(60_000, &[0x1f, 1])),
            Malformation::DecompressedTooLarge {
                len: 60000,
                max: 510
            }
        ));
        assert!(matches!(
            fault(&compressed_frame(100, &[0xf0, 1, 2])),
            Malformation::Decompress { declared: 100, .. }
        ));
    }
}
