//! Reads one envelope from its wire form, splitting failures into the fatal (a broken
//! header) and the skippable (a broken body).
//!
//! The header — tag, hop limit, trace id, sender, recipient and kind fields — must decode,
//! or the frame is malformed: without it the transport could not release credit or answer
//! a request. The body — the message name — may fail; the envelope is then
//! [`Skipped`] with the header's details, and decoding goes on at the next envelope, whose
//! start the envelope's length prefix gives.

use std::sync::Arc;

use bytes::Bytes;
use plexus_core::{ActorId, ProcId};

use crate::envelope::{EnvelopeKind, Flow, MessageName, NetworkEnvelope, Recipient};
use crate::error::{DecodeError, Malformation};
use crate::intern::{InternTable, MAX_INTERNED_LEN};
use crate::layout::*;
use crate::wire::{Reader, Short};

/// What the frame decoder yields for each envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An envelope whose header and name decoded. Its payload has not been decoded yet:
    /// that is [`MessageRegistry::decode`](crate::MessageRegistry::decode)'s job.
    Envelope(NetworkEnvelope),
    /// An envelope whose header decoded but whose body did not.
    Skipped(Skipped),
}

/// The details of an envelope that could not be delivered because it did not decode,
/// enough for the transport to release its credit and, for a request, answer `Decode`.
///
/// The frame decoder makes one when an envelope's name does not decode;
/// [`Skipped::new`] makes one when its payload does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The sending actor.
    pub sender: Option<ActorId>,
    /// The intended recipient.
    pub recipient: Recipient,
    /// The envelope's trace id.
    pub trace_id: u64,
    /// The envelope's kind.
    pub kind: EnvelopeKind,
    /// The request id, when the kind has one.
    pub request_id: Option<u64>,
    /// The payload's length, the unit of byte credit. Exact whenever the name field could
    /// be parsed; otherwise the bytes left in the envelope.
    pub payload_len: usize,
    /// Why the envelope was skipped.
    pub reason: DecodeError,
}

impl Skipped {
    /// The details of `envelope`, whose payload did not decode for `reason`.
    ///
    /// ```
    /// use plexus_codec::{DecodeError, EnvelopeKind, MessageRegistry, NetworkEnvelope, Recipient, Skipped};
    /// use plexus_core::{ActorId, ProcId, RemoteMessage};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Query(String);
    /// impl RemoteMessage for Query {
    ///     const NAME: &'static str = "db.Query";
    /// }
    ///
    /// let db = Recipient::Actor(ActorId::new(ProcId::new("db", 1), "reader", 0));
    /// let ask = NetworkEnvelope::message(None, db, EnvelopeKind::Request { id: 4 }, &Query("x".into()))?;
    /// // This side never registered `db.Query`.
    /// let reason = MessageRegistry::new().decode(&ask).unwrap_err();
    /// let skipped = Skipped::new(ask, reason);
    /// assert_eq!(skipped.request_id, Some(4));
    /// assert!(matches!(skipped.reason, DecodeError::UnknownName { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(envelope: NetworkEnvelope, reason: DecodeError) -> Self {
        Skipped {
            request_id: envelope.kind.request_id(),
            sender: envelope.sender,
            recipient: envelope.recipient,
            trace_id: envelope.trace_id,
            kind: envelope.kind,
            payload_len: envelope.payload.len(),
            reason,
        }
    }
}

/// The header fields of an envelope.
struct Header {
    sender: Option<ActorId>,
    recipient: Recipient,
    trace_id: u64,
    hop_limit: u8,
    kind: EnvelopeKind,
}

/// Reads the envelope at `frame[start..end]`. A malformed header is returned with its
/// offset in the frame.
pub(crate) fn read_envelope(
    frame: &Bytes,
    start: usize,
    end: usize,
    table: &mut InternTable,
) -> Result<Decoded, (usize, Malformation)> {
    let mut reader = Reader::new(&frame[start..end]);
    let header = match read_header(&mut reader, table) {
        Ok(header) => header,
        Err(fault) => return Err((start + reader.position(), fault)),
    };
    match read_name(&mut reader, table) {
        Ok(Ok(name)) => Ok(Decoded::Envelope(NetworkEnvelope {
            sender: header.sender,
            recipient: header.recipient,
            trace_id: header.trace_id,
            hop_limit: header.hop_limit,
            kind: header.kind,
            name,
            payload: frame.slice(start + reader.position()..end),
        })),
        Ok(Err(reason)) => Ok(Decoded::Skipped(Skipped {
            sender: header.sender,
            recipient: header.recipient,
            trace_id: header.trace_id,
            request_id: header.kind.request_id(),
            kind: header.kind,
            payload_len: reader.remaining(),
            reason,
        })),
        Err(fault) => Err((start + reader.position(), fault)),
    }
}

