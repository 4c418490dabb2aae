//! Per-message-type handled counts of one actor, written only by the actor's own task.
//!
//! The first [`SLOTS`] message types an actor handles each get a fixed slot: a name set
//! once and a counter. The slot, address and length of the last type handled are
//! remembered, so a run of messages of one type costs two word comparisons and one
//! counter store per message. Types beyond the slots go to an overflow map behind a
//! mutex that only the actor's task and a snapshot ever take.
//!
//! ```text
//! count(type): last slot matches? ─yes─▶ bump it
//!                 │ no
//!                 ▼
//!              scan used slots ─found─▶ bump, remember as last
//!                 │ none
//!                 ▼
//!              free slot? ─yes─▶ name it, publish `used`, bump
//!                 │ no
//!                 ▼
//!              overflow map (mutex)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::sync::lock;

/// Message types with a lock-free slot per actor; most actors handle fewer.
pub(crate) const SLOTS: usize = 8;

/// Where a handled message's type was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeRef {
    /// In this slot.
    Slot(usize),
    /// In the overflow map; its name is the overflow's `current`.
    Overflow,
}

struct Slot {
    name: OnceLock<&'static str>,
    count: AtomicU64,
}

#[derive(Default)]
struct Overflow {
    counts: HashMap<&'static str, u64>,
    /// The overflow type handled last, so a running handler of such a type has a name.
    current: &'static str,
}

/// The handled counts by message type of one actor.
pub(crate) struct MessageTypes {
    slots: [Slot; SLOTS],
    /// Slots whose name is set; published with `Release` after the name.
    used: AtomicUsize,
    /// The slot of the type handled last: the fast path for runs of one type.
    last: AtomicUsize,
    /// Address and length of the name handled last, so the fast path compares two plain
    /// words instead of reading the slot's name cell. Only the actor's task reads and
    /// writes them; atomics only because the counts are shared with snapshots.
    last_ptr: AtomicUsize,
    last_len: AtomicUsize,
    overflow: Mutex<Overflow>,
}

impl Default for MessageTypes {
    fn default() -> Self {
        MessageTypes {
            slots: std::array::from_fn(|_| Slot {
                name: OnceLock::new(),
                count: AtomicU64::new(0),
            }),
            used: AtomicUsize::new(0),
            last: AtomicUsize::new(0),
            // No name lives at address 0, so nothing matches before the first count.
            last_ptr: AtomicUsize::new(0),
            last_len: AtomicUsize::new(0),
            overflow: Mutex::new(Overflow::default()),
        }
    }
}

impl MessageTypes {
    /// Counts one handled message of `message_type`. Must be called only from the actor's
    /// own task: the counters have a single writer, which is what lets a plain load and
    /// store replace a locked read-modify-write.
    #[inline]
    pub(crate) fn count(&self, message_type: &'static str) -> TypeRef {
        if self.last_ptr.load(Ordering::Relaxed) == message_type.as_ptr() as usize
            && self.last_len.load(Ordering::Relaxed) == message_type.len()
        {
            let last = self.last.load(Ordering::Relaxed);
            if let Some(slot) = self.slots.get(last) {
                bump(&slot.count);
                return TypeRef::Slot(last);
            }
        }
        self.count_slow(message_type)
    }

    /// Makes `slot`, named `message_type` at this address, the fast path's.
    fn remember(&self, slot: usize, message_type: &'static str) {
        self.last.store(slot, Ordering::Relaxed);
        self.last_ptr
            .store(message_type.as_ptr() as usize, Ordering::Relaxed);
        self.last_len.store(message_type.len(), Ordering::Relaxed);
    }

