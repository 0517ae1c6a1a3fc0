//! A large partition's worker: the one thread that does its graph's work, so that neither an
//! insert (on an async worker) nor a search (on the embedder's threads) ever waits for it.
//!
//! It builds the graph once the partition grows past `graph_above` slots, adds the slots
//! inserted since (an insert only stores its slot; a search reads the slots the graph does not
//! hold yet exactly), builds a new one once tombstones are more than a quarter of the points,
//! and drops it when the partition is small again ([`super::graph::GraphState::need`]). It
//! reads slots a few hundred at a time under the partition's read lock, adds them to the graph
//! with no lock held, and takes the write lock only to note its progress and to swap a finished
//! graph in; inserts made during a build are caught up after the swap.
//!
//! The worker holds its partition weakly and stops when the partition is gone, so a graph never
//! outlives its partition by more than the step in progress. It starts when a change leaves its
//! graph work to do and ends when there is none; at most one runs per partition.

use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard, Weak};
use std::time::Duration;

use super::graph::{Graph, Job, Need, STEP};
use super::partition::Partition;

/// Slots inserted and not yet in the graph before a worker is started for them (a search reads
/// them exactly meanwhile): an insert does not start a thread each time.
const WAKE_LAG: usize = 32;

/// What `p`'s graph needs done first; a catch-up only once `lag` slots wait for it.
fn need(p: &Partition, graph_above: usize, lag: usize) -> Option<Need> {
    p.graph.need(p.len(), p.dim(), p.next_id(), graph_above, lag)
}

/// After a change to a partition (`p`, locked for writing): starts its worker if its graph
/// needs work and no worker is at it. Releases the lock.
pub(super) fn maintain(part: &Arc<RwLock<Partition>>, mut p: RwLockWriteGuard<'_, Partition>, graph_above: usize) {
    if need(&p, graph_above, WAKE_LAG).is_none() || !p.graph.claim() {
        return;
    }
    drop(p);
    let claim = Claim::new(Arc::downgrade(part));
    // Should the thread not start, the claim is dropped with its closure (and released): the
    // next change tries again.
    let _started = std::thread::Builder::new()
        .name("sluice-semantic-graph".to_owned())
        .spawn(move || work(claim, graph_above));
}

/// Does the graph's work on this thread until there is none left, after any worker at it.
pub(super) fn settle(part: &Arc<RwLock<Partition>>, graph_above: usize) {
    loop {
        let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
        if p.graph.claim() {
            if need(&p, graph_above, 1).is_none() {
                p.graph.release();
                return;
            }
            drop(p);
            work(Claim::new(Arc::downgrade(part)), graph_above);
        } else {
            drop(p);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A worker's place in its partition: released when its work is done, or however else the
/// worker stops (its partition gone, its thread not started, a panic).
struct Claim {
    part: Weak<RwLock<Partition>>,
    held: bool,
}

impl Claim {
    fn new(part: Weak<RwLock<Partition>>) -> Claim {
        Claim { part, held: true }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.held
            && let Some(part) = self.part.upgrade()
        {
            part.write().unwrap_or_else(PoisonError::into_inner).graph.release();
        }
    }
}

/// One job after another until none is needed (or the partition is gone).
fn work(mut claim: Claim, graph_above: usize) {
    loop {
        let (job, ids) = {
            let Some(part) = claim.part.upgrade() else { return };
            let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
            let Some(need) = need(&p, graph_above, 1) else {
                // Released with the decision, under the lock: a change made after it starts
                // a worker of its own.
                p.graph.release();
                claim.held = false;
                return;
            };
            let next_id = p.next_id();
            match p.graph.start(need, next_id) {
                Job::Build => (Job::Build, p.ids()),
                job => (job, Vec::new()),
            }
        };
        let went = match job {
            Job::Drop(graph) => {
                // A large graph takes a while to free: off the lock.
                drop(graph);
                Some(())
            }
            Job::Build => build(&claim.part, ids, graph_above),
            Job::CatchUp(graph, ids) => catch_up(&claim.part, &graph, ids),
            Job::Idle => Some(()),
        };
        if went.is_none() {
            return;
        }
    }
}

/// Builds a graph over the slots with `ids` still held when their turn comes, and swaps it
/// in; `None` when the partition is gone.
fn build(part: &Weak<RwLock<Partition>>, mut ids: Vec<usize>, graph_above: usize) -> Option<()> {
    ids.sort_unstable();
    let dim = read(part, Partition::dim)?;
    let graph = Graph::new(dim, ids.len());
    for step in ids.chunks(STEP) {
        let added = add(part, &graph, step)?;
        let part = part.upgrade()?;
        let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
        if p.len() <= graph_above / 2 {
            // Small again: the next job drops the current graph, and this one is not needed.
            p.graph.abandon_build();
            return Some(());
        }
        let dead = added.iter().filter(|&&id| !p.holds(id)).count();
        let done_below = step.last().map_or(0, |&last| last + 1);
        p.graph.built(done_below, dead);
    }
    let unneeded = {
        let part = part.upgrade()?;
        let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
        p.graph.finish_build(graph)
    };
    drop(unneeded);
    Some(())
}

/// Adds the slots with ids in `ids` to `graph`, the current one; `None` when the partition is
/// gone.
fn catch_up(part: &Weak<RwLock<Partition>>, graph: &Arc<Graph>, ids: Range<usize>) -> Option<()> {
    let end = ids.end;
    let added = add(part, graph, &ids.collect::<Vec<usize>>())?;
    let part = part.upgrade()?;
    let mut p = part.write().unwrap_or_else(PoisonError::into_inner);
    let dead = added.iter().filter(|&&id| !p.holds(id)).count();
    p.graph.caught_up(graph, end, dead);
    Some(())
}

/// Copies the vectors of the slots with `ids` still held (under the read lock), then adds them
/// to `graph` (with no lock held); the ids added, or `None` when the partition is gone.
fn add(part: &Weak<RwLock<Partition>>, graph: &Graph, ids: &[usize]) -> Option<Vec<usize>> {
    let dim = graph.dim();
    let mut rows = Vec::with_capacity(ids.len() * dim);
    let added = read(part, |p| {
        ids.iter()
            .filter_map(|&id| {
                let v = p.vector(id).filter(|v| v.len() == dim)?;
                rows.extend_from_slice(v);
                Some(id)
            })
            .collect::<Vec<usize>>()
    })?;
    for (&id, row) in added.iter().zip(rows.chunks_exact(dim.max(1))) {
        graph.add(id, row);
    }
    Some(added)
}

/// `f` of the partition, under its read lock; `None` when it is gone.
fn read<T>(part: &Weak<RwLock<Partition>>, f: impl FnOnce(&Partition) -> T) -> Option<T> {
    let part = part.upgrade()?;
    let p = part.read().unwrap_or_else(PoisonError::into_inner);
    Some(f(&p))
}
