//! One envelope whose body does not decode is skipped with its header's details, and the
//! envelopes around it, in the same frame, still decode.

use bytes::{BufMut, Bytes, BytesMut};
use plexus_codec::{
    CodecConfig, DecodeError, Decoded, EnvelopeKind, FrameDecoder, FrameEncoder, MessageRegistry,
    NetworkEnvelope, Recipient, Skipped,
};
use plexus_core::{ActorId, ProcId, RemoteMessage};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::support::{chunk_sizes, config, decode_chunked, envelope};

fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn put_text(buf: &mut BytesMut, text: &[u8]) {
    put_varint(buf, text.len() as u64);
    buf.put_slice(text);
}

/// How the injected envelope's body is broken.
#[derive(Clone, Debug)]
enum Breakage {
    /// The name refers to an interned id that was never defined.
    UnknownNameId(u64),
    /// The name is a literal that is not UTF-8.
    InvalidName,
    /// The name is a literal longer than the rest of the envelope.
    NameOverrun,
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        (10_000..u64::MAX / 2).prop_map(Breakage::UnknownNameId),
        Just(Breakage::InvalidName),
        Just(Breakage::NameOverrun),
    ]
}

/// Writes a request from `sender` to the transport, with request id `id`, whose body is
/// broken as `breakage` says, followed by `payload`. Uses only literals, so it defines no
/// interned entry and leaves the encoder's numbering intact.
fn broken_request(sender: &ActorId, id: u64, breakage: &Breakage, payload: &[u8]) -> Bytes {
    let mut envelope = BytesMut::new();
    // Kind 1 (request), bit 4 (sender), recipient form 2 (transport) in bits 6-7.
    envelope.put_u8(0x01 | 0x10 | 0x80);
    envelope.put_u8(9); // hop limit
    put_varint(&mut envelope, 0); // a literal actor id
    put_text(&mut envelope, sender.proc().label().as_bytes());
    put_varint(&mut envelope, sender.proc().instance());
    put_text(&mut envelope, sender.name().as_bytes());
    put_varint(&mut envelope, sender.index());
    put_varint(&mut envelope, id);
    match breakage {
        Breakage::UnknownNameId(id) => put_varint(&mut envelope, id + 2),
        Breakage::InvalidName => {
            put_varint(&mut envelope, 0);
            put_text(&mut envelope, &[b'a', 0xff, 0xfe]);
        }
        Breakage::NameOverrun => {
            put_varint(&mut envelope, 0);
            put_varint(&mut envelope, payload.len() as u64 + 1);
        }
    }
    envelope.put_slice(payload);
    envelope.freeze()
}

