//! The semantic index: every partition's stored prompts ([`super::partition`]). A partition of
//! up to `graph_above` slots is searched exactly by brute force (a dot product per slot: the
//! vectors are unit length); a larger one also keeps a graph ([`super::graph`]) that finds its
//! nearest slots without reading them all. Either way a candidate's similarity is the exact dot
//! product with its stored vector, and the threshold is applied to that.
//!
//! A slot expires with its entry and is never returned once expired. Expired slots are dropped
//! once their partition has seen enough inserts since the last sweep (an eighth of its slots),
//! or when the index is full: an insert into a large partition stays cheap. The whole index
//! holds at most `max_entries` slots.
//!
//! A brute-force search takes about half a millisecond over 10 000 slots and 7.5 ms over
//! 100 000 (it reads every vector); through a graph over 100 000, 1 to 5 ms (hnsw_rs spends most
//! of it on its own bookkeeping, which is why brute force stays up to ~50 000). Either runs with
//! the embedding, on the embedder's threads, never on the async workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::partition::{Candidate, Partition};
use super::verify::Features;
use super::worker;
use crate::key::CacheKey;

/// Every partition's slots.
#[derive(Debug)]
pub struct SemanticIndex {
    partitions: RwLock<HashMap<CacheKey, Arc<RwLock<Partition>>>>,
    max_entries: usize,
    /// A partition with more slots than this is searched through a graph.
    graph_above: usize,
    count: AtomicUsize,
}

impl SemanticIndex {
    /// An index of at most `max_entries` slots in all, whose partitions of more than
    /// `graph_above` slots are searched through a graph (exactly, by brute force, up to it).
    pub fn new(max_entries: usize, graph_above: usize) -> SemanticIndex {
        SemanticIndex {
            partitions: RwLock::new(HashMap::new()),
            max_entries,
            graph_above,
            count: AtomicUsize::new(0),
        }
    }

