//! In-process limit counters: sharded cells locked in a fixed order.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_config::{LimitSpec, Metric, Window};

use super::{CellKey, Crossing, NS, Need, RateInfo, Refusal, Scope, Standing, merge, window_bounds};

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

#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Mutex<HashMap<CellKey, Arc<Mutex<Cell>>>>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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

    proptest! {
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
