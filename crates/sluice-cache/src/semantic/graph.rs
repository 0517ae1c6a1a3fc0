//! The graph a large partition is searched through: a hierarchical navigable small world
//! (hnsw_rs) over the partition's vectors, each point named by its slot's id.
//!
//! hnsw_rs cannot delete a point, so a removed slot stays in the graph as a tombstone: a search
//! asks for several times the neighbours wanted, and the partition drops those whose slot is
//! gone (and reads every similarity again from the stored vector). Once tombstones are more than
//! a quarter of a graph's points, a new graph is built from the live slots and swapped in.
//!
//! [`GraphState`] is the bookkeeping: the graph searches go through, which slots it holds, its
//! tombstones, the build in progress and what the partition's worker ([`super::worker`]) is to
//! do next. None of it waits: the worker does the slow part off the partition's lock.

use std::ops::Range;
use std::sync::Arc;

use hnsw_rs::prelude::{Distance, Hnsw};

use super::vector::dot;

/// Links per point and layer (the bottom layer keeps twice as many): the graph's `M`. hnsw_rs
/// ends the process above 256.
const LINKS: usize = 16;
/// Candidates a point's links are chosen from when it is added.
const EF_CONSTRUCTION: usize = 100;
/// Layers at most (hnsw_rs keeps 16 at most).
const LAYERS: usize = 16;
/// Candidates a search explores in the bottom layer, at least. On random vectors (the hardest
/// case: real embeddings cluster) at 100 000 points, 64 finds a query's nearest stored prompt
/// (at similarity 0.9) 86% of the time, 128 98.5%, 256 99.5%, each doubling the search's cost.
const EF_SEARCH: usize = 128;
/// Slots read (under the partition's read lock) and added per step of a build or a catch-up.
pub(super) const STEP: usize = 256;

const _: () = assert!(LINKS >= 2 && LINKS <= 256, "hnsw_rs exits the process above 256 links");
const _: () = assert!(LAYERS >= 1 && LAYERS <= 16, "hnsw_rs keeps 16 layers at most");
const _: () = assert!(EF_CONSTRUCTION >= LINKS && EF_SEARCH >= 1 && STEP >= 1);

/// How many neighbours to ask the graph for when `k` are wanted: enough that tombstones (a
/// quarter of the points at most) and neighbours below the threshold do not starve the answer.
pub(super) fn asked(k: usize) -> usize {
    k.saturating_mul(4).max(16)
}

/// Distance between unit vectors: one minus their cosine, never negative (hnsw_rs asserts it)
/// and never NaN (hnsw_rs panics on one; `max` takes the number over a NaN).
#[derive(Debug, Clone, Copy, Default)]
struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// An hnsw_rs graph of vectors of one dimension, each point named by a slot id. Points are
/// added while others search.
pub(super) struct Graph {
    hnsw: Hnsw<'static, f32, UnitDot>,
    dim: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("dim", &self.dim)
            .field("points", &self.len())
            .finish()
    }
}

impl Graph {
    /// An empty graph, sized for about `expected` points.
    pub(super) fn new(dim: usize, expected: usize) -> Graph {
        Graph {
            hnsw: Hnsw::new(LINKS, expected, LAYERS, EF_CONSTRUCTION, UnitDot),
            dim,
        }
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    pub(super) fn add(&self, id: usize, vector: &[f32]) {
        self.hnsw.insert_slice((vector, id));
    }

    /// The ids of about the `n` points nearest `vector`, nearest first.
    pub(super) fn nearest(&self, vector: &[f32], n: usize) -> impl Iterator<Item = usize> {
        // hnsw_rs allocates for `n` (and `ef`) up front: no more than there are points.
        let n = n.min(self.len()).max(1);
        self.hnsw
            .search(vector, n, EF_SEARCH.max(n))
            .into_iter()
            .map(|found| found.d_id)
    }

    /// Points, tombstones included.
    fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }
}

/// The graph searches go through.
#[derive(Debug)]
struct Current {
    graph: Arc<Graph>,
    /// Every slot with a lower id still held is in the graph; those from here on are not.
    taken_below: usize,
    /// Points whose slot is gone.
    dead: usize,
}

/// A graph being built to replace the current one (or to be the first).
#[derive(Debug)]
struct Build {
    /// It takes the slots held when it began: all below this id.
    upto: usize,
    /// The ids below this have been added (or were gone when their turn came).
    done_below: usize,
    /// Points added whose slot is gone since.
    dead: usize,
}