    /// Slots held.
    pub fn entries(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn partition(&self, key: &CacheKey) -> Option<Arc<RwLock<Partition>>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn all(&self) -> Vec<Arc<RwLock<Partition>>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Adds a stored prompt (or renews it); `false` when the index is full of live slots.
    pub fn insert(
        &self,
        partition: CacheKey,
        entry: CacheKey,
        vector: &[f32],
        features: Features,
        life: Duration,
    ) -> bool {
        let now = Instant::now();
        let part = {
            let mut map = self.partitions.write().unwrap_or_else(PoisonError::into_inner);
            map.entry(partition).or_default().clone()
        };
        let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
        if !p.accepts(vector.len()) {
            return false;
        }
        let removed = usize::from(p.remove_entry(&entry)) + p.sweep_if_due(now);
        self.count.fetch_sub(removed, Ordering::Relaxed);
        if self.count.load(Ordering::Relaxed) >= self.max_entries && p.expired_some(now) {
            // Full: this partition's expired slots make room before the insert is refused.
            let swept = p.sweep(now, |_| false);
            self.count.fetch_sub(swept, Ordering::Relaxed);
        }
        let stored = self.count.load(Ordering::Relaxed) < self.max_entries;
        if stored {
            p.push(entry, vector, features, now + life);
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        worker::maintain(&part, p, self.graph_above);
        stored
    }

    /// The live slots of `partition` at least `threshold` similar to `vector`, most similar
    /// first, at most `k`.
    pub fn search(&self, partition: &CacheKey, vector: &[f32], threshold: f32, k: usize) -> Vec<Candidate> {
        let Some(part) = self.partition(partition) else {
            return Vec::new();
        };
        let now = Instant::now();
        let (out, expired) = {
            let p = part.read().unwrap_or_else(PoisonError::into_inner);
            if p.dim() != vector.len() {
                return Vec::new();
            }
            p.search(vector, threshold, k, now, self.graph_above)
        };
        if expired {
            let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
            p.met_expired();
            let swept = p.sweep_if_due(now);
            self.count.fetch_sub(swept, Ordering::Relaxed);
            worker::maintain(&part, p, self.graph_above);
        }
        out
    }

    /// Drops the slots whose entry `matches`; how many.
    pub fn purge(&self, matches: impl Fn(&CacheKey) -> bool) -> usize {
        let now = Instant::now();
        let mut removed = 0;
        for part in self.all() {
            let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
            removed += p.sweep(now, &matches);
            worker::maintain(&part, p, self.graph_above);
        }
        self.count.fetch_sub(removed, Ordering::Relaxed);
        let mut emptied = Vec::new();
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, p| {
                let keep = p.read().unwrap_or_else(PoisonError::into_inner).len() > 0;
                if !keep {
                    emptied.push(p.clone());
                }
                keep
            });
        // Freed (with any graph, which takes a while) once every other lookup can go on.
        drop(emptied);
        removed
    }

    /// Waits until every large partition's graph is built and holds all its slots. For tests
    /// and benches: the gateway never waits (a search reads the slots a graph does not hold
    /// yet exactly).
    pub fn settle(&self) {
        for part in self.all() {
            worker::settle(&part, self.graph_above);
        }
    }

    /// The points in `partition`'s graph (tombstones included), if it has one.
    #[cfg(test)]
    pub(super) fn graph_points(&self, partition: &CacheKey) -> Option<usize> {
        let part = self.partition(partition)?;
        let p = part.read().unwrap_or_else(PoisonError::into_inner);
        p.graph.points()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::test_key;
    use crate::semantic::vector::dot;

    fn unit(seed: u32, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000) as f32 - 500.0)
            .collect();
        let n = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    #[test]
    fn search_finds_the_nearest_live_slot_in_its_own_partition_only() {
        let index = SemanticIndex::new(100, 1000);
        let (p1, p2) = (test_key(Some("a"), "p"), test_key(Some("b"), "p"));
        let long = Duration::from_secs(60);
        for n in 0..10 {
            assert!(index.insert(
                p1.clone(),
                test_key(Some("a"), &n.to_string()),
                &unit(n, 384),
                Features::of("x"),
                long
            ));
        }
        let hit = index.search(&p1, &unit(3, 384), 0.99, 4);
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].entry, test_key(Some("a"), "3"));
        assert!(hit[0].similarity > 0.999);
        assert!(index.search(&p2, &unit(3, 384), 0.0, 4).is_empty(), "another partition");
        // Renewing a slot does not add one.
        index.insert(
            p1.clone(),
            test_key(Some("a"), "3"),
            &unit(3, 384),
            Features::of("x"),
            long,
        );
        assert_eq!(index.entries(), 10);
        // Removing one keeps the others' vectors in place.
        assert_eq!(index.purge(|k| *k == test_key(Some("a"), "0")), 1);
        for n in 1..10 {
            assert_eq!(
                index.search(&p1, &unit(n, 384), 0.999, 1)[0].entry,
                test_key(Some("a"), &n.to_string())
            );
        }
    }

    /// Stores prompt `seed` (16 dimensions) as entry `name` of the tenant-less partition `p`.
    fn put(index: &SemanticIndex, p: &CacheKey, name: &str, seed: u32, life: Duration) -> bool {
        index.insert(
            p.clone(),
            test_key(None, name),
            &unit(seed, 16),
            Features::of("x"),
            life,
        )
    }

    #[test]
    fn slots_expire_and_the_index_stays_within_its_size() {
        let index = SemanticIndex::new(5, 1000);
        let p = test_key(None, "p");
        for n in 0..5 {
            assert!(put(&index, &p, &n.to_string(), n, Duration::from_millis(1)));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(index.search(&p, &unit(1, 16), 0.9, 4).is_empty(), "expired");
        assert_eq!(index.entries(), 0, "swept when searched");
        for n in 0..5 {
            assert!(put(&index, &p, &n.to_string(), n, Duration::from_secs(60)));
        }
        assert!(!put(&index, &p, "6", 6, Duration::from_secs(60)));
        assert_eq!(index.entries(), 5);
    }

    #[test]
    fn a_full_index_drops_expired_slots_before_it_refuses_an_insert() {
        let index = SemanticIndex::new(4, 1000);
        let p = test_key(None, "p");
        for n in 0..4 {
            assert!(put(&index, &p, &n.to_string(), n, Duration::from_millis(1)));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(put(&index, &p, "new", 9, Duration::from_secs(60)));
        assert_eq!(index.entries(), 1);
        assert_eq!(index.search(&p, &unit(9, 16), 0.99, 4)[0].entry, test_key(None, "new"));
    }
}