/// The body of a single uncompressed frame.
fn body(frame: &[u8]) -> &[u8] {
    assert_eq!(frame[4], 0, "the frame is not compressed");
    assert_eq!(
        u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize,
        frame.len() - 4,
        "one frame"
    );
    &frame[5..]
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pair(u8, u8);

impl RemoteMessage for Pair {
    const NAME: &'static str = "test.Pair";
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// In a frame holding envelopes, a broken one, then more envelopes, the broken one is
    /// skipped with its sender, kind and request id, and every other envelope decodes.
    #[test]
    fn a_broken_body_mid_frame_skips_only_that_envelope(
        before in prop::collection::vec(envelope(), 0..10),
        after in prop::collection::vec(envelope(), 1..10),
        breakage in breakage(),
        request_id in any::<u64>(),
        payload in prop::collection::vec(any::<u8>(), 0..40),
        sizes in chunk_sizes(),
    ) {
        // One frame per batch: no flush before `finish`, no compression.
        let config = CodecConfig { flush_threshold: usize::MAX, ..config(1 << 20, true, false) };
        let mut encoder = FrameEncoder::new(config.clone());
        for envelope in &before {
            encoder.push(envelope).map_err(|error| TestCaseError::fail(error.to_string()))?;
        }
        let first = encoder.finish();
        for envelope in &after {
            encoder.push(envelope).map_err(|error| TestCaseError::fail(error.to_string()))?;
        }
        let second = encoder.finish();

        let sender = ActorId::new(ProcId::new("asker", 5), "client", 1);
        let broken = broken_request(&sender, request_id, &breakage, &payload);
        let mut joined = BytesMut::new();
        if !first.is_empty() {
            joined.put_slice(body(&first));
        }
        put_varint(&mut joined, broken.len() as u64);
        joined.put_slice(&broken);
        joined.put_slice(body(&second));
        let mut stream = BytesMut::new();
        stream.put_u32_le(joined.len() as u32 + 1);
        stream.put_u8(0);
        stream.put_slice(&joined);

        let mut decoder = FrameDecoder::new(config);
        let decoded = decode_chunked(&mut decoder, &stream, &sizes, 1 << 20)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(decoded.len(), before.len() + 1 + after.len());
        let (head, rest) = decoded.split_at(before.len());
        let (skipped, tail) = rest.split_at(1);
        let as_envelopes = |items: &[Decoded]| -> Vec<Option<NetworkEnvelope>> {
            items
                .iter()
                .map(|item| match item {
                    Decoded::Envelope(envelope) => Some(envelope.clone()),
                    Decoded::Skipped(_) => None,
                })
                .collect()
        };
        prop_assert_eq!(as_envelopes(head), before.into_iter().map(Some).collect::<Vec<_>>());
        prop_assert_eq!(as_envelopes(tail), after.into_iter().map(Some).collect::<Vec<_>>());

        let Decoded::Skipped(skipped) = &skipped[0] else {
            return Err(TestCaseError::fail(format!("not skipped: {:?}", skipped[0])));
        };
        prop_assert_eq!(&skipped.sender, &Some(sender));
        prop_assert_eq!(&skipped.recipient, &Recipient::Transport);
        prop_assert_eq!(&skipped.kind, &EnvelopeKind::Request { id: request_id });
        prop_assert_eq!(skipped.request_id, Some(request_id));
        let reason_fits = match (&breakage, &skipped.reason) {
            (Breakage::UnknownNameId(id), DecodeError::UnknownNameId { id: found }) => id == found,
            (Breakage::InvalidName, DecodeError::InvalidName) => skipped.payload_len == payload.len(),
            (Breakage::NameOverrun, DecodeError::NameOverrun { .. }) => true,
            _ => false,
        };
        prop_assert!(reason_fits, "{:?} gave {:?}", breakage, skipped.reason);
    }

    /// An envelope whose header and name decode but whose payload has the wrong shape is
    /// skipped by the registry step, and the envelopes after it are unaffected.
    #[test]
    fn a_payload_of_the_wrong_shape_is_skipped_by_the_registry(
        garbage in prop::collection::vec(any::<u8>(), 0..6)
            .prop_filter("not a Pair", |bytes| bytes.len() != 2),
        id in any::<u64>(),
    ) {
        let mut registry = MessageRegistry::new();
        registry.register::<Pair>().map_err(|error| TestCaseError::fail(error.to_string()))?;
        let to = Recipient::Actor(ActorId::new(ProcId::new("p", 1), "pairs", 0));
        let good = NetworkEnvelope::message(None, to.clone(), EnvelopeKind::Regular, &Pair(1, 2))
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let bad = NetworkEnvelope {
            kind: EnvelopeKind::Request { id },
            payload: Bytes::from(garbage),
            ..good.clone()
        };
        let mut encoder = FrameEncoder::new(CodecConfig::default());
        for envelope in [&good, &bad, &good] {
            encoder.push(envelope).map_err(|error| TestCaseError::fail(error.to_string()))?;
        }
        let mut decoder = FrameDecoder::new(CodecConfig::default());
        let decoded = decode_chunked(&mut decoder, &encoder.finish(), &[7], 1 << 23)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let outcomes: Vec<_> = decoded
            .into_iter()
            .map(|item| match item {
                Decoded::Envelope(envelope) => match registry.decode(&envelope) {
                    Ok(message) => Ok(message.downcast_ref::<Pair>().map(|pair| (pair.0, pair.1))),
                    Err(reason) => Err(Box::new(Skipped::new(envelope, reason))),
                },
                Decoded::Skipped(skipped) => Err(Box::new(skipped)),
            })
            .collect();
        prop_assert_eq!(outcomes.len(), 3);
        prop_assert_eq!(&outcomes[0], &Ok(Some((1, 2))));
        prop_assert_eq!(&outcomes[2], &Ok(Some((1, 2))));
        let Err(skipped) = &outcomes[1] else {
            return Err(TestCaseError::fail("the wrong shape decoded"));
        };
        prop_assert_eq!(skipped.request_id, Some(id));
        let shape_error = matches!(
            skipped.reason,
            DecodeError::Payload { name: "test.Pair", .. }
                | DecodeError::TrailingBytes { name: "test.Pair", .. }
        );
        prop_assert!(shape_error, "{:?}", skipped.reason);
    }
}