/// What a partition's graph needs done next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// The partition is small again (or holds vectors of another dimension): drop the graph.
    Drop,
    /// A graph over every slot: the first, or one without tombstones.
    Build,
    /// The slots inserted since the graph last took some in.
    CatchUp,
}

/// A job for the partition's worker, to be done off the lock.
#[derive(Debug)]
pub(super) enum Job {
    /// Free this graph.
    Drop(Arc<Graph>),
    /// Build a graph over the slots held now (all of them: their ids are below the next).
    Build,
    /// Add the slots with ids in this range to this graph, the current one.
    CatchUp(Arc<Graph>, Range<usize>),
    Idle,
}

/// A partition's graph, the one being built, and whether a worker looks after them.
#[derive(Debug, Default)]
pub(super) struct GraphState {
    current: Option<Current>,
    build: Option<Build>,
    /// A worker holds the partition's place (only it changes `current` and `build`).
    worker: bool,
}

impl GraphState {
    /// The graph to search and the id from which slots are not in it yet, when the partition
    /// (`len` slots of `dim`) is searched through one.
    pub(super) fn searchable(&self, len: usize, dim: usize, graph_above: usize) -> Option<(&Graph, usize)> {
        let c = self.current.as_ref().filter(|c| c.graph.dim == dim)?;
        (len > graph_above).then_some((c.graph.as_ref(), c.taken_below))
    }

    /// Notes that the slot with `id` is gone: a tombstone wherever a graph holds it.
    pub(super) fn removed(&mut self, id: usize) {
        if let Some(c) = &mut self.current
            && id < c.taken_below
        {
            c.dead += 1;
        }
        if let Some(b) = &mut self.build
            && id < b.done_below
        {
            b.dead += 1;
        }
    }

    /// What the graph of a partition (`len` slots of `dim`, the next id `next_id`) needs done
    /// first, if anything; a catch-up only once `lag` slots wait for it.
    ///
    /// A graph is searched while the partition has more than `graph_above` slots. Below that
    /// it is kept as it is (no catch-up, no rebuild: it does not grow) for the partition to
    /// grow back into, until the partition is down to half the threshold or a quarter of its
    /// points are tombstones.
    pub(super) fn need(&self, len: usize, dim: usize, next_id: usize, graph_above: usize, lag: usize) -> Option<Need> {
        let searched = len > graph_above;
        match &self.current {
            Some(c) if len <= graph_above / 2 || c.graph.dim != dim => Some(Need::Drop),
            Some(c) if c.dead.saturating_mul(4) > c.graph.len() => {
                Some(if searched { Need::Build } else { Need::Drop })
            }
            Some(c) if searched && next_id.saturating_sub(c.taken_below) >= lag.max(1) => Some(Need::CatchUp),
            Some(_) => None,
            None if searched => Some(Need::Build),
            None => None,
        }
    }

    /// Starts on `need`, for a partition whose next id is `next_id`.
    pub(super) fn start(&mut self, need: Need, next_id: usize) -> Job {
        match need {
            Need::Drop => {
                self.build = None;
                self.current.take().map_or(Job::Idle, |c| Job::Drop(c.graph))
            }
            Need::Build => {
                self.build = Some(Build {
                    upto: next_id,
                    done_below: 0,
                    dead: 0,
                });
                Job::Build
            }
            Need::CatchUp => match &self.current {
                Some(c) => Job::CatchUp(c.graph.clone(), c.taken_below..next_id.min(c.taken_below + STEP)),
                None => Job::Idle,
            },
        }
    }

    /// Notes a build's progress: every id below `done_below` added (or gone), `dead` of those
    /// added gone since.
    pub(super) fn built(&mut self, done_below: usize, dead: usize) {
        if let Some(b) = &mut self.build {
            b.done_below = b.done_below.max(done_below);
            b.dead += dead;
        }
    }

    /// Gives a build up (the partition is small again).
    pub(super) fn abandon_build(&mut self) {
        self.build = None;
    }

    /// Makes the finished build the graph searches go through; the graph no longer needed
    /// (the old one), to be freed off the lock.
    pub(super) fn finish_build(&mut self, graph: Graph) -> Option<Arc<Graph>> {
        let graph = Arc::new(graph);
        let Some(b) = self.build.take() else {
            return Some(graph);
        };
        let old = self.current.replace(Current {
            graph,
            taken_below: b.upto,
            dead: b.dead,
        });
        old.map(|c| c.graph)
    }

