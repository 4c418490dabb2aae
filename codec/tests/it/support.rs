//! Strategies for arbitrary envelopes and helpers that drive a decoder over chunked input.

use bytes::Bytes;
use plexus_codec::{
    CodecConfig, CodecError, Decoded, EnvelopeKind, Flow, FrameDecoder, MessageName,
    NetworkEnvelope, Outcome, Recipient,
};
use plexus_core::{ActorId, ProcId};
use proptest::prelude::*;

/// An actor id: mostly one of a few, so interning is exercised, sometimes a fresh one,
/// sometimes one too long to intern.
pub(crate) fn actor() -> impl Strategy<Value = ActorId> {
    prop_oneof![
        6 => (0..4u64).prop_map(|n| ActorId::new(ProcId::new("pool", 7), "worker", n)),
        3 => ("[a-z.#]{1,12}", any::<u64>(), "[a-z/]{1,12}", any::<u64>())
            .prop_map(|(label, instance, name, index)| {
                ActorId::new(ProcId::new(label, instance), name, index)
            }),
        1 => ("[a-z]{200,300}", any::<u64>()).prop_map(|(name, index)| {
            ActorId::new(ProcId::new("long", 1), name, index)
        }),
    ]
}

/// A text: a few common ones, any unicode, or one too long to intern.
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => prop::sample::select(vec!["", "app.Tick", "db.Query", "group.a"]).prop_map(String::from),
        3 => any::<String>(),
        1 => "[a-z]{256,300}",
    ]
}

pub(crate) fn recipient() -> impl Strategy<Value = Recipient> {
    prop_oneof![
        6 => actor().prop_map(Recipient::Actor),
        2 => text().prop_map(|group| Recipient::Group(group.into())),
        1 => Just(Recipient::Transport),
    ]
}

fn flow() -> impl Strategy<Value = Box<Flow>> {
    (prop::option::of(actor()), recipient())
        .prop_map(|(sender, recipient)| Box::new(Flow { sender, recipient }))
}

pub(crate) fn kind() -> impl Strategy<Value = EnvelopeKind> {
    let outcome = prop_oneof![
        Just(Outcome::Ok),
        Just(Outcome::Failed),
        Just(Outcome::Ignored)
    ];
    prop_oneof![
        4 => Just(EnvelopeKind::Regular),
        1 => any::<u64>().prop_map(|id| EnvelopeKind::Request { id }),
        1 => any::<u64>().prop_map(|id| EnvelopeKind::RequestAll { id }),
        1 => (any::<u64>(), outcome, any::<bool>())
            .prop_map(|(id, outcome, is_last)| EnvelopeKind::Response { id, outcome, is_last }),
        1 => any::<u64>().prop_map(|nonce| EnvelopeKind::Ping { nonce }),
        1 => any::<u64>().prop_map(|nonce| EnvelopeKind::Pong { nonce }),
        1 => (flow(), any::<u32>(), any::<u64>())
            .prop_map(|(flow, messages, bytes)| EnvelopeKind::Credit { flow, messages, bytes }),
        1 => flow().prop_map(|flow| EnvelopeKind::FlowClose { flow }),
    ]
}

pub(crate) fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..24),
        1 => prop::collection::vec(any::<u8>(), 0..700),
        // Compressible, so lz4 frames are exercised.
        1 => (any::<u8>(), 0..1500usize).prop_map(|(byte, len)| vec![byte; len]),
    ]
    .prop_map(Bytes::from)
}

/// Any envelope the types can express.
pub(crate) fn envelope() -> impl Strategy<Value = NetworkEnvelope> {
    (
        prop::option::of(actor()),
        recipient(),
        prop_oneof![Just(0u64), any::<u64>()],
        any::<u8>(),
        kind(),
        text(),
        payload(),
    )
        .prop_map(
            |(sender, recipient, trace_id, hop_limit, kind, name, payload)| NetworkEnvelope {
                sender,
                recipient,
                trace_id,
                hop_limit,
                kind,
                name: MessageName::from(name),
                payload,
            },
        )
}

/// Sizes to cut input into, cycled: from single bytes to a few hundred.
pub(crate) fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..8usize, 1..300usize], 1..16)
}

/// Feeds `input` to `decoder` cut into `sizes` (cycled), draining it after each piece, and
/// checks after every call that it holds no more than `bound` bytes of frames.
pub(crate) fn decode_chunked(
    decoder: &mut FrameDecoder,
    input: &[u8],
    sizes: &[usize],
    bound: usize,
) -> Result<Vec<Decoded>, CodecError> {
    let mut out = Vec::new();
    let mut sizes = sizes.iter().cycle();
    let mut rest = input;
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        let mut chunk = &rest[..size];
        rest = &rest[size..];
        while !chunk.is_empty() {
            let used = decoder.feed(chunk);
            assert!(
                decoder.buffered_capacity() <= bound,
                "the decoder holds {} bytes, over {bound}",
                decoder.buffered_capacity()
            );
            chunk = &chunk[used..];
            let mut progressed = used > 0;
            while let Some(decoded) = decoder.next()? {
                out.push(decoded);
                progressed = true;
            }
            assert!(progressed, "a drained decoder took no input");
        }
    }
    Ok(out)
}

/// A configuration with the given frame limit and capabilities.
pub(crate) fn config(max_frame_size: usize, interning: bool, lz4: bool) -> CodecConfig {
    let mut capabilities = plexus_codec::Capabilities::empty();
    if interning {
        capabilities = capabilities | plexus_codec::Capabilities::NAME_INTERNING;
    }
    if lz4 && cfg!(feature = "lz4") {
        capabilities = capabilities | plexus_codec::Capabilities::LZ4;
    }
    CodecConfig {
        max_frame_size,
        flush_threshold: 2048,
        capabilities,
        compress_threshold: 256,
    }
}
