//! The semantic index: per partition, the stored prompts' embeddings in one contiguous
//! `Vec<f32>` searched exactly by brute force (a dot product per entry: the vectors are unit
//! length), each slot naming the exact entry that holds its answer and the features a hit is
//! checked against. A slot expires with its entry; expired slots are dropped when their
//! partition is next touched. The whole index holds at most `max_entries` slots.
//!
//! A search over thousands of entries takes hundreds of microseconds: it runs with the
//! embedding, on the embedder's threads, never on the async workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::verify::Features;
use crate::key::CacheKey;

/// One stored prompt.
#[derive(Debug, Clone)]
struct Slot {
    entry: CacheKey,
    features: Arc<Features>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Partition {
    dim: usize,
    vectors: Vec<f32>,
    slots: Vec<Slot>,
}

impl Partition {
    fn remove(&mut self, i: usize) {
        let dim = self.dim;
        let last = self.slots.len() - 1;
        if i != last {
            self.vectors.copy_within(last * dim..(last + 1) * dim, i * dim);
        }
        self.vectors.truncate(last * dim);
        self.slots.swap_remove(i);
    }

    /// Drops expired slots (and those `gone` says to); how many.
    fn sweep(&mut self, now: Instant, gone: impl Fn(&CacheKey) -> bool) -> usize {
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
        removed
    }
}

/// A similar stored prompt.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub entry: CacheKey,
    pub similarity: f32,
    pub features: Arc<Features>,
}

/// Every partition's slots.
#[derive(Debug)]
pub struct SemanticIndex {
    partitions: RwLock<HashMap<CacheKey, Arc<RwLock<Partition>>>>,
    max_entries: usize,
    count: AtomicUsize,
}

impl SemanticIndex {
    pub fn new(max_entries: usize) -> SemanticIndex {
        SemanticIndex {
            partitions: RwLock::new(HashMap::new()),
            max_entries,
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
        if p.slots.is_empty() {
            p.dim = vector.len();
        }
        if vector.len() != p.dim || p.dim == 0 {
            return false;
        }
        let swept = p.sweep(now, |k| *k == entry);
        self.count.fetch_sub(swept, Ordering::Relaxed);
        if self.count.load(Ordering::Relaxed) >= self.max_entries {
            return false;
        }
        p.vectors.extend_from_slice(vector);
        p.slots.push(Slot {
            entry,
            features: Arc::new(features),
            expires: now + life,
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The live slots of `partition` at least `threshold` similar to `vector`, most similar
    /// first, at most `k`.
    pub fn search(&self, partition: &CacheKey, vector: &[f32], threshold: f32, k: usize) -> Vec<Candidate> {
        let Some(part) = self.partition(partition) else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut found: Vec<(f32, usize)> = Vec::new();
        let mut expired = false;
        {
            let p = part.read().unwrap_or_else(PoisonError::into_inner);
            if p.dim != vector.len() {
                return Vec::new();
            }
            for (i, row) in p.vectors.chunks_exact(p.dim.max(1)).enumerate() {
                let s = dot(row, vector);
                if s >= threshold {
                    if p.slots[i].expires <= now {
                        expired = true;
                        continue;
                    }
                    found.push((s, i));
                }
            }
            found.sort_by(|a, b| b.0.total_cmp(&a.0));
            found.truncate(k);
            let out = found
                .iter()
                .map(|&(s, i)| Candidate {
                    entry: p.slots[i].entry.clone(),
                    similarity: s,
                    features: p.slots[i].features.clone(),
                })
                .collect();
            if !expired {
                return out;
            }
            drop(p);
            let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
            let swept = p.sweep(now, |_| false);
            self.count.fetch_sub(swept, Ordering::Relaxed);
            out
        }
    }

    /// Drops the slots whose entry `matches`; how many.
    pub fn purge(&self, matches: impl Fn(&CacheKey) -> bool) -> usize {
        let parts: Vec<Arc<RwLock<Partition>>> = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let now = Instant::now();
        let mut removed = 0;
        for part in parts {
            let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
            removed += p.sweep(now, &matches);
        }
        self.count.fetch_sub(removed, Ordering::Relaxed);
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, p| !p.read().unwrap_or_else(PoisonError::into_inner).slots.is_empty());
        removed
    }
}

/// The dot product, in eight lanes the compiler can vectorise.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::test_key;

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
        let index = SemanticIndex::new(100);
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

    #[test]
    fn slots_expire_and_the_index_stays_within_its_size() {
        let index = SemanticIndex::new(5);
        let p = test_key(None, "p");
        for n in 0..5 {
            assert!(index.insert(
                p.clone(),
                test_key(None, &n.to_string()),
                &unit(n, 16),
                Features::of("x"),
                Duration::from_millis(1)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(index.search(&p, &unit(1, 16), 0.9, 4).is_empty(), "expired");
        assert_eq!(index.entries(), 0, "swept when searched");
        for n in 0..5 {
            assert!(index.insert(
                p.clone(),
                test_key(None, &n.to_string()),
                &unit(n, 16),
                Features::of("x"),
                Duration::from_secs(60)
            ));
        }
        assert!(!index.insert(
            p.clone(),
            test_key(None, "6"),
            &unit(6, 16),
            Features::of("x"),
            Duration::from_secs(60)
        ));
        assert_eq!(index.entries(), 5);
    }
}