    /// Notes a catch-up: `graph` (if still the current one) holds every slot below `end`;
    /// `dead` of those it added are gone since.
    pub(super) fn caught_up(&mut self, graph: &Arc<Graph>, end: usize, dead: usize) {
        if let Some(c) = &mut self.current
            && Arc::ptr_eq(&c.graph, graph)
        {
            c.taken_below = c.taken_below.max(end);
            c.dead += dead;
        }
    }

    /// Takes the worker's place, unless a worker holds it.
    pub(super) fn claim(&mut self) -> bool {
        !std::mem::replace(&mut self.worker, true)
    }

    pub(super) fn release(&mut self) {
        self.worker = false;
    }

    /// Points in the graph searches go through, if there is one.
    #[cfg(test)]
    pub(super) fn points(&self) -> Option<usize> {
        self.current.as_ref().map(|c| c.graph.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    //! Partitions past the threshold (64 here), through [`SemanticIndex`]: what the graph
    //! finds, what it must never return, and how it follows the partition's changes.
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::key::{CacheKey, test_key};
    use crate::semantic::{Features, SemanticIndex, dot};

    const DIM: usize = 384;
    const ABOVE: usize = 64;
    const HOUR: Duration = Duration::from_secs(3600);

    /// A random unit vector from a seed.
    fn unit(seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    }

    fn entry(n: u64) -> CacheKey {
        test_key(Some("t"), &n.to_string())
    }

    fn partition() -> CacheKey {
        test_key(Some("t"), "partition")
    }

    /// Stores the vectors of `seeds` in the partition, each for `life`.
    fn fill(index: &SemanticIndex, seeds: impl Iterator<Item = u64>, life: Duration) {
        for n in seeds {
            assert!(index.insert(partition(), entry(n), &unit(n), Features::of("x"), life));
        }
    }

    /// Removes the slots of `seeds`; how many.
    fn purge(index: &SemanticIndex, seeds: impl Iterator<Item = u64>) -> usize {
        let gone: HashSet<CacheKey> = seeds.map(entry).collect();
        index.purge(|k| gone.contains(k))
    }

    /// Whether a search for `n`'s own vector finds `n` first, with the exact similarity.
    fn finds(index: &SemanticIndex, n: u64) -> bool {
        let v = unit(n);
        let found = index.search(&partition(), &v, 0.99, 4);
        found
            .first()
            .is_some_and(|c| c.entry == entry(n) && c.similarity.to_bits() == dot(&v, &v).to_bits())
    }

    /// Whether a search for `n`'s own vector returns `n` at all (it would come first).
    fn returns(index: &SemanticIndex, n: u64) -> bool {
        index
            .search(&partition(), &unit(n), -1.0, 4)
            .iter()
            .any(|c| c.entry == entry(n))
    }

    #[test]
    fn a_large_partition_finds_every_stored_vector_through_its_graph_with_its_exact_similarity() {
        let index = SemanticIndex::new(10_000, ABOVE);
        fill(&index, 0..2000, HOUR);
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(2000), "built, and caught up");
        let missed: Vec<u64> = (0..2000).step_by(10).filter(|&n| !finds(&index, n)).collect();
        assert!(missed.is_empty(), "missed {missed:?}");
        // Near (not equal to) a stored vector: each similarity is the exact dot, in order.
        let mut q = unit(7);
        q.iter_mut().zip(unit(99_999)).for_each(|(a, b)| *a += 0.3 * b);
        let found = index.search(&partition(), &q, 0.0, 8);
        assert_eq!(found[0].entry, entry(7));
        assert!(found.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        for c in found {
            let n = (0..2000).find(|&n| entry(n) == c.entry).unwrap();
            assert_eq!(c.similarity.to_bits(), dot(&unit(n), &q).to_bits());
        }
        // The threshold applies to the exact similarity.
        let above = dot(&unit(7), &q) + 0.001;
        assert!(index.search(&partition(), &q, above, 8).is_empty());
    }

    #[test]
    fn purged_renewed_and_expired_slots_never_come_back() {
        let index = SemanticIndex::new(10_000, ABOVE);
        fill(&index, 0..600, HOUR);
        fill(&index, 1000..1200, Duration::from_millis(50));
        index.settle();
        // The short-lived 200 may have expired already on a slow machine (and been left out).
        let points = index.graph_points(&partition()).unwrap_or(0);
        assert!((600..=800).contains(&points), "{points}");
        // Renewed with another vector: found by the new one only.
        for n in 0..20 {
            assert!(index.insert(partition(), entry(n), &unit(n + 50_000), Features::of("x"), HOUR));
        }
        assert_eq!(purge(&index, 20..100), 80);
        std::thread::sleep(Duration::from_millis(60));
        for n in 0..20 {
            assert!(!returns(&index, n), "the old vector of renewed {n}");
            let found = index.search(&partition(), &unit(n + 50_000), 0.99, 4);
            assert_eq!(found[0].entry, entry(n));
        }
        for n in (20..100).chain(1000..1200) {
            assert!(!returns(&index, n), "{n} is gone");
        }
        assert!((100..600).step_by(3).all(|n| finds(&index, n)));
        // Whatever the worker did meanwhile (a rebuild, a catch-up), the same holds.
        index.settle();
        assert!((20..100).chain(1000..1200).all(|n| !returns(&index, n)));
        assert!((100..600).step_by(3).all(|n| finds(&index, n)));
    }

    #[test]
    fn a_rebuild_after_many_removals_keeps_finding_the_live_slots() {
        let index = SemanticIndex::new(10_000, ABOVE);
        fill(&index, 0..800, HOUR);
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(800));
        let gone = |n: &u64| !n.is_multiple_of(4);
        assert_eq!(purge(&index, (0..800).filter(gone)), 600);
        // Searched with the tombstones in the graph, then after the rebuild.
        for settled in [false, true] {
            if settled {
                index.settle();
                assert_eq!(
                    index.graph_points(&partition()),
                    Some(200),
                    "rebuilt from the live slots"
                );
            }
            for n in 0..800 {
                if gone(&n) {
                    assert!(!returns(&index, n), "{n} is gone");
                } else {
                    assert!(finds(&index, n), "{n} is live");
                }
            }
        }
        // Inserts after the rebuild go into the new graph.
        fill(&index, 5000..5100, HOUR);
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(300));
        assert!((5000..5100).all(|n| finds(&index, n)));
    }

