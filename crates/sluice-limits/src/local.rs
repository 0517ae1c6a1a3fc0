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
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};
    use proptest::prelude::*;

    fn spec(metric: Metric, window: Window, amount: u64, burst: u64) -> LimitSpec {
        LimitSpec {
            metric,
            window,
            amount,
            burst,
            soft: false,
            on_outage: None,
        }
    }

    fn one(s: LimitSpec) -> Vec<(Scope, Arc<str>, LimitSpec)> {
        vec![(Scope::Key, Arc::from("k"), s)]
    }

    const REQ: Need = Need {
        requests: 1,
        input_tokens: 0,
        output_tokens: 0,
        cost: 0,
    };

    #[test]
    fn a_rate_admits_its_burst_then_one_per_interval() {
        let l = Limiter::default();
        let a = one(spec(Metric::Requests, Window::Minute, 60, 5));
        let t0 = 1_000_000 * NS;
        for _ in 0..5 {
            assert!(l.admit(&a, &REQ, t0, 0).is_ok());
        }
        let refused = l.admit(&a, &REQ, t0, 0).unwrap_err();
        assert_eq!(refused.retry_after_s, Some(1));
        assert!(l.admit(&a, &REQ, t0 + NS, 0).is_ok(), "one more after one interval");
    }

    #[test]
    fn quotas_reset_with_the_calendar_in_the_time_zone() {
        let l = Limiter::default();
        let a = one(spec(Metric::Requests, Window::Day, 2, 2));
        // 2026-11-22 23:30 at +02:00 is 21:30 UTC.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 22, 21, 30, 0)
            .unwrap()
            .timestamp() as u64
            * NS;
        let tz = 7200;
        assert!(l.admit(&a, &REQ, t, tz).is_ok());
        assert!(l.admit(&a, &REQ, t, tz).is_ok());
        let r = l.admit(&a, &REQ, t, tz).unwrap_err();
        assert_eq!(r.retry_after_s, Some(1800), "local midnight is 30 minutes away");
        assert!(l.admit(&a, &REQ, t + 1800 * NS, tz).is_ok());
        let (s, n) = window_bounds(Window::Month, 1_796_000_000, 0);
        assert_eq!(chrono::Utc.timestamp_opt(s, 0).unwrap().day(), 1);
        assert_eq!(chrono::Utc.timestamp_opt(n, 0).unwrap().day(), 1);
    }

    #[test]
    fn all_or_nothing_and_settlement_releases_the_rest() {
        let l = Limiter::default();
        let both = vec![
            (
                Scope::Key,
                Arc::<str>::from("k"),
                spec(Metric::Tokens, Window::Day, 1000, 1000),
            ),
            (
                Scope::Team,
                Arc::<str>::from("t"),
                spec(Metric::Tokens, Window::Day, 300, 300),
            ),
        ];
        let t = 2_000_000 * NS;
        let big = Need {
            requests: 1,
            input_tokens: 200,
            output_tokens: 200,
            cost: 0,
        };
        // The team's 300 refuses 400; the key's cell must not have been charged.
        assert_eq!(l.admit(&both, &big, t, 0).unwrap_err().scope, Scope::Team);
        let small = Need {
            requests: 1,
            input_tokens: 100,
            output_tokens: 150,
            cost: 0,
        };
        let (res, info) = l.admit(&both, &small, t, 0).unwrap();
        assert_eq!(info.tokens.unwrap().remaining, 50);
        // The answer used 60 tokens: 190 go back.
        res.settle(
            &Need {
                requests: 1,
                input_tokens: 40,
                output_tokens: 20,
                cost: 0,
            },
            t,
            &[],
        );
        let (_, info) = l
            .admit(
                &both,
                &Need {
                    requests: 1,
                    input_tokens: 1,
                    output_tokens: 0,
                    cost: 0,
                },
                t,
                0,
            )
            .unwrap();
        assert_eq!(info.tokens.unwrap().remaining, 300 - 60 - 1);
    }

    #[test]
    fn a_rate_cell_is_evicted_once_its_arrival_time_has_passed_and_not_before() {
        let l = Limiter::default();
        // 60 a minute: one request puts the theoretical arrival time 1 s ahead.
        let a = one(spec(Metric::Requests, Window::Minute, 60, 5));
        let t0 = 1_000_000 * NS;
        let (r, _) = l.admit(&a, &REQ, t0, 0).unwrap();
        r.settle(&REQ, t0, &[]);
        assert_eq!(l.cells(), 1);
        for (at, left) in [(t0, 1), (t0 + NS - 1, 1), (t0 + NS, 0)] {
            assert_eq!(l.sweep(at), left, "swept at t0 + {} ns", at - t0);
            assert_eq!(l.cells(), left);
        }
    }

    #[test]
    fn a_quota_cell_is_evicted_at_its_window_end_and_not_before() {
        let l = Limiter::default();
        let a = one(spec(Metric::Requests, Window::Day, 10, 10));
        let noon = 1_800_000_000 - 1_800_000_000 % 86_400 + 43_200;
        let (r, _) = l.admit(&a, &REQ, noon as u64 * NS, 0).unwrap();
        r.settle(&REQ, noon as u64 * NS, &[]);
        let midnight = (noon + 43_200) as u64 * NS;
        for (at, left) in [(midnight - 12 * 3600 * NS, 1), (midnight - 1, 1), (midnight, 0)] {
            assert_eq!(l.sweep(at), left, "swept {} s before midnight", (midnight - at) / NS);
        }
    }

    #[test]
    fn a_cell_a_reservation_holds_is_kept_and_its_settlement_still_counts() {
        let l = Limiter::default();
        let a = one(spec(Metric::Tokens, Window::Second, 10, 100));
        let t0 = 1_000_000 * NS;
        let need = |n| Need {
            requests: 1,
            input_tokens: n,
            output_tokens: 0,
            cost: 0,
        };
        // 50 reserved: the bucket is 5 s deep; a sweep long after still finds it held.
        let (held, _) = l.admit(&a, &need(50), t0, 0).unwrap();
        assert_eq!(l.sweep(t0 + 100 * NS), 1, "held by an unsettled reservation");
        // 30 used: 20 go back. Had the cell been evicted, they would go into a detached cell.
        let later = t0 + 100 * NS;
        held.settle(&need(30), later, &[]);
        assert_eq!(l.sweep(t0 + 3 * NS - 1), 1, "30 tokens drain in 3 s");
        let (_, info) = l.admit(&a, &need(1), t0 + 3 * NS - 1, 0).unwrap();
        assert_eq!(
            info.tokens.unwrap().remaining,
            100 - 1 - 1,
            "30 used, 1 ns short of drained, 1 taken"
        );
        assert_eq!(l.sweep(t0 + 4 * NS), 0);
        assert_eq!(l.cells(), 0);
    }

    #[test]
    fn a_swept_shard_gives_its_table_back() {
        let l = Limiter::default();
        let t0 = 1_000_000 * NS;
        for i in 0..100_000 {
            let a = vec![(
                Scope::User,
                Arc::<str>::from(format!("k/u{i}")),
                spec(Metric::Requests, Window::Second, 1, 1),
            )];
            drop(l.admit(&a, &REQ, t0, 0).unwrap());
        }
        assert_eq!(l.cells(), 100_000);
        assert!(l.shards.iter().all(|s| lock(s).capacity() > SHRINK_ABOVE));
        assert_eq!(l.sweep(t0 + NS), 0);
        let tables: Vec<usize> = l.shards.iter().map(|s| lock(s).capacity()).collect();
        assert!(
            tables.iter().all(|c| *c <= SHRINK_ABOVE),
            "every big table is shrunk: {tables:?}"
        );
    }

    /// One step of a random workload: an admission, a settlement of an outstanding reservation,
    /// time passing, or (for the swept limiter only) a sweep.
    #[derive(Debug, Clone)]
    enum Step {
        Admit { limits: u8, n: u64 },
        Settle { which: usize, used: u64 },
        Wait { ns: u64 },
        Sweep,
    }

    fn steps() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..16, 0u64..5).prop_map(|(limits, n)| Step::Admit { limits, n }),
            2 => (0usize..8, 0u64..8).prop_map(|(which, used)| Step::Settle { which, used }),
            2 => prop_oneof![0u64..2 * NS, (0u64..86_400).prop_map(|s| s * NS), Just(86_400 * NS)].prop_map(|ns| Step::Wait { ns }),
            1 => Just(Step::Sweep),
        ]
    }

    /// The limits of the workload, chosen by the bits of `Step::Admit::limits`: two rates and
    /// two quotas (one a budget with alert thresholds), over two users and a key.
    fn workload_limits(bits: u8) -> Vec<(Scope, Arc<str>, LimitSpec)> {
        let all = [
            (Scope::User, "k/a", spec(Metric::Requests, Window::Second, 3, 2)),
            (Scope::User, "k/b", spec(Metric::Tokens, Window::Minute, 600, 20)),
            (Scope::Key, "k", spec(Metric::Tokens, Window::Day, 40, 40)),
            (Scope::Key, "k", spec(Metric::Cost, Window::Month, 30, 30)),
        ];
        all.iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, (scope, id, s))| (*scope, Arc::from(*id), *s))
            .collect()
    }

    proptest! {
        /// Eviction never changes a decision: the same admissions and settlements at the same
        /// times, against a limiter swept at random moments and one never swept, are admitted
        /// or refused alike, with the same standings, retry times and budget alerts.
        #[test]
        fn eviction_never_changes_an_admission(work in proptest::collection::vec(steps(), 1..200)) {
            let (swept, kept) = (Limiter::default(), Limiter::default());
            let mut now = 1_800_000_000 * NS;
            let mut held: Vec<(Reservation, Reservation)> = Vec::new();
            for step in work {
                match step {
                    Step::Admit { limits, n } => {
                        let a = workload_limits(limits);
                        let need = Need { requests: 1, input_tokens: n, output_tokens: 0, cost: n * 3 };
                        match (swept.admit(&a, &need, now, 3600), kept.admit(&a, &need, now, 3600)) {
                            (Ok((r1, i1)), Ok((r2, i2))) => {
                                prop_assert_eq!(i1, i2);
                                held.push((r1, r2));
                            }
                            (Err(e1), Err(e2)) => {
                                prop_assert_eq!(e1.scope, e2.scope);
                                prop_assert_eq!(e1.spec, e2.spec);
                                prop_assert_eq!(e1.retry_after_s, e2.retry_after_s);
                                prop_assert_eq!(e1.info, e2.info);
                            }
                            (one, other) => prop_assert!(false, "swept: {:?}, never swept: {:?}", one.map(|r| r.1), other.map(|r| r.1)),
                        }
                    }
                    Step::Settle { which, used } if !held.is_empty() => {
                        let (r1, r2) = held.swap_remove(which % held.len());
                        let actual = Need { requests: 1, input_tokens: used, output_tokens: 0, cost: used * 3 };
                        prop_assert_eq!(r1.settle(&actual, now, &[50, 80]), r2.settle(&actual, now, &[50, 80]));
                    }
                    Step::Settle { .. } => {}
                    Step::Wait { ns } => now += ns,
                    Step::Sweep => {
                        swept.sweep(now);
                    }
                }
            }
            prop_assert!(swept.cells() <= kept.cells());
            prop_assert_eq!(kept.sweep(now + 40 * 86_400 * NS), swept.sweep(now + 40 * 86_400 * NS));
        }

        /// However requests interleave in time, a rate never admits more than its burst plus
        /// what drains in the window.
        #[test]
        fn a_rate_never_admits_more_than_burst_plus_refill(
            gaps in proptest::collection::vec(0u64..300_000_000, 1..400),
            sizes in proptest::collection::vec(1u64..4, 1..400),
            amount in 1u64..50,
            burst in 1u64..20,
        ) {
            let l = Limiter::default();
            let s = spec(Metric::Tokens, Window::Second, amount, burst);
            let a = one(s);
            let mut now = 10_000 * NS;
            let start = now;
            let mut admitted = 0u64;
            for (gap, n) in gaps.iter().zip(sizes.iter().cycle()) {
                now += gap;
                let need = Need { requests: 1, input_tokens: *n, output_tokens: 0, cost: 0 };
                if l.admit(&a, &need, now, 0).is_ok() {
                    admitted += n;
                }
            }
            let elapsed_units = (u128::from(now - start) * u128::from(amount) / u128::from(NS)) as u64;
            prop_assert!(admitted <= burst + elapsed_units + 1, "{admitted} > {burst} + {elapsed_units}");
        }

        /// Settlement never leaves a reservation behind: after every request settles, the
        /// quota holds exactly what was used.
        #[test]
        fn settlement_leaves_exactly_the_usage(
            reqs in proptest::collection::vec((1u64..100, 0u64..120), 1..60),
        ) {
            let l = Limiter::default();
            let a = one(spec(Metric::Tokens, Window::Month, u64::MAX / 4, 0));
            let t = 3_000_000 * NS;
            let mut used = 0u64;
            for (reserve, actual) in reqs {
                let (r, _) = l.admit(&a, &Need { requests: 1, input_tokens: reserve, output_tokens: 0, cost: 0 }, t, 0).unwrap();
                r.settle(&Need { requests: 1, input_tokens: actual, output_tokens: 0, cost: 0 }, t, &[]);
                used += actual;
            }
            let (_, info) = l.admit(&a, &Need { requests: 1, input_tokens: 1, output_tokens: 0, cost: 0 }, t, 0).unwrap();
            prop_assert_eq!(info.tokens.unwrap().remaining, u64::MAX / 4 - used - 1);
        }
    }
}
