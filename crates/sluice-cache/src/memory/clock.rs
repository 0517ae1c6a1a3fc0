//! One shard of the in-process tier: its entries in slots, a table from key to slot, and a
//! CLOCK hand that walks the slots to make room — an entry read since the hand last passed it
//! is passed over once (its second chance), an expired one is taken first, any other is
//! evicted. Every operation is a table lookup and a few slot moves; what leaves is handed to
//! the caller, which keeps the tier's counts.

use std::sync::Arc;

use hashbrown::HashTable;

use super::entry::Entry;
use crate::key::{CacheKey, Scope};

/// Why an entry left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    /// Its time (TTL and stale time) was up.
    Expired,
    /// The hand took it to make room.
    Evicted,
    /// A new answer took its key.
    Replaced,
    /// A purge asked for it.
    Purged,
}

/// An entry in its slot.
pub(super) struct Held {
    pub key: CacheKey,
    pub entry: Arc<Entry>,
    /// Read since the hand last passed.
    seen: bool,
}

/// The most slots the hand looks at to find a tenant's own entries to make room for its new
/// one (when its share is full); past it, the new entry is not stored.
const TENANT_STEPS: usize = 1024;

/// Empty slots past this many (and past half the ring) are given back.
const SPARE_SLOTS: usize = 1024;

#[derive(Default)]
pub(super) struct Shard {
    /// Slot numbers, found by their key's hash and compared by the key in the slot (each key
    /// is held once).
    table: HashTable<u32>,
    slots: Vec<Option<Held>>,
    free: Vec<u32>,
    hand: usize,
    /// Where the expiry sweep goes on from.
    sweep: usize,
    bytes: u64,
}

impl Shard {
    /// The entry for `key`, marked as read; an expired one leaves (through `gone`) instead.
    pub fn get(&mut self, key: &CacheKey, gone: &mut dyn FnMut(Held, Gone)) -> Option<Arc<Entry>> {
        let at = self.find(key)?;
        let held = self.slots.get_mut(at)?.as_mut()?;
        if held.entry.remaining().is_zero() {
            if let Some(held) = self.take(at) {
                gone(held, Gone::Expired);
            }
            self.settle();
            return None;
        }
        held.seen = true;
        Some(held.entry.clone())
    }

    /// Stores `entry` under `key` (in place of what it held), first making room: `over`
    /// bytes of the same tenant's entries, then within `budget` bytes. An entry that does not
    /// fit is not stored (and comes back).
    pub fn insert(
        &mut self,
        key: CacheKey,
        entry: Arc<Entry>,
        (budget, mut over): (u64, u64),
        gone: &mut dyn FnMut(Held, Gone),
    ) -> Result<(), Arc<Entry>> {
        let weight = u64::from(entry.bytes());
        if weight > budget {
            return Err(entry);
        }
        if let Some(at) = self.find(&key)
            && let Some(old) = self.take(at)
        {
            over = over.saturating_sub(u64::from(old.entry.bytes()));
            gone(old, Gone::Replaced);
        }
        let mut steps = TENANT_STEPS;
        while over > 0 {
            let Some((at, why)) = self.victim(Some(key.scope()), &mut steps) else {
                return Err(entry);
            };
            if let Some(held) = self.take(at) {
                over = over.saturating_sub(u64::from(held.entry.bytes()));
                gone(held, why);
            }
        }
        let mut steps = 2 * self.slots.len();
        while self.bytes + weight > budget {
            let Some((at, why)) = self.victim(None, &mut steps) else {
                return Err(entry);
            };
            if let Some(held) = self.take(at) {
                gone(held, why);
            }
        }
        let Some(at) = self.free.pop().or_else(|| u32::try_from(self.slots.len()).ok()) else {
            return Err(entry);
        };
        if at as usize == self.slots.len() {
            self.slots.push(None);
        }
        self.bytes += weight;
        let hash = key.head();
        let slots = &self.slots;
        self.table.insert_unique(hash, at, |&i| head_of(slots, i));
        self.slots[at as usize] = Some(Held {
            key,
            entry,
            seen: false,
        });
        Ok(())
    }