    #[test]
    fn a_partition_falling_back_below_the_threshold_is_searched_exactly() {
        let index = SemanticIndex::new(10_000, ABOVE);
        fill(&index, 0..300, HOUR);
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(300));
        // 50 left, at most the threshold: brute force, and the graph (mostly tombstones) goes.
        assert_eq!(purge(&index, 50..300), 250);
        assert!((0..50).all(|n| finds(&index, n)));
        assert!((50..300).all(|n| !returns(&index, n)));
        index.settle();
        assert_eq!(index.graph_points(&partition()), None);
        assert!((0..50).all(|n| finds(&index, n)));
        // Built again past the threshold; kept through a short dip below it (and searched
        // exactly meanwhile), caught up once past it again.
        fill(&index, 1000..1030, HOUR);
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(80));
        assert_eq!(purge(&index, 1000..1020), 20);
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(80), "kept as it was");
        assert!((0..50).chain(1020..1030).all(|n| finds(&index, n)));
        fill(&index, 2000..2010, HOUR);
        assert!((0..50).chain(1020..1030).chain(2000..2010).all(|n| finds(&index, n)));
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(90));
        // Half the threshold: dropped.
        assert_eq!(purge(&index, 10..50), 40);
        index.settle();
        assert_eq!(index.graph_points(&partition()), None);
        assert!((0..10).chain(1020..1030).chain(2000..2010).all(|n| finds(&index, n)));
    }

    #[test]
    fn searches_while_the_graph_is_built_find_every_slot_stored_before_them() {
        let index = Arc::new(SemanticIndex::new(10_000, ABOVE));
        let writer = {
            let index = index.clone();
            std::thread::spawn(move || fill(&index, 0..600, HOUR))
        };
        // Whatever the worker is at (building, catching up, not started), a stored vector is
        // found: through the graph, or read exactly.
        let mut checked = 0;
        while !writer.is_finished() || checked < 200 {
            let stored = index.entries() as u64;
            if stored > 0 {
                assert!(finds(&index, checked % stored), "{checked} of {stored}");
                checked += 1;
            }
        }
        writer.join().unwrap();
        index.settle();
        assert_eq!(index.graph_points(&partition()), Some(600));
        assert!((0..600).step_by(3).all(|n| finds(&index, n)));
    }
}
