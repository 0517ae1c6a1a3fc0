//! In-process limit counters: sharded cells locked in a fixed order, evicted once back at rest.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use sluice_config::{LimitSpec, Metric, Window};

use crate::terms::{CellKey, Crossing, NS, Need, RateInfo, Refusal, Scope, Standing, merge, window_bounds};

const SHARDS: usize = 64;

#[derive(Debug)]
enum Cell {
    /// GCRA: theoretical arrival time, in ns since the epoch.
    Rate { tat: u64 },
    /// Calendar window: its bounds (unix seconds, computed when the window turns, not per
    /// request), the units used in it, and the alert thresholds (by index) already crossed.
    Quota {
        start: i64,
        end: i64,
        used: u64,
        alerted: u8,
    },
}

/// One reserved limit: its cell, its spec, the units reserved, and the quota window they were
/// reserved in.
type Item = (CellKey, Arc<Mutex<Cell>>, LimitSpec, u64, i64);

/// Reserved units, released or topped up at settlement.
#[derive(Debug)]
pub struct Reservation {
    /// Cell, limit, units reserved, and the quota window they were reserved in.
    items: Vec<Item>,
    tz: i32,
}

/// Moves a quota cell into the window holding `now_s`, starting it from zero if it is new.
fn roll(start: &mut i64, end: &mut i64, used: &mut u64, alerted: &mut u8, window: Window, now_s: i64, tz: i32) {
    if now_s >= *end || now_s < *start {
        let (s, e) = window_bounds(window, now_s, tz);
        if s != *start {
            *used = 0;
            *alerted = 0;
        }
        *start = s;
        *end = e;
    }
}

impl Cell {
    /// Whether the cell counts nothing any more: a fresh cell would decide every admission from
    /// `now_ns` on exactly as it does. A rate whose theoretical arrival time has passed has an
    /// empty bucket; a quota whose window has ended (or that never had one) starts the next from
    /// zero.
    fn at_rest(&self, now_ns: u64) -> bool {
        match self {
            Cell::Rate { tat } => *tat <= now_ns,
            Cell::Quota { end, .. } => (now_ns / NS) as i64 >= *end,
        }
    }
}

type Shard = HashMap<CellKey, Arc<Mutex<Cell>>>;

/// A shard whose map holds fewer than a quarter of what it has room for is shrunk, so a crowd
/// of users that has come and gone does not leave its tables behind (maps never shrink on their
/// own). Below this capacity a shard is left as it is.
const SHRINK_ABOVE: usize = 1024;