    /// Removes every entry `matches`.
    pub fn purge(&mut self, matches: &dyn Fn(&CacheKey) -> bool, gone: &mut dyn FnMut(Held, Gone)) {
        for at in 0..self.slots.len() {
            if self.slots[at].as_ref().is_some_and(|h| matches(&h.key))
                && let Some(held) = self.take(at)
            {
                gone(held, Gone::Purged);
            }
        }
        self.settle();
    }

    /// Looks at up to `budget` slots from where the last sweep stopped and removes the expired
    /// entries among them; returns how many slots it looked at.
    pub fn sweep(&mut self, budget: usize, gone: &mut dyn FnMut(Held, Gone)) -> usize {
        let n = budget.min(self.slots.len());
        for _ in 0..n {
            self.sweep = (self.sweep + 1) % self.slots.len();
            let at = self.sweep;
            if self.slots[at].as_ref().is_some_and(|h| h.entry.remaining().is_zero())
                && let Some(held) = self.take(at)
            {
                gone(held, Gone::Expired);
            }
        }
        self.settle();
        n
    }

    /// The slot `key` is in.
    fn find(&self, key: &CacheKey) -> Option<usize> {
        let slots = &self.slots;
        let at = *self.table.find(key.head(), |&i| {
            slots
                .get(i as usize)
                .and_then(Option::as_ref)
                .is_some_and(|h| h.key == *key)
        })?;
        Some(at as usize)
    }

    /// The slot the hand stops at, from the one it points to: the first expired entry, or the
    /// first not read since the hand last passed; with `of`, among that tenant's entries only
    /// (the others' marks left alone). It looks at `steps` slots at most (two turns of the ring
    /// find one whenever the ring holds an entry). Entries never read leave the ring in the
    /// order they came.
    fn victim(&mut self, of: Option<&Scope>, steps: &mut usize) -> Option<(usize, Gone)> {
        let len = self.slots.len();
        while *steps > 0 && len > 0 {
            *steps -= 1;
            let at = self.hand % len;
            self.hand = (at + 1) % len;
            let Some(held) = self.slots[at].as_mut() else {
                continue;
            };
            if of.is_some_and(|scope| !held.key.scope().same_tenant(scope)) {
                continue;
            }
            if held.entry.remaining().is_zero() {
                return Some((at, Gone::Expired));
            }
            if !std::mem::take(&mut held.seen) {
                return Some((at, Gone::Evicted));
            }
        }
        None
    }

    /// Empties slot `at`.
    fn take(&mut self, at: usize) -> Option<Held> {
        let held = self.slots.get_mut(at)?.take()?;
        let n = u32::try_from(at).unwrap_or(u32::MAX);
        if let Ok(found) = self.table.find_entry(held.key.head(), |&i| i == n) {
            found.remove();
        }
        self.bytes -= u64::from(held.entry.bytes());
        self.free.push(n);
        Some(held)
    }

    /// Gives back the room of empty slots once they are many: the entries move down to the
    /// front, and the table is built again.
    fn settle(&mut self) {
        if self.free.len() <= SPARE_SLOTS.max(self.slots.len() / 2) {
            return;
        }
        let held: Vec<Held> = std::mem::take(&mut self.slots).into_iter().flatten().collect();
        self.free = Vec::new();
        self.table = HashTable::with_capacity(held.len());
        self.hand = 0;
        self.sweep = 0;
        for (i, h) in held.iter().enumerate() {
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            self.table
                .insert_unique(h.key.head(), n, |&j| held.get(j as usize).map_or(0, |h| h.key.head()));
        }
        self.slots = held.into_iter().map(Some).collect();
    }
}

/// The hash of the key in slot `i` (for the table's growth).
fn head_of(slots: &[Option<Held>], i: u32) -> u64 {
    slots
        .get(i as usize)
        .and_then(Option::as_ref)
        .map_or(0, |h| h.key.head())
}
