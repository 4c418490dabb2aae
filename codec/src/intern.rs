//! Per-connection interning: strings (message and group names) and actor ids that are sent
//! once in full and afterwards by a small number.
//!
//! Each direction of a connection has its own [`InternTable`]: the encoder's assigns ids,
//! the decoder's mirrors them. Ids are never sent with a definition; both sides number
//! definitions in the order they appear on the wire, which the connection's byte order
//! makes identical on both ends. So a definition must never be dropped by either side:
//! the encoder rolls back the definitions of an envelope it fails to write, and the decoder
//! records every definition it reads, even one whose text is broken (that id then makes
//! every envelope that names it skip).
//!
//! Tables only grow, up to [`MAX_INTERNED_STRINGS`] and [`MAX_INTERNED_ACTORS`] entries of
//! at most [`MAX_INTERNED_LEN`] bytes each. Past that, the encoder sends values in full.
//! The limits are part of the protocol: a peer that defines more, or longer, entries is
//! malformed, which bounds what a peer can make the decoder hold to roughly
//! `MAX_INTERNED_ACTORS × (MAX_INTERNED_LEN + 80)` bytes, about 5 MiB, per connection.

use std::collections::HashMap;
use std::sync::Arc;

use plexus_core::ActorId;

/// How many strings (message names and group names) one direction may intern.
pub const MAX_INTERNED_STRINGS: usize = 4096;
/// How many actor ids one direction may intern.
pub const MAX_INTERNED_ACTORS: usize = 16384;
/// The longest string, or actor id (proc label plus actor name), that may be interned.
pub const MAX_INTERNED_LEN: usize = 255;

/// The encoder's cache of recently used entries has `2^RECENT_SET_BITS` sets of two.
const RECENT_SET_BITS: u32 = 5;

/// How the encoder should write a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Already interned under this id: write the id.
    Known(u32),
    /// Just interned under the next id: write a definition.
    Define,
    /// Not interned (too long, table full or interning not negotiated): write in full.
    Literal,
}

/// A point to roll the encoder's table back to when an envelope fails to encode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checkpoint {
    strings: usize,
    actors: usize,
}

/// The interning state of one direction of one connection.
///
/// The encoder side looks values up by content; the decoder side looks them up by id. A
/// table is used for one direction only, so one of its halves stays empty.
///
/// ```
/// use plexus_codec::{CodecConfig, EnvelopeKind, FrameEncoder, NetworkEnvelope, Recipient};
/// use plexus_core::{ActorId, ProcId, RemoteMessage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Tick(u64);
/// impl RemoteMessage for Tick {
///     const NAME: &'static str = "app.Tick";
/// }
///
/// let mut encoder = FrameEncoder::new(CodecConfig::default());
/// let worker = Recipient::Actor(ActorId::new(ProcId::new("app", 1), "worker", 0));
/// for n in 0..3 {
///     let tick = NetworkEnvelope::message(None, worker.clone(), EnvelopeKind::Regular, &Tick(n))?;
///     encoder.push(&tick)?;
/// }
/// // Three envelopes, but the name and the actor were each interned once.
/// assert_eq!(encoder.interned().strings(), 1);
/// assert_eq!(encoder.interned().actors(), 1);
/// # Ok::<(), plexus_codec::EncodeError>(())
/// ```
#[derive(Debug, Default)]
pub struct InternTable {
    // The maps keep std's keyed hasher: actor ids can come from the peer (a reply goes to
    // whoever sent the request), so an unkeyed hash would let it pick colliding keys.
    string_ids: HashMap<Arc<str>, u32>,
    actor_ids: HashMap<ActorId, u32>,
    // Hashing a key costs more than the rest of an envelope's encoding, and a connection
    // mostly sends the same few names and actors. So the encoder first looks in a small
    // cache indexed by where the key's text lives: clones of one id share their text, so
    // they land in the same set. An entry is trusted only after a full comparison, so a
    // reused address can cost a miss, never a wrong id.
    recent_strings: Recent<Arc<str>>,
    recent_actors: Recent<ActorId>,
    /// Every interned string in id order; `None` marks a definition whose text was broken.
    strings: Vec<Option<Arc<str>>>,
    actors: Vec<ActorId>,
}