#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Mutex<Shard>>,
    /// Cells in all shards: added on insert, taken off on eviction.
    live: AtomicUsize,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            live: AtomicUsize::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Limiter {
    fn cell(&self, key: &CellKey, rate: bool) -> Arc<Mutex<Cell>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        lock(shard)
            .entry(key.clone())
            .or_insert_with(|| {
                self.live.fetch_add(1, Ordering::Relaxed);
                Arc::new(Mutex::new(if rate {
                    Cell::Rate { tat: 0 }
                } else {
                    Cell::Quota {
                        start: 0,
                        end: 0,
                        used: 0,
                        alerted: 0,
                    }
                }))
            })
            .clone()
    }

    /// Cells held now (live and at rest, until a sweep takes the latter away).
    pub fn cells(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Evicts the cells back at rest at `now_ns` (see `Cell::at_rest`) that no reservation
    /// holds, one shard at a time (each locked once, for one pass over its map); returns how
    /// many cells are left. A cell a reservation still holds is kept whatever its state, so a
    /// settlement never writes into a cell the map no longer has: only the map hands out cells,
    /// under the shard's lock, so a count of one there means nobody else can reach it. A cell
    /// locked at that moment is skipped, never waited for. Off the request path: admissions
    /// only ever wait for the one shard being swept.
    pub fn sweep(&self, now_ns: u64) -> usize {
        for shard in &self.shards {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, cell| {
                if Arc::strong_count(cell) > 1 {
                    return true;
                }
                match cell.try_lock() {
                    Ok(c) => !c.at_rest(now_ns),
                    Err(TryLockError::Poisoned(p)) => !p.into_inner().at_rest(now_ns),
                    Err(TryLockError::WouldBlock) => true,
                }
            });
            let left = map.len();
            if map.capacity() > SHRINK_ABOVE && left < map.capacity() / 4 {
                map.shrink_to(left * 2);
            }
            drop(map);
            self.live.fetch_sub(before - left, Ordering::Relaxed);
        }
        self.cells()
    }

    /// Reserves `need` against every limit in `applicable`, or refuses on the first that cannot
    /// take it (nothing is reserved then).
    pub fn admit(
        &self,
        applicable: &[(Scope, Arc<str>, LimitSpec)],
        need: &Need,
        now_ns: u64,
        tz: i32,
    ) -> Result<(Reservation, RateInfo), Refusal> {
        let mut items: Vec<Item> = applicable
            .iter()
            .filter(|(_, _, s)| need.of(s.metric) > 0 || s.metric == Metric::Requests)
            .map(|(scope, id, spec)| {
                let key = CellKey {
                    scope: *scope,
                    id: id.clone(),
                    metric: spec.metric,
                    window: spec.window,
                };
                let cell = self.cell(&key, spec.window.is_rate());
                (key, cell, *spec, need.of(spec.metric), 0)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
        let mut guards: Vec<MutexGuard<'_, Cell>> = items.iter().map(|(_, c, _, _, _)| lock(c)).collect();
        let now_s = (now_ns / NS) as i64;
        let mut info = RateInfo::default();
        // Check every limit first…
        for (i, (key, _, spec, n, _)) in items.iter().enumerate() {
            let (ok, standing, retry) = check(&mut guards[i], spec, *n, now_ns, now_s, tz);
            merge(&mut info, spec.metric, standing);
            if !ok {
                return Err(Refusal {
                    scope: key.scope,
                    spec: *spec,
                    retry_after_s: retry,
                    info,
                    unavailable: false,
                });
            }
        }
        // …then take from all of them.
        let mut info = RateInfo::default();
        let mut starts = Vec::with_capacity(items.len());
        for (i, (_, _, spec, n, _)) in items.iter().enumerate() {
            let (standing, start) = take(&mut guards[i], spec, *n, now_ns, now_s, tz);
            starts.push(start);
            merge(&mut info, spec.metric, standing);
        }
        drop(guards);
        for (item, start) in items.iter_mut().zip(starts) {
            item.4 = start;
        }
        Ok((Reservation { items, tz }, info))
    }
}

fn period_ns(spec: &LimitSpec) -> u64 {
    spec.window.seconds() * NS
}

/// (admitted?, standing, retry-after) without changing the cell.
fn check(cell: &mut Cell, spec: &LimitSpec, n: u64, now_ns: u64, now_s: i64, tz: i32) -> (bool, Standing, Option<u64>) {
    match cell {
        Cell::Rate { tat } => {
            if spec.amount == 0 {
                return (
                    false,
                    Standing {
                        limit: 0,
                        remaining: 0,
                        reset_s: 0.0,
                    },
                    None,
                );
            }
            let t = period_ns(spec) / spec.amount.max(1);
            let tau = t.saturating_mul(spec.burst);
            let base = (*tat).max(now_ns);
            let backlog = base - now_ns;
            let remaining = tau.saturating_sub(backlog) / t.max(1);
            let standing = Standing {
                limit: spec.amount,
                remaining,
                reset_s: backlog as f64 / 1e9,
            };
            let new_backlog = backlog.saturating_add(n.saturating_mul(t));
            if new_backlog <= tau {
                (true, standing, Some(0))
            } else if n.saturating_mul(t) > tau {
                (false, standing, None)
            } else {
                (false, standing, Some((new_backlog - tau).div_ceil(NS)))
            }
        }
        Cell::Quota {
            start,
            end,
            used,
            alerted,
        } => {
            roll(start, end, used, alerted, spec.window, now_s, tz);
            let (used_now, next) = (*used, *end);
            let standing = Standing {
                limit: spec.amount,
                remaining: spec.amount.saturating_sub(used_now),
                reset_s: (next - now_s).max(0) as f64,
            };
            if spec.soft || used_now.saturating_add(n) <= spec.amount {
                (true, standing, Some(0))
            } else if n > spec.amount {
                (false, standing, None)
            } else {
                (false, standing, Some((next - now_s).max(1) as u64))
            }
        }
    }
}

/// Takes `n` units; returns the standing and, for a quota, the window it was taken in.
fn take(cell: &mut Cell, spec: &LimitSpec, n: u64, now_ns: u64, now_s: i64, tz: i32) -> (Standing, i64) {
    match cell {
        Cell::Rate { tat } => {
            let t = period_ns(spec) / spec.amount.max(1);
            let base = (*tat).max(now_ns);
            *tat = base.saturating_add(n.saturating_mul(t));
            let backlog = *tat - now_ns;
            let tau = t.saturating_mul(spec.burst);
            let standing = Standing {
                limit: spec.amount,
                remaining: tau.saturating_sub(backlog) / t.max(1),
                reset_s: backlog as f64 / 1e9,
            };
            (standing, 0)
        }
        Cell::Quota {
            start,
            end,
            used,
            alerted,
        } => {
            roll(start, end, used, alerted, spec.window, now_s, tz);
            *used = used.saturating_add(n);
            let standing = Standing {
                limit: spec.amount,
                remaining: spec.amount.saturating_sub(*used),
                reset_s: (*end - now_s).max(0) as f64,
            };
            (standing, *start)
        }
    }
}

impl Reservation {
    /// Replaces what was reserved by what was used, in every cell, once; returns the budget
    /// thresholds (percent) this request's spend crossed, each once per window.
    pub fn settle(self, actual: &Need, now_ns: u64, thresholds: &[u8]) -> Vec<Crossing> {
        let now_s = (now_ns / NS) as i64;
        let mut crossings = Vec::new();
        for (key, cell, spec, reserved, reserved_in) in &self.items {
            let used = actual.of(spec.metric);
            let mut c = lock(cell);
            match &mut *c {
                Cell::Rate { tat } => {
                    let t = period_ns(spec) / spec.amount.max(1);
                    if used >= *reserved {
                        *tat = tat.saturating_add((used - reserved).saturating_mul(t));
                    } else {
                        *tat = tat.saturating_sub((reserved - used).saturating_mul(t));
                    }
                }
                Cell::Quota {
                    start,
                    end,
                    used: u,
                    alerted,
                } => {
                    roll(start, end, u, alerted, spec.window, now_s, self.tz);
                    let window_start = *start;
                    // A reservation made in a window that has since closed went with it.
                    if window_start == *reserved_in {
                        *u = u.saturating_sub(*reserved).saturating_add(used);
                        if spec.metric == Metric::Cost && spec.amount > 0 {
                            for (i, t) in thresholds.iter().enumerate().take(8) {
                                let bit = 1u8 << i;
                                let reached = u128::from(*u) * 100 >= u128::from(spec.amount) * u128::from(*t);
                                if reached && *alerted & bit == 0 {
                                    *alerted |= bit;
                                    crossings.push(Crossing {
                                        scope: key.scope,
                                        id: key.id.clone(),
                                        spec: *spec,
                                        used: *u,
                                        threshold: *t,
                                        window_start,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        crossings
    }
}

#[cfg(test)]
mod tests;