    // Out of line and cold: kept out of the fast path, the probe's per-message call
    // needs fewer registers saved.
    #[cold]
    #[inline(never)]
    fn count_slow(&self, message_type: &'static str) -> TypeRef {
        let used = self.used.load(Ordering::Relaxed);
        // `type_name` usually yields one pointer per type, but the same text may live at
        // two addresses (one per codegen unit), so a text comparison backs up the pointer one.
        let found = (0..used)
            .find(|&i| self.slot_name(i).is_some_and(|n| same_ptr(n, message_type)))
            .or_else(|| (0..used).find(|&i| self.slot_name(i) == Some(message_type)));
        if let Some(i) = found {
            bump(&self.slots[i].count);
            self.remember(i, message_type);
            return TypeRef::Slot(i);
        }
        if let Some(slot) = self.slots.get(used) {
            if slot.name.set(message_type).is_ok() {
                bump(&slot.count);
                self.used.store(used + 1, Ordering::Release);
                self.remember(used, message_type);
                return TypeRef::Slot(used);
            }
        }
        let mut overflow = lock(&self.overflow);
        *overflow.counts.entry(message_type).or_insert(0) += 1;
        overflow.current = message_type;
        TypeRef::Overflow
    }

    /// The name of a type counted earlier.
    pub(crate) fn name(&self, at: TypeRef) -> Option<&'static str> {
        match at {
            TypeRef::Slot(i) => self.slot_name(i),
            TypeRef::Overflow => Some(lock(&self.overflow).current).filter(|n| !n.is_empty()),
        }
    }

    /// Every type handled so far with its count, in no particular order.
    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        let used = self.used.load(Ordering::Acquire);
        let mut counts: Vec<(&'static str, u64)> = (0..used)
            .filter_map(|i| {
                let slot = self.slots.get(i)?;
                Some((*slot.name.get()?, slot.count.load(Ordering::Relaxed)))
            })
            .collect();
        let overflow = lock(&self.overflow);
        for (name, count) in &overflow.counts {
            match counts.iter_mut().find(|(known, _)| known == name) {
                Some((_, total)) => *total += count,
                None => counts.push((name, *count)),
            }
        }
        counts
    }

    /// Messages handled in total.
    pub(crate) fn total(&self) -> u64 {
        let used = self.used.load(Ordering::Acquire);
        let slots: u64 = self.slots[..used.min(SLOTS)]
            .iter()
            .map(|slot| slot.count.load(Ordering::Relaxed))
            .sum();
        slots + lock(&self.overflow).counts.values().sum::<u64>()
    }

    fn slot_name(&self, i: usize) -> Option<&'static str> {
        self.slots.get(i)?.name.get().copied()
    }
}

/// Adds one to a counter that only one task writes.
fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

fn same_ptr(a: &str, b: &str) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts land per type, whether a type sits in a slot or in the overflow map.
    #[test]
    fn counts_per_type_across_slots_and_overflow() {
        let types = MessageTypes::default();
        let names: Vec<&'static str> = (0..SLOTS + 3)
            .map(|i| &*Box::leak(format!("Type{i}").into_boxed_str()))
            .collect();
        for (i, name) in names.iter().enumerate() {
            for _ in 0..=i {
                types.count(name);
            }
        }
        // Interleave again so the fast path misses and the scan has to find the slot.
        assert_eq!(types.count(names[0]), TypeRef::Slot(0));
        assert_eq!(types.count(names[SLOTS]), TypeRef::Overflow);
        assert_eq!(types.name(TypeRef::Overflow), Some(names[SLOTS]));
        assert_eq!(types.count(names[0]), TypeRef::Slot(0));

        let mut counts = types.counts();
        counts.sort_by_key(|(name, _)| names.iter().position(|n| n == name));
        let expected: Vec<(&'static str, u64)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let extra = if i == 0 { 2 } else { u64::from(i == SLOTS) };
                (*name, i as u64 + 1 + extra)
            })
            .collect();
        assert_eq!(counts, expected);
        assert_eq!(
            types.total(),
            expected.iter().map(|(_, count)| count).sum::<u64>()
        );
    }

    /// The same type name at two addresses is counted as one type.
    #[test]
    fn equal_text_at_two_addresses_is_one_type() {
        let types = MessageTypes::default();
        let first: &'static str = Box::leak(String::from("app::Ping").into_boxed_str());
        let second: &'static str = Box::leak(String::from("app::Ping").into_boxed_str());
        let other: &'static str = "app::Pong";
        assert_eq!(types.count(first), TypeRef::Slot(0));
        assert_eq!(types.count(other), TypeRef::Slot(1));
        assert_eq!(types.count(second), TypeRef::Slot(0));
        assert_eq!(types.counts(), vec![("app::Ping", 2), ("app::Pong", 1)]);
    }
}
