//! A route's concurrency limit with a bounded priority queue in front.
//!
//! At most `max_concurrency` requests of the route run at once. Others wait: highest priority
//! first, and within a priority in turn by tenant (weighted: a tenant of weight 3 takes three
//! turns to another's one), so one tenant's flood cannot starve the rest.
//! A full queue turns away a lowest-priority waiter (the newest of the tenant with the most
//! waiting) for a higher-priority newcomer, or the newcomer if none is lower. A waiter gives up
//! at the queue timeout or its deadline. Each route's queue is live state, kept across reloads;
//! the limits come from the current config.
//!
//! The lock is the route's own, taken only by routes with a queue, for a few list operations.
//!
//! A place is always owned by a [`Permit`]: a release hands the permit itself to the next
//! waiter, so a waiter that leaves after the handover (its client gone, a timeout) drops the
//! permit and the place passes on; a waiter that leaves while queued leaves the queue at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_config::QueueConfig;
use tokio::sync::oneshot;

/// Why a request did not get a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// The queue was full of requests at least as important.
    Full,
    /// A more important request took its place in a full queue.
    Displaced,
    /// It waited as long as it may.
    Timeout,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tx: oneshot::Sender<Permit>,
}

/// A tenant's waiters at one priority, in order, and the turns it has had in this round.
#[derive(Debug)]
struct Line {
    tenant: Arc<str>,
    weight: u32,
    served: u32,
    waiters: VecDeque<Waiter>,
}

/// One priority level: tenants in turn, each with its waiters in order.
#[derive(Debug, Default)]
struct Level {
    tenants: VecDeque<Line>,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    queued: usize,
    /// By priority, highest last (so `last_key_value` is the most important).
    levels: BTreeMap<u8, Level>,
    next_id: u64,
}

#[derive(Debug, Default)]
pub struct RouteQueue {
    state: Mutex<State>,
}

/// A place among the route's running requests; dropping it hands the place to the next waiter.
#[derive(Debug)]
pub struct Permit {
    /// `None` once defused: a permit no waiter took back, whose place the release loop keeps.
    queue: Option<Arc<RouteQueue>>,
    /// How long the request waited for its place.
    pub waited: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.release();
        }
    }
}

/// A waiter's slot in the queue while its `acquire` is pending: if the future is dropped there
/// (the client left), the slot goes at once rather than when a release would find it.
struct Queued<'a> {
    queue: &'a RouteQueue,
    id: u64,
}

impl Queued<'_> {
    /// The waiter was taken out of the queue already (handed a place, or displaced).
    fn taken_out(self) {
        std::mem::forget(self); // a reference and an id: nothing to free
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.queue.remove(self.id);
    }
}

impl RouteQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// Places taken now: requests running, and places handed to a waiter that has yet to look.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Waits for a place, or is turned away.
    pub async fn acquire(
        self: &Arc<Self>,
        cfg: &QueueConfig,
        priority: u8,
        (tenant, weight): (&Arc<str>, u32),
        deadline: Instant,
    ) -> Result<Permit, Turned> {
        let started = Instant::now();
        let (id, rx) = {
            let mut s = self.lock();
            if s.running < cfg.max_concurrency && s.queued == 0 {
                s.running += 1;
                return Ok(Permit {
                    queue: Some(self.clone()),
                    waited: Duration::ZERO,
                });
            }
            if s.queued >= cfg.max_queued && !displace_lower(&mut s, priority) {
                return Err(Turned::Full);
            }
            s.next_id += 1;
            let id = s.next_id;
            let (tx, rx) = oneshot::channel();
            let level = s.levels.entry(priority).or_default();
            match level.tenants.iter_mut().find(|l| &l.tenant == tenant) {
                Some(line) => line.waiters.push_back(Waiter { id, tx }),
                None => level.tenants.push_back(Line {
                    tenant: tenant.clone(),
                    weight: weight.max(1),
                    served: 0,
                    waiters: VecDeque::from([Waiter { id, tx }]),
                }),
            }
            s.queued += 1;
            (id, rx)
        };
        // If this future is dropped while it waits (the client left), `queued` takes the waiter
        // out of the queue and `rx` drops a permit already handed over, which passes the place
        // on; neither holds the lock while the other runs.
        let mut rx = rx;
        let queued = Queued { queue: self, id };
        let wait = cfg.timeout.min(deadline.saturating_duration_since(started));
        let got = match tokio::time::timeout(wait, &mut rx).await {
            Ok(got) => {
                queued.taken_out();
                got.map_err(|_| Turned::Displaced)
            }
            Err(_) => {
                // Out of time: leave the queue — unless a place was handed over meanwhile.
                drop(queued);
                rx.try_recv().map_err(|_| Turned::Timeout)
            }
        };
        got.map(|mut permit| {
            permit.waited = started.elapsed();
            permit
        })
    }

    /// Takes waiter `id` out of the queue, if it is still there.
    fn remove(&self, id: u64) {
        let mut s = self.lock();
        let mut found = false;
        for level in s.levels.values_mut() {
            for line in &mut level.tenants {
                if let Some(at) = line.waiters.iter().position(|w| w.id == id) {
                    line.waiters.remove(at);
                    found = true;
                }
            }
            level.tenants.retain(|l| !l.waiters.is_empty());
        }
        s.levels.retain(|_, l| !l.tenants.is_empty());
        if found {
            s.queued -= 1;
        }
    }

    /// A running request finished: the most important waiter (tenants in weighted turn) takes
    /// its place — the permit itself, so the place passes on even if that waiter never looks.
    fn release(self: &Arc<Self>) {
        let mut s = self.lock();
        let mut permit = Permit {
            queue: Some(self.clone()),
            waited: Duration::ZERO,
        };
        while let Some(w) = next_waiter(&mut s) {
            match w.tx.send(permit) {
                Ok(()) => return,           // the place passes on: `running` is unchanged
                Err(back) => permit = back, // that waiter has left; try the next
            }
        }
        // Nobody waits: the place is free. Defused, so dropping it does not release again.
        permit.queue = None;
        s.running -= 1;
    }
}

/// Takes the most important waiter out of the queue: the highest priority, tenants in weighted
/// turn within it.
fn next_waiter(s: &mut State) -> Option<Waiter> {
    loop {
        let mut entry = s.levels.last_entry()?;
        let level = entry.get_mut();
        let Some(mut line) = level.tenants.pop_front() else {
            entry.remove();
            continue;
        };
        let next = line.waiters.pop_front();
        line.served += 1;
        if line.served < line.weight && !line.waiters.is_empty() {
            level.tenants.push_front(line);
        } else if !line.waiters.is_empty() {
            line.served = 0;
            level.tenants.push_back(line);
        }
        if level.tenants.is_empty() {
            entry.remove();
        }
        if let Some(w) = next {
            s.queued -= 1;
            return Some(w);
        }
    }
}

/// Turns away a waiter of the lowest priority below `priority` — the newest of the tenant with
/// the most waiting there, so a flood pays for itself; `false` if there is none.
fn displace_lower(s: &mut State, priority: u8) -> bool {
    let Some(mut entry) = s.levels.first_entry() else {
        return false;
    };
    if *entry.key() >= priority {
        return false;
    }
    let level = entry.get_mut();
    if let Some(line) = level.tenants.iter_mut().max_by_key(|l| l.waiters.len()) {
        line.waiters.pop_back(); // dropping its sender tells it
    }
    level.tenants.retain(|l| !l.waiters.is_empty());
    if level.tenants.is_empty() {
        entry.remove();
    }
    s.queued -= 1;
    true
}

#[cfg(test)]
mod tests;
