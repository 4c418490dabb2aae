//! Codec workloads: `codec_encode` and `codec_decode`, a small tell to a named actor through
//! plexus-codec frames with name interning, against plain postcard of the same fields.
//!
//! The plexus side does what a connection does per envelope: push the envelope into the
//! frame encoder and hand out frames at the flush threshold; on the way back, feed frames
//! to the decoder and decode each payload as its type. The baseline serializes a struct
//! holding the same sender, recipient and `u64` with postcard into a reused buffer, and
//! deserializes it again. Both encode values that already exist (a ring of distinct tells),
//! because building the envelope, and so serializing its payload, is the sender's work in
//! core; the `codec_encode` notes also give the rate with that work included. Neither side
//! carries a trace id, since the baseline has none.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use plexus_codec::{
    CodecConfig, Decoded, EnvelopeKind, FrameDecoder, FrameEncoder, FrameState, MessageRegistry,
    NetworkEnvelope, Recipient,
};
use plexus_core::{ActorId, ProcId, RemoteMessage};
use serde::{Deserialize, Serialize};

use crate::report::Report;

/// Envelopes per measured round.
const ENVELOPES: u64 = 1_000_000;
/// Distinct tells cycled through by the encoders.
const RING: usize = 1024;
/// Rounds per measurement; the best is reported, to keep scheduler noise out of the ratio.
const ROUNDS: usize = 5;
/// The baseline hands out its buffer at the same size the frame encoder flushes at.
const FLUSH_AT: usize = 64 * 1024;

/// The small message of both workloads.
#[derive(Serialize, Deserialize)]
struct Count(u64);

impl RemoteMessage for Count {
    const NAME: &'static str = "bench.Count";
}

/// The baseline's envelope: the same fields, in plain postcard.
#[derive(Serialize, Deserialize)]
struct PlainTell {
    sender: Option<ActorId>,
    recipient: ActorId,
    payload: u64,
}

/// Runs the codec workloads that `filter` selects.
pub(crate) fn run(filter: &dyn Fn(&str) -> bool) -> Vec<Report> {
    let mut reports = Vec::new();
    if filter("codec_encode") {
        reports.push(encode_workload());
    }
    if filter("codec_decode") {
        reports.push(decode_workload());
    }
    reports
}

fn sender() -> ActorId {
    ActorId::new(ProcId::new("bench-client", 0x5eed_cafe), "producer", 1)
}

fn recipient() -> ActorId {
    ActorId::new(ProcId::new("bench-server", 0xface_b00c), "counter", 7)
}

fn encode_workload() -> Report {
    let envelopes = envelope_ring();
    let tells = plain_ring();
    let [
        (plexus_rate, plexus_bytes),
        (built_rate, _),
        (baseline_rate, baseline_bytes),
    ] = best_interleaved([
        &mut || {
            let started = Instant::now();
            let bytes = encode_plexus(&envelopes, |frame| {
                black_box(frame);
            });
            (rate(started), bytes)
        },
        &mut || {
            let started = Instant::now();
            let bytes = encode_plexus_building(|frame| {
                black_box(frame);
            });
            (rate(started), bytes)
        },
        &mut || {
            let started = Instant::now();
            let bytes = encode_postcard(&tells, |chunk| {
                black_box(chunk);
            });
            (rate(started), bytes)
        },
    ]);
    Report::new(
        "codec_encode",
        "envelopes/s",
        plexus_rate,
        baseline_rate,
        plexus_rate / baseline_rate,
    )
    .target(0.8)
    .note(bytes_note(plexus_bytes, baseline_bytes))
    .note(format!(
        "building each envelope too (payload serialization and allocation): {built_rate:.0} envelopes/s, ratio {:.2}",
        built_rate / baseline_rate
    ))
}

fn decode_workload() -> Report {
    let mut frames = Vec::new();
    let plexus_bytes = encode_plexus(&envelope_ring(), |frame| frames.push(frame));
    let mut chunks = Vec::new();
    let baseline_bytes = encode_postcard(&plain_ring(), |chunk| chunks.push(chunk.to_vec()));
    let mut registry = MessageRegistry::new();
    registry.register::<Count>().expect("one type per name");

    let [(plexus_rate, _), (registry_rate, _), (baseline_rate, _)] = best_interleaved([
        &mut || {
            let started = Instant::now();
            let decoded = decode_plexus(&frames, None);
            assert_eq!(decoded, ENVELOPES, "every envelope decodes");
            (rate(started), 0)
        },
        &mut || {
            let started = Instant::now();
            let decoded = decode_plexus(&frames, Some(&registry));
            assert_eq!(decoded, ENVELOPES, "every envelope decodes");
            (rate(started), 0)
        },
        &mut || {
            let started = Instant::now();
            let decoded = decode_postcard(&chunks);
            assert_eq!(decoded, ENVELOPES, "every baseline tell decodes");
            (rate(started), 0)
        },
    ]);
    Report::new(
        "codec_decode",
        "envelopes/s",
        plexus_rate,
        baseline_rate,
        plexus_rate / baseline_rate,
    )
    .target(0.8)
    .note(bytes_note(plexus_bytes, baseline_bytes))
    .note(format!(
        "dispatching by name through the registry (a boxed message each): {registry_rate:.0} envelopes/s, ratio {:.2}",
        registry_rate / baseline_rate
    ))
}