fn read_header(r: &mut Reader<'_>, table: &mut InternTable) -> Result<Header, Malformation> {
    let tag = r.u8().map_err(at("tag"))?;
    let hop_limit = r.u8().map_err(at("hop limit"))?;
    let kind_tag = tag & TAG_KIND_MASK;
    if kind_tag > KIND_FLOW_CLOSE {
        return Err(Malformation::UnknownKind { kind: kind_tag });
    }
    let trace_id = if tag & TAG_HAS_TRACE != 0 {
        r.u64_le().map_err(at("trace id"))?
    } else {
        0
    };
    let sender = if tag & TAG_HAS_SENDER != 0 {
        Some(read_actor(r, table, "sender")?)
    } else {
        None
    };
    let recipient = read_recipient(r, table, tag >> TAG_RECIPIENT_SHIFT)?;
    let kind = read_kind(r, table, kind_tag)?;
    Ok(Header {
        sender,
        recipient,
        trace_id,
        hop_limit,
        kind,
    })
}

fn read_kind(
    r: &mut Reader<'_>,
    table: &mut InternTable,
    kind_tag: u8,
) -> Result<EnvelopeKind, Malformation> {
    Ok(match kind_tag {
        KIND_REGULAR => EnvelopeKind::Regular,
        KIND_REQUEST => EnvelopeKind::Request {
            id: r.varint().map_err(at("request id"))?,
        },
        KIND_REQUEST_ALL => EnvelopeKind::RequestAll {
            id: r.varint().map_err(at("request id"))?,
        },
        KIND_RESPONSE => {
            let id = r.varint().map_err(at("request id"))?;
            let bits = r.u8().map_err(at("response flags"))?;
            let reserved = bits & !(RESPONSE_OUTCOME_MASK | RESPONSE_IS_LAST);
            let outcome = outcome_from_bits(bits & RESPONSE_OUTCOME_MASK);
            match outcome {
                Some(outcome) if reserved == 0 => EnvelopeKind::Response {
                    id,
                    outcome,
                    is_last: bits & RESPONSE_IS_LAST != 0,
                },
                _ => {
                    return Err(Malformation::ReservedBits {
                        field: "response flags",
                        bits,
                    });
                }
            }
        }
        KIND_PING => EnvelopeKind::Ping {
            nonce: r.varint().map_err(at("nonce"))?,
        },
        KIND_PONG => EnvelopeKind::Pong {
            nonce: r.varint().map_err(at("nonce"))?,
        },
        KIND_CREDIT => EnvelopeKind::Credit {
            flow: Box::new(read_flow(r, table)?),
            messages: r.varint_u32().map_err(at("credit messages"))?,
            bytes: r.varint().map_err(at("credit bytes"))?,
        },
        KIND_FLOW_CLOSE => EnvelopeKind::FlowClose {
            flow: Box::new(read_flow(r, table)?),
        },
        other => return Err(Malformation::UnknownKind { kind: other }),
    })
}

fn read_flow(r: &mut Reader<'_>, table: &mut InternTable) -> Result<Flow, Malformation> {
    let bits = r.u8().map_err(at("flow"))?;
    if bits & !FLOW_KNOWN_BITS != 0 {
        return Err(Malformation::ReservedBits {
            field: "flow",
            bits,
        });
    }
    let sender = if bits & FLOW_HAS_SENDER != 0 {
        Some(read_actor(r, table, "flow sender")?)
    } else {
        None
    };
    let recipient = read_recipient(r, table, bits >> FLOW_RECIPIENT_SHIFT)?;
    Ok(Flow { sender, recipient })
}

fn read_recipient(
    r: &mut Reader<'_>,
    table: &mut InternTable,
    form: u8,
) -> Result<Recipient, Malformation> {
    match form {
        RECIPIENT_ACTOR => Ok(Recipient::Actor(read_actor(r, table, "recipient")?)),
        RECIPIENT_GROUP => Ok(Recipient::Group(read_group(r, table)?)),
        RECIPIENT_TRANSPORT => Ok(Recipient::Transport),
        bits => Err(Malformation::ReservedBits {
            field: "recipient form",
            bits,
        }),
    }
}

#[inline]
fn read_actor(
    r: &mut Reader<'_>,
    table: &mut InternTable,
    field: &'static str,
) -> Result<ActorId, Malformation> {
    match r.varint().map_err(at(field))? {
        REF_LITERAL => read_actor_literal(r, field, usize::MAX),
        REF_DEFINE => {
            if !table.can_define_actor() {
                return Err(Malformation::InternTableFull {
                    table: "actor",
                    capacity: crate::intern::MAX_INTERNED_ACTORS,
                });
            }
            let actor = read_actor_literal(r, field, MAX_INTERNED_LEN)?;
            table.define_actor(actor.clone());
            Ok(actor)
        }
        reference => {
            let id = reference - REF_FIRST_ID;
            table
                .actor(id)
                .cloned()
                .ok_or(Malformation::UnknownId { table: "actor", id })
        }
    }
}

