//! Writes one envelope (without its length prefix) in the wire form of [`crate::frame`].

use bytes::{BufMut, BytesMut};
use plexus_core::ActorId;

use crate::envelope::{EnvelopeKind, Flow, MessageName, NetworkEnvelope, Recipient};
use crate::intern::{InternTable, Slot};
use crate::layout::*;
use crate::wire::{put_bytes, put_varint};

/// Writes envelopes, interning through `table` when `intern` is set.
pub(crate) struct EnvelopeWriter<'a> {
    pub(crate) table: &'a mut InternTable,
    pub(crate) intern: bool,
}

impl EnvelopeWriter<'_> {
    /// Appends `envelope`'s header, name and payload to `buf`.
    pub(crate) fn write(&mut self, buf: &mut BytesMut, envelope: &NetworkEnvelope) {
        let mut tag =
            kind_tag(&envelope.kind) | (recipient_form(&envelope.recipient) << TAG_RECIPIENT_SHIFT);
        if envelope.sender.is_some() {
            tag |= TAG_HAS_SENDER;
        }
        if envelope.trace_id != 0 {
            tag |= TAG_HAS_TRACE;
        }
        buf.put_u8(tag);
        buf.put_u8(envelope.hop_limit);
        if envelope.trace_id != 0 {
            // Fixed width: trace ids are random, so a varint would average more than 8 bytes.
            buf.put_u64_le(envelope.trace_id);
        }
        if let Some(sender) = &envelope.sender {
            self.write_actor(buf, sender);
        }
        self.write_recipient(buf, &envelope.recipient);
        self.write_kind_fields(buf, &envelope.kind);
        self.write_name(buf, &envelope.name);
        // The payload runs to the end of the envelope, so it needs no length of its own.
        buf.put_slice(&envelope.payload);
    }

    fn write_kind_fields(&mut self, buf: &mut BytesMut, kind: &EnvelopeKind) {
        match kind {
            EnvelopeKind::Regular => {}
            EnvelopeKind::Request { id } | EnvelopeKind::RequestAll { id } => put_varint(buf, *id),
            EnvelopeKind::Response {
                id,
                outcome,
                is_last,
            } => {
                put_varint(buf, *id);
                let last = if *is_last { RESPONSE_IS_LAST } else { 0 };
                buf.put_u8(outcome_bits(*outcome) | last);
            }
            EnvelopeKind::Ping { nonce } | EnvelopeKind::Pong { nonce } => put_varint(buf, *nonce),
            EnvelopeKind::Credit {
                flow,
                messages,
                bytes,
            } => {
                self.write_flow(buf, flow);
                put_varint(buf, u64::from(*messages));
                put_varint(buf, *bytes);
            }
            EnvelopeKind::FlowClose { flow } => self.write_flow(buf, flow),
        }
    }

    fn write_flow(&mut self, buf: &mut BytesMut, flow: &Flow) {
        let mut bits = recipient_form(&flow.recipient) << FLOW_RECIPIENT_SHIFT;
        if flow.sender.is_some() {
            bits |= FLOW_HAS_SENDER;
        }
        buf.put_u8(bits);
        if let Some(sender) = &flow.sender {
            self.write_actor(buf, sender);
        }
        self.write_recipient(buf, &flow.recipient);
    }

    fn write_recipient(&mut self, buf: &mut BytesMut, recipient: &Recipient) {
        match recipient {
            Recipient::Actor(actor) => self.write_actor(buf, actor),
            Recipient::Group(group) => {
                let slot = self.string_slot(group, || group.clone());
                write_string(buf, slot, group);
            }
            Recipient::Transport => {}
        }
    }

    fn write_name(&mut self, buf: &mut BytesMut, name: &MessageName) {
        let slot = self.string_slot(name, || name.to_shared());
        write_string(buf, slot, name);
    }

    #[inline]
    fn string_slot(&mut self, text: &str, make: impl FnOnce() -> std::sync::Arc<str>) -> Slot {
        if self.intern {
            self.table.string_slot(text, make)
        } else {
            Slot::Literal
        }
    }

    #[inline]
    fn write_actor(&mut self, buf: &mut BytesMut, actor: &ActorId) {
        let slot = if self.intern {
            self.table.actor_slot(actor)
        } else {
            Slot::Literal
        };
        match slot {
            Slot::Known(id) => put_varint(buf, REF_FIRST_ID + u64::from(id)),
            Slot::Define | Slot::Literal => {
                let marker = if slot == Slot::Define {
                    REF_DEFINE
                } else {
                    REF_LITERAL
                };
                put_varint(buf, marker);
                put_bytes(buf, actor.proc().label().as_bytes());
                put_varint(buf, actor.proc().instance());
                put_bytes(buf, actor.name().as_bytes());
                put_varint(buf, actor.index());
            }
        }
    }
}

fn write_string(buf: &mut BytesMut, slot: Slot, text: &str) {
    match slot {
        Slot::Known(id) => put_varint(buf, REF_FIRST_ID + u64::from(id)),
        Slot::Define => {
            put_varint(buf, REF_DEFINE);
            put_bytes(buf, text.as_bytes());
        }
        Slot::Literal => {
            put_varint(buf, REF_LITERAL);
            put_bytes(buf, text.as_bytes());
        }
    }
}

fn recipient_form(recipient: &Recipient) -> u8 {
    match recipient {
        Recipient::Actor(_) => RECIPIENT_ACTOR,
        Recipient::Group(_) => RECIPIENT_GROUP,
        Recipient::Transport => RECIPIENT_TRANSPORT,
    }
}
