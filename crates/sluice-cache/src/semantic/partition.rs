//! One partition of the semantic index: its stored prompts' embeddings in one contiguous
//! `Vec<f32>`, each slot naming the exact entry that holds its answer and the features a hit is
//! checked against, and (when it is large) the graph over them ([`super::graph`]).
//!
//! A slot's position moves when another is removed (the last one takes its place); its id does
//! not, and ids only grow, so the slots a graph has not taken in yet are a range of ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::graph::{self, GraphState};
use super::vector::dot;
use super::verify::Features;
use crate::key::CacheKey;

/// One stored prompt.
#[derive(Debug, Clone)]
struct Slot {
    id: usize,
    entry: CacheKey,
    features: Arc<Features>,
    expires: Instant,
}

/// A similar stored prompt.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub entry: CacheKey,
    pub similarity: f32,
    pub features: Arc<Features>,
}

/// One partition's slots, and the graph over them when it is large.
#[derive(Debug, Default)]
pub(super) struct Partition {
    dim: usize,
    vectors: Vec<f32>,
    slots: Vec<Slot>,
    /// Where each entry's slot is: a renewal replaces it without a scan.
    by_entry: HashMap<CacheKey, usize>,
    /// Where the slot with each id is: a graph names slots by id.
    by_id: HashMap<usize, usize>,
    /// The id the next slot gets.
    next_id: usize,
    /// No slot expires before this (`None` without slots).
    earliest: Option<Instant>,
    /// Inserts (and searches that met an expired slot) since expired slots were last dropped.
    since_sweep: usize,
    pub(super) graph: GraphState,
}

impl Partition {
    /// Slots held, expired ones included.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    pub(super) fn next_id(&self) -> usize {
        self.next_id
    }

    /// The ids of every slot held.
    pub(super) fn ids(&self) -> Vec<usize> {
        self.slots.iter().map(|s| s.id).collect()
    }

    /// The vector of the slot with `id`, if it is still held.
    pub(super) fn vector(&self, id: usize) -> Option<&[f32]> {
        self.by_id.get(&id).map(|&i| self.row(i))
    }

    pub(super) fn holds(&self, id: usize) -> bool {
        self.by_id.contains_key(&id)
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Whether a vector of `dim` may be stored: the partition's dimension, which the first
    /// slot of an empty partition sets.
    pub(super) fn accepts(&mut self, dim: usize) -> bool {
        if self.slots.is_empty() {
            self.dim = dim;
        }
        dim == self.dim && dim != 0
    }

    /// Adds a slot (after [`Partition::accepts`] said yes).
    pub(super) fn push(&mut self, entry: CacheKey, vector: &[f32], features: Features, expires: Instant) {
        let (id, i) = (self.next_id, self.slots.len());
        self.next_id += 1;
        self.vectors.extend_from_slice(vector);
        self.by_entry.insert(entry.clone(), i);
        self.by_id.insert(id, i);
        self.slots.push(Slot {
            id,
            entry,
            features: Arc::new(features),
            expires,
        });
        self.earliest = Some(self.earliest.map_or(expires, |e| e.min(expires)));
        self.since_sweep += 1;
    }

    /// Drops `entry`'s slot, if there is one; whether there was.
    pub(super) fn remove_entry(&mut self, entry: &CacheKey) -> bool {
        let Some(&i) = self.by_entry.get(entry) else {
            return false;
        };
        self.remove(i);
        true
    }

    fn remove(&mut self, i: usize) {
        let dim = self.dim;
        let last = self.slots.len() - 1;
        if i != last {
            self.vectors.copy_within(last * dim..(last + 1) * dim, i * dim);
        }
        self.vectors.truncate(last * dim);
        let gone = self.slots.swap_remove(i);
        self.by_entry.remove(&gone.entry);
        self.by_id.remove(&gone.id);
        if let Some(moved) = self.slots.get(i) {
            self.by_id.insert(moved.id, i);
            if let Some(at) = self.by_entry.get_mut(&moved.entry) {
                *at = i;
            }
        }
        self.graph.removed(gone.id);
    }

    /// Drops expired slots (and those `gone` says to); how many.
    pub(super) fn sweep(&mut self, now: Instant, gone: impl Fn(&CacheKey) -> bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].expires <= now || gone(&self.slots[i].entry) {
                self.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
        self.earliest = self.slots.iter().map(|s| s.expires).min();
        self.since_sweep = 0;
        removed
    }

    /// Whether a slot may have expired.
    pub(super) fn expired_some(&self, now: Instant) -> bool {
        self.earliest.is_some_and(|e| e <= now)
    }

    /// Drops expired slots if some have and the partition has seen enough inserts since the
    /// last sweep (an eighth of its slots) that the sweep's cost is spread over them; how many.
    pub(super) fn sweep_if_due(&mut self, now: Instant) -> usize {
        if self.expired_some(now) && self.since_sweep.saturating_mul(8) >= self.slots.len() {
            self.sweep(now, |_| false)
        } else {
            0
        }
    }

    /// Notes that a search met an expired slot (it counts towards the next sweep as an insert
    /// does).
    pub(super) fn met_expired(&mut self) {
        self.since_sweep += 1;
    }

    /// The live slots at least `threshold` similar to `vector` (of the partition's dimension),
    /// most similar first, at most `k`; and whether an expired slot was met. Through the graph
    /// when the partition has more than `graph_above` slots and a graph, else by brute force.
    pub(super) fn search(
        &self,
        vector: &[f32],
        threshold: f32,
        k: usize,
        now: Instant,
        graph_above: usize,
    ) -> (Vec<Candidate>, bool) {
        let mut found: Vec<(f32, usize)> = Vec::new();
        let mut expired = false;
        let mut consider = |i: usize, row: &[f32]| {
            let s = dot(row, vector);
            if s >= threshold {
                if self.slots[i].expires <= now {
                    expired = true;
                } else {
                    found.push((s, i));
                }
            }
        };
        match self.graph.searchable(self.slots.len(), self.dim, graph_above) {
            Some((graph, taken_below)) => {
                for id in graph.nearest(vector, graph::asked(k)) {
                    if let Some(&i) = self.by_id.get(&id) {
                        consider(i, self.row(i));
                    }
                }
                // The newest slots, not in the graph yet: exactly.
                for id in taken_below..self.next_id {
                    if let Some(&i) = self.by_id.get(&id) {
                        consider(i, self.row(i));
                    }
                }
                // A slot the graph is taking in right now is met twice.
                found.sort_unstable_by_key(|&(_, i)| i);
                found.dedup_by_key(|&mut (_, i)| i);
            }
            None => {
                for (i, row) in self.vectors.chunks_exact(self.dim.max(1)).enumerate() {
                    consider(i, row);
                }
            }
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        found.truncate(k);
        let out = found
            .iter()
            .map(|&(s, i)| Candidate {
                entry: self.slots[i].entry.clone(),
                similarity: s,
                features: self.slots[i].features.clone(),
            })
            .collect();
        (out, expired)
    }
}