impl InternTable {
    /// An empty table.
    pub fn new() -> Self {
        InternTable::default()
    }

    /// How many strings are interned.
    pub fn strings(&self) -> usize {
        self.strings.len()
    }

    /// How many actor ids are interned.
    pub fn actors(&self) -> usize {
        self.actors.len()
    }

    // --- encoder side ---

    /// Finds or assigns the id of `text`. `make` gives the shared string to store, called
    /// only when a new entry is made.
    #[inline]
    pub(crate) fn string_slot(&mut self, text: &str, make: impl FnOnce() -> Arc<str>) -> Slot {
        let address = text.as_ptr() as usize;
        if let Some(id) = self
            .recent_strings
            .find(address, |recent| same_text(recent, text))
        {
            return Slot::Known(id);
        }
        if let Some((known, &id)) = self.string_ids.get_key_value(text) {
            self.recent_strings.remember(address, known.clone(), id);
            return Slot::Known(id);
        }
        if text.len() > MAX_INTERNED_LEN || self.strings.len() >= MAX_INTERNED_STRINGS {
            return Slot::Literal;
        }
        let text = make();
        // The length check above bounds the table at `MAX_INTERNED_STRINGS`, far below
        // `u32::MAX`, so the cast cannot truncate.
        self.string_ids
            .insert(text.clone(), self.strings.len() as u32);
        self.strings.push(Some(text));
        Slot::Define
    }

    /// Finds or assigns the id of `actor`.
    #[inline]
    pub(crate) fn actor_slot(&mut self, actor: &ActorId) -> Slot {
        // Actors that share a name (workers of one pool) differ by index.
        let address = actor.name().as_ptr() as usize ^ (actor.index() as usize).rotate_left(17);
        if let Some(id) = self
            .recent_actors
            .find(address, |recent| same_actor(recent, actor))
        {
            return Slot::Known(id);
        }
        if let Some(&id) = self.actor_ids.get(actor) {
            self.recent_actors.remember(address, actor.clone(), id);
            return Slot::Known(id);
        }
        if actor_len(actor) > MAX_INTERNED_LEN || self.actors.len() >= MAX_INTERNED_ACTORS {
            return Slot::Literal;
        }
        self.actor_ids
            .insert(actor.clone(), self.actors.len() as u32);
        self.actors.push(actor.clone());
        Slot::Define
    }

    /// The current extent of the table, to roll back to.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            strings: self.strings.len(),
            actors: self.actors.len(),
        }
    }

    /// Forgets every entry made since `checkpoint`.
    pub(crate) fn rollback(&mut self, checkpoint: Checkpoint) {
        // Rare (an envelope too large for any frame), so forget the whole cache rather
        // than find the entries that point past the checkpoint.
        self.recent_strings.clear();
        self.recent_actors.clear();
        for text in self.strings.drain(checkpoint.strings..).flatten() {
            self.string_ids.remove(&text);
        }
        for actor in self.actors.drain(checkpoint.actors..) {
            self.actor_ids.remove(&actor);
        }
    }

    // --- decoder side ---

    /// Records a string definition read from the wire; `None` if its text was broken. The
    /// caller has checked [`Self::can_define_string`].
    pub(crate) fn define_string(&mut self, text: Option<Arc<str>>) {
        self.strings.push(text);
    }

    /// Whether the peer may define one more string.
    pub(crate) fn can_define_string(&self) -> bool {
        self.strings.len() < MAX_INTERNED_STRINGS
    }

    /// The string the peer defined under `id`: `None` if it never did, `Some(None)` if the
    /// definition was broken.
    #[inline]
    pub(crate) fn string(&self, id: u64) -> Option<&Option<Arc<str>>> {
        self.strings.get(usize::try_from(id).ok()?)
    }

    /// Records an actor id definition read from the wire. The caller has checked
    /// [`Self::can_define_actor`].
    pub(crate) fn define_actor(&mut self, actor: ActorId) {
        self.actors.push(actor);
    }

    /// Whether the peer may define one more actor id.
    pub(crate) fn can_define_actor(&self) -> bool {
        self.actors.len() < MAX_INTERNED_ACTORS
    }

    /// The actor id the peer defined under `id`.
    #[inline]
    pub(crate) fn actor(&self, id: u64) -> Option<&ActorId> {
        self.actors.get(usize::try_from(id).ok()?)
    }
}