/// Reads an actor id in full; its label and name together may have at most `max_len`
/// bytes (the interning limit for definitions).
fn read_actor_literal(
    r: &mut Reader<'_>,
    field: &'static str,
    max_len: usize,
) -> Result<ActorId, Malformation> {
    let label = read_text(r, field, "actor", 0, max_len)?;
    let instance = r.varint().map_err(at(field))?;
    let name = read_text(r, field, "actor", label.len(), max_len)?;
    let index = r.varint().map_err(at(field))?;
    Ok(ActorId::new(ProcId::new(label, instance), name, index))
}

fn read_group(r: &mut Reader<'_>, table: &mut InternTable) -> Result<Arc<str>, Malformation> {
    match r.varint().map_err(at("group"))? {
        REF_LITERAL => read_text(r, "group", "string", 0, usize::MAX),
        REF_DEFINE => {
            if !table.can_define_string() {
                return Err(string_table_full());
            }
            let group = read_text(r, "group", "string", 0, MAX_INTERNED_LEN)?;
            table.define_string(Some(group.clone()));
            Ok(group)
        }
        reference => {
            let id = reference - REF_FIRST_ID;
            match table.string(id) {
                Some(Some(group)) => Ok(group.clone()),
                // A group named by a broken definition cannot be routed: the header is lost.
                Some(None) => Err(Malformation::BrokenId {
                    table: "string",
                    id,
                }),
                None => Err(Malformation::UnknownId {
                    table: "string",
                    id,
                }),
            }
        }
    }
}

/// Reads a length-prefixed UTF-8 string, part of an entry of the intern `table` of which
/// `before` bytes were already read; the whole entry may have at most `max_len` bytes.
fn read_text(
    r: &mut Reader<'_>,
    field: &'static str,
    table: &'static str,
    before: usize,
    max_len: usize,
) -> Result<Arc<str>, Malformation> {
    let len = r.varint().map_err(at(field))?;
    let entry_len = len.saturating_add(before as u64);
    if entry_len > max_len as u64 {
        return Err(Malformation::InternedTooLong {
            table,
            len: entry_len,
            max: MAX_INTERNED_LEN,
        });
    }
    // `len <= max_len <= usize::MAX` was just checked.
    let bytes = r.take(len as usize).map_err(at(field))?;
    std::str::from_utf8(bytes)
        .map(Arc::from)
        .map_err(|_| Malformation::InvalidUtf8 { field })
}

/// Reads the message name. The outer error is fatal (the tables can no longer agree); the
/// inner one skips the envelope.
fn read_name(
    r: &mut Reader<'_>,
    table: &mut InternTable,
) -> Result<Result<MessageName, DecodeError>, Malformation> {
    let Ok(reference) = r.varint() else {
        return Ok(Err(DecodeError::NameTruncated));
    };
    match reference {
        REF_LITERAL => Ok(read_name_text(r).map(MessageName::from)),
        REF_DEFINE => {
            if !table.can_define_string() {
                return Err(string_table_full());
            }
            // Peek at the length so an over-long definition is refused before it is read.
            let mut peek = r.clone();
            if let Ok(len) = peek.varint() {
                if len > MAX_INTERNED_LEN as u64 {
                    return Err(Malformation::InternedTooLong {
                        table: "string",
                        len,
                        max: MAX_INTERNED_LEN,
                    });
                }
            }
            // A broken definition still takes its id, so later ids stay in step with the
            // encoder's.
            let name = read_name_text(r);
            table.define_string(name.as_ref().ok().cloned());
            Ok(name.map(MessageName::from))
        }
        reference => {
            let id = reference - REF_FIRST_ID;
            Ok(match table.string(id) {
                Some(Some(name)) => Ok(MessageName::from(name.clone())),
                Some(None) => Err(DecodeError::BrokenNameId { id }),
                None => Err(DecodeError::UnknownNameId { id }),
            })
        }
    }
}

fn read_name_text(r: &mut Reader<'_>) -> Result<Arc<str>, DecodeError> {
    let len = r.varint().map_err(|_| DecodeError::NameTruncated)?;
    let available = r.remaining();
    let bytes = usize::try_from(len)
        .ok()
        .and_then(|len| r.take(len).ok())
        .ok_or(DecodeError::NameOverrun { len, available })?;
    std::str::from_utf8(bytes)
        .map(Arc::from)
        .map_err(|_| DecodeError::InvalidName)
}

fn string_table_full() -> Malformation {
    Malformation::InternTableFull {
        table: "string",
        capacity: crate::intern::MAX_INTERNED_STRINGS,
    }
}

/// Maps a short read in `field` to its malformation.
fn at(field: &'static str) -> impl Fn(Short) -> Malformation {
    move |short| match short {
        Short::Truncated => Malformation::Truncated { field },
        Short::VarintOverflow => Malformation::VarintOverflow { field },
    }
}
