//! The numbers of the wire format: tags, flag bits and reference markers, shared by the
//! encoder and the decoder. The format they make up is described in [`crate::frame`].

use crate::envelope::{EnvelopeKind, Outcome};

/// The frame length prefix: a little-endian `u32`.
pub(crate) const LEN_PREFIX: usize = 4;
/// The length prefix and the flags byte.
pub(crate) const FRAME_HEADER: usize = LEN_PREFIX + 1;
/// Frame flag: the body is an lz4 block preceded by its decompressed length.
pub(crate) const FLAG_COMPRESSED: u8 = 1 << 0;
/// Every frame flag this version defines.
pub(crate) const KNOWN_FLAGS: u8 = FLAG_COMPRESSED;

/// Tag bits 0–3: the envelope kind.
pub(crate) const TAG_KIND_MASK: u8 = 0x0f;
/// Tag bit 4: a sender follows.
pub(crate) const TAG_HAS_SENDER: u8 = 1 << 4;
/// Tag bit 5: a trace id follows.
pub(crate) const TAG_HAS_TRACE: u8 = 1 << 5;
/// Tag bits 6–7: the recipient form.
pub(crate) const TAG_RECIPIENT_SHIFT: u32 = 6;

pub(crate) const KIND_REGULAR: u8 = 0;
pub(crate) const KIND_REQUEST: u8 = 1;
pub(crate) const KIND_REQUEST_ALL: u8 = 2;
pub(crate) const KIND_RESPONSE: u8 = 3;
pub(crate) const KIND_PING: u8 = 4;
pub(crate) const KIND_PONG: u8 = 5;
pub(crate) const KIND_CREDIT: u8 = 6;
pub(crate) const KIND_FLOW_CLOSE: u8 = 7;

/// Recipient forms, in tag bits 6–7 and flow bits 1–2.
pub(crate) const RECIPIENT_ACTOR: u8 = 0;
pub(crate) const RECIPIENT_GROUP: u8 = 1;
pub(crate) const RECIPIENT_TRANSPORT: u8 = 2;

/// Response byte: bits 0–1 the outcome, bit 2 `is_last`.
pub(crate) const RESPONSE_OUTCOME_MASK: u8 = 0x03;
pub(crate) const RESPONSE_IS_LAST: u8 = 1 << 2;

/// Flow byte: bit 0 a sender follows, bits 1–2 the recipient form.
pub(crate) const FLOW_HAS_SENDER: u8 = 1 << 0;
pub(crate) const FLOW_RECIPIENT_SHIFT: u32 = 1;
pub(crate) const FLOW_KNOWN_BITS: u8 = 0x07;

/// A reference (to a string or an actor id) is a varint: this value means the value follows
/// in full and is not interned.
pub(crate) const REF_LITERAL: u64 = 0;
/// The value follows in full and takes the next interned id.
pub(crate) const REF_DEFINE: u64 = 1;
/// Values from this one up are interned ids, offset by this amount.
pub(crate) const REF_FIRST_ID: u64 = 2;

/// The kind tag of `kind`.
pub(crate) fn kind_tag(kind: &EnvelopeKind) -> u8 {
    match kind {
        EnvelopeKind::Regular => KIND_REGULAR,
        EnvelopeKind::Request { .. } => KIND_REQUEST,
        EnvelopeKind::RequestAll { .. } => KIND_REQUEST_ALL,
        EnvelopeKind::Response { .. } => KIND_RESPONSE,
        EnvelopeKind::Ping { .. } => KIND_PING,
        EnvelopeKind::Pong { .. } => KIND_PONG,
        EnvelopeKind::Credit { .. } => KIND_CREDIT,
        EnvelopeKind::FlowClose { .. } => KIND_FLOW_CLOSE,
    }
}

/// The wire number of a response outcome.
pub(crate) fn outcome_bits(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Failed => 1,
        Outcome::Ignored => 2,
    }
}

/// The outcome with wire number `bits`, if defined.
pub(crate) fn outcome_from_bits(bits: u8) -> Option<Outcome> {
    match bits {
        0 => Some(Outcome::Ok),
        1 => Some(Outcome::Failed),
        2 => Some(Outcome::Ignored),
        _ => None,
    }
}