/// A small two-way set-associative cache from where a key's text lives to its id.
#[derive(Debug)]
struct Recent<K> {
    /// Empty until first used: the decoder's table never needs one.
    ways: Vec<Option<(K, u32)>>,
}

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Recent { ways: Vec::new() }
    }
}

impl<K> Recent<K> {
    /// The id of the cached key at `address` for which `same` holds.
    #[inline]
    fn find(&self, address: usize, same: impl Fn(&K) -> bool) -> Option<u32> {
        let set = set_of(address);
        self.ways
            .get(set..set + 2)?
            .iter()
            .flatten()
            .find(|(key, _)| same(key))
            .map(|(_, id)| *id)
    }

    /// Caches `key`, found at `address`, with its `id`.
    fn remember(&mut self, address: usize, key: K, id: u32) {
        if self.ways.is_empty() {
            self.ways.resize_with(2 << RECENT_SET_BITS, || None);
        }
        let set = set_of(address);
        // The newest entry takes the first way and the one it displaces moves to the
        // second, so two hot keys that fall into one set both stay.
        self.ways.swap(set, set + 1);
        self.ways[set] = Some((key, id));
    }

    fn clear(&mut self) {
        self.ways.clear();
    }
}

/// The first way of the set for `address`.
#[inline]
fn set_of(address: usize) -> usize {
    // Fibonacci hashing: the multiply spreads nearby addresses over all sets, whose index
    // is the product's top bits.
    let hash = (address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (hash >> (64 - RECENT_SET_BITS)) as usize * 2
}

/// Compares two texts, first by where they live: clones of one `Arc<str>` are then equal
/// without reading them (`Arc<str>`'s own `==` always compares the bytes).
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Compares two actor ids, the numbers first and the texts by [`same_text`].
#[inline]
fn same_actor(a: &ActorId, b: &ActorId) -> bool {
    a.index() == b.index()
        && a.proc().instance() == b.proc().instance()
        && same_text(a.name(), b.name())
        && same_text(a.proc().label(), b.proc().label())
}

/// The length an actor id counts against [`MAX_INTERNED_LEN`]: its two text parts.
pub(crate) fn actor_len(actor: &ActorId) -> usize {
    actor.proc().label().len() + actor.name().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::ProcId;

    fn actor(n: u64) -> ActorId {
        ActorId::new(ProcId::new("p", 1), "a", n)
    }

    /// A value is defined once and known afterwards, under ids numbered in order.
    #[test]
    fn values_are_defined_once_then_known() {
        let mut table = InternTable::new();
        assert_eq!(table.string_slot("x", || "x".into()), Slot::Define);
        assert_eq!(table.string_slot("y", || "y".into()), Slot::Define);
        assert_eq!(table.string_slot("x", || "x".into()), Slot::Known(0));
        assert_eq!(table.string_slot("y", || "y".into()), Slot::Known(1));
        assert_eq!(table.actor_slot(&actor(5)), Slot::Define);
        assert_eq!(table.actor_slot(&actor(5)), Slot::Known(0));
        assert_eq!(table.actor_slot(&actor(6)), Slot::Define);
        assert_eq!((table.strings(), table.actors()), (2, 2));
    }

    /// Values over the length limit, and values past a full table, are sent in full.
    #[test]
    fn long_values_and_full_tables_are_literal() {
        let mut table = InternTable::new();
        let long = "n".repeat(MAX_INTERNED_LEN + 1);
        assert_eq!(
            table.string_slot(&long, || long.as_str().into()),
            Slot::Literal
        );
        let long_actor = ActorId::new(ProcId::new("p", 1), long.as_str(), 0);
        assert_eq!(table.actor_slot(&long_actor), Slot::Literal);
        for n in 0..MAX_INTERNED_ACTORS as u64 {
            assert_eq!(table.actor_slot(&actor(n)), Slot::Define);
        }
        assert_eq!(table.actor_slot(&actor(u64::MAX)), Slot::Literal);
        assert_eq!(table.actor_slot(&actor(3)), Slot::Known(3));
    }

    /// A rollback forgets the entries made after the checkpoint and reuses their ids.
    #[test]
    fn rollback_forgets_later_entries() {
        let mut table = InternTable::new();
        table.string_slot("keep", || "keep".into());
        let checkpoint = table.checkpoint();
        table.string_slot("drop", || "drop".into());
        table.actor_slot(&actor(1));
        table.rollback(checkpoint);
        assert_eq!((table.strings(), table.actors()), (1, 0));
        assert_eq!(table.string_slot("keep", || "keep".into()), Slot::Known(0));
        assert_eq!(table.actor_slot(&actor(2)), Slot::Define);
        assert_eq!(table.actor_slot(&actor(2)), Slot::Known(0));
        assert_eq!(table.string_slot("drop", || "drop".into()), Slot::Define);
        assert_eq!(table.string_slot("drop", || "drop".into()), Slot::Known(1));
    }

    /// Two keys that fall into one set of the recent cache both stay; a third evicts the
    /// older one; and a key is found only if it compares equal, whatever its address.
    #[test]
    fn the_recent_cache_keeps_two_keys_per_set_and_checks_them() {
        let mut recent = Recent::<String>::default();
        let address = 0x1000;
        assert_eq!(recent.find(address, |_| true), None);
        recent.remember(address, "a".into(), 1);
        recent.remember(address, "b".into(), 2);
        assert_eq!(recent.find(address, |key| key == "a"), Some(1));
        assert_eq!(recent.find(address, |key| key == "b"), Some(2));
        assert_eq!(recent.find(address, |key| key == "c"), None);
        recent.remember(address, "c".into(), 3);
        assert_eq!(recent.find(address, |key| key == "a"), None);
        assert_eq!(recent.find(address, |key| key == "b"), Some(2));
        assert_eq!(recent.find(address, |key| key == "c"), Some(3));
        recent.clear();
        assert_eq!(recent.find(address, |_| true), None);
    }

    /// Equal values at different addresses, and texts at one address that differ, are told
    /// apart by content, so the cache never returns another key's id.
    #[test]
    fn cached_ids_follow_content_not_addresses() {
        let mut table = InternTable::new();
        let first = String::from("tick");
        assert_eq!(
            table.string_slot(&first, || first.as_str().into()),
            Slot::Define
        );
        assert_eq!(
            table.string_slot(&first, || first.as_str().into()),
            Slot::Known(0)
        );
        let copy = first.clone();
        assert_eq!(
            table.string_slot(&copy, || copy.as_str().into()),
            Slot::Known(0)
        );
        let mut reused = first;
        reused.replace_range(.., "tock");
        assert_eq!(
            table.string_slot(&reused, || reused.as_str().into()),
            Slot::Define
        );
        assert_eq!(
            table.string_slot(&reused, || reused.as_str().into()),
            Slot::Known(1)
        );
        assert_eq!(table.string_slot("tick", || "tick".into()), Slot::Known(0));
    }

    /// The decoder side answers by id, and tells a broken definition from a missing one.
    #[test]
    fn decoder_side_looks_up_by_id() {
        let mut table = InternTable::new();
        table.define_string(Some("a".into()));
        table.define_string(None);
        table.define_actor(actor(9));
        assert_eq!(table.string(0), Some(&Some("a".into())));
        assert_eq!(table.string(1), Some(&None));
        assert_eq!(table.string(2), None);
        assert_eq!(table.string(u64::MAX), None);
        assert_eq!(table.actor(0), Some(&actor(9)));
        assert_eq!(table.actor(1), None);
    }
}