/// Distinct tells from the sender to the recipient.
fn envelope_ring() -> Vec<NetworkEnvelope> {
    let (sender, recipient) = (sender(), Recipient::Actor(recipient()));
    (0..RING as u64)
        .map(|n| {
            NetworkEnvelope::message(
                Some(sender.clone()),
                recipient.clone(),
                EnvelopeKind::Regular,
                &Count(n << 20),
            )
            .expect("a u64 encodes")
        })
        .collect()
}

/// The baseline's tells, with the same fields as [`envelope_ring`]'s.
fn plain_ring() -> Vec<PlainTell> {
    let (sender, recipient) = (sender(), recipient());
    (0..RING as u64)
        .map(|n| PlainTell {
            sender: Some(sender.clone()),
            recipient: recipient.clone(),
            payload: n << 20,
        })
        .collect()
}

/// Encodes `ENVELOPES` tells from `ring` into frames handed to `out`; returns the bytes
/// written.
fn encode_plexus(ring: &[NetworkEnvelope], mut out: impl FnMut(Bytes)) -> u64 {
    let mut encoder = FrameEncoder::new(CodecConfig::default());
    let mut written = 0;
    for envelope in ring.iter().cycle().take(ENVELOPES as usize) {
        if encoder.push(envelope).expect("a small tell fits a frame") == FrameState::FlushAdvised {
            let frame = encoder.finish();
            written += frame.len() as u64;
            out(frame);
        }
    }
    let frame = encoder.finish();
    written += frame.len() as u64;
    out(frame);
    written
}

/// Like [`encode_plexus`], but builds each envelope from the message first, as the
/// sending side does.
fn encode_plexus_building(mut out: impl FnMut(Bytes)) -> u64 {
    let (sender, recipient) = (sender(), Recipient::Actor(recipient()));
    let mut encoder = FrameEncoder::new(CodecConfig::default());
    let mut written = 0;
    for n in 0..ENVELOPES {
        let envelope = NetworkEnvelope::message(
            Some(sender.clone()),
            recipient.clone(),
            EnvelopeKind::Regular,
            &Count(n << 20),
        )
        .expect("a u64 encodes");
        if encoder.push(&envelope).expect("a small tell fits a frame") == FrameState::FlushAdvised {
            let frame = encoder.finish();
            written += frame.len() as u64;
            out(frame);
        }
    }
    let frame = encoder.finish();
    written += frame.len() as u64;
    out(frame);
    written
}

/// Encodes `ENVELOPES` baseline tells from `ring` into buffers of about `FLUSH_AT` bytes
/// handed to `out`; returns the bytes written.
fn encode_postcard(ring: &[PlainTell], mut out: impl FnMut(&[u8])) -> u64 {
    let mut buffer = Vec::with_capacity(FLUSH_AT + 256);
    let mut written = 0;
    for tell in ring.iter().cycle().take(ENVELOPES as usize) {
        buffer = postcard::to_extend(tell, buffer).expect("a tell encodes");
        if buffer.len() >= FLUSH_AT {
            written += buffer.len() as u64;
            out(&buffer);
            buffer.clear();
        }
    }
    written += buffer.len() as u64;
    out(&buffer);
    written
}

/// Decodes every envelope of `frames` down to its `u64`, as a known type or, given a
/// registry, by name; returns how many it decoded.
fn decode_plexus(frames: &[Bytes], registry: Option<&MessageRegistry>) -> u64 {
    let mut decoder = FrameDecoder::new(CodecConfig::default());
    let mut decoded = 0;
    for frame in frames {
        let mut input = &frame[..];
        while !input.is_empty() {
            let used = decoder.feed(input);
            input = &input[used..];
            while let Some(item) = decoder.next().expect("frames are well formed") {
                let Decoded::Envelope(envelope) = item else {
                    panic!("no envelope is skipped");
                };
                let value = match registry {
                    None => envelope.decode_as::<Count>().expect("payloads decode").0,
                    Some(registry) => {
                        let message = registry.decode(&envelope).expect("payloads decode");
                        message.downcast_ref::<Count>().expect("a Count").0
                    }
                };
                black_box((&envelope.sender, &envelope.recipient, value));
                decoded += 1;
            }
        }
    }
    decoded
}

/// Decodes every baseline tell of `chunks`; returns how many it decoded.
fn decode_postcard(chunks: &[Vec<u8>]) -> u64 {
    let mut decoded = 0;
    for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (tell, after) = postcard::take_from_bytes::<PlainTell>(rest).expect("tells decode");
            black_box((&tell.sender, &tell.recipient, tell.payload));
            rest = after;
            decoded += 1;
        }
    }
    decoded
}

/// Runs each measurement `ROUNDS` times, interleaved so that all of them see the same
/// load on the machine; returns each one's best rate with the byte count of that round.
fn best_interleaved<const N: usize>(
    mut measurements: [&mut dyn FnMut() -> (f64, u64); N],
) -> [(f64, u64); N] {
    let mut best = [(0.0, 0); N];
    for _ in 0..ROUNDS {
        for (measure, best) in measurements.iter_mut().zip(&mut best) {
            let (rate, bytes) = measure();
            if rate > best.0 {
                *best = (rate, bytes);
            }
        }
    }
    best
}

fn rate(started: Instant) -> f64 {
    ENVELOPES as f64 / started.elapsed().as_secs_f64()
}

fn bytes_note(plexus: u64, baseline: u64) -> String {
    format!(
        "bytes/envelope: plexus {:.1} (frames included), postcard {:.1}",
        plexus as f64 / ENVELOPES as f64,
        baseline as f64 / ENVELOPES as f64
    )
}
