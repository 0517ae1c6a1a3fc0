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
