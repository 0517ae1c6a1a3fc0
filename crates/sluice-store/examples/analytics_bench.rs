//! What an analytics query costs over a large ledger (BENCHMARKS.md, "Analytics"): fills a
//! SQLite ledger with N synthetic settled requests (10 models, 1 000 keys, 50 tenants, 30
//! days, latencies from 5 ms to 5 s) through the batch writer, rolls it up (`roll_up`, timed),
//! then times each query three times and prints the median: from the rollup, again with the
//! newest hour not yet rolled up (as under live traffic: that hour is read from the rows), and
//! — with `raw` — from the rows alone.
//!
//!   cargo run --release -p sluice-store --example analytics_bench -- [ROWS] [DB|URL|-] [raw]
//!
//! DB is a SQLite file (`-`: a temporary one); a `postgres://` URL fills that database instead
//! (an empty one: the bench writes its own rows).

use std::borrow::Cow;
use std::time::Instant;

use sluice_store::ledger::analytics::{Dim, Metric, Query, Span};
use sluice_store::ledger::{Detail, Entry, Intent, LedgerDb, Settlement};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args().nth(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let path = std::env::args()
        .nth(2)
        .filter(|p| p != "-")
        .unwrap_or_else(|| dir.path().join("bench.db").display().to_string());
    let raw = std::env::args().nth(3).as_deref() == Some("raw");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let db = if path.starts_with("postgres://") {
            LedgerDb::postgres(&path).await?
        } else {
            LedgerDb::sqlite(&path).await?
        };
        let start = 1_795_338_000_000i64; // 2026-11-22
        let span_ms = 30 * 86_400_000i64;
        let filled = Instant::now();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let batch = 20_000u64;
        // BENCH_SKIP_FILL=1: the database already holds these rows (a second run).
        let mut n = if std::env::var_os("BENCH_SKIP_FILL").is_some() {
            rows
        } else {
            0
        };
        while n < rows {
            let mut entries = Vec::with_capacity(2 * batch as usize);
            for i in n..(n + batch).min(rows) {
                let r = next();
                let at = start + (i as i64 * span_ms / rows as i64);
                let id = format!("r{i}");
                entries.push(Entry::Intent(Intent {
                    id: Cow::Owned(id.clone()),
                    instance: "bench".into(),
                    at,
                    key: Some(Cow::Owned(format!("key-{}", r % 1_000))),
                    team: Some(Cow::Owned(format!("team-{}", r % 20))),
                    tenant: Some(Cow::Owned(format!("tenant-{}", r % 50))),
                    route: Some("default".into()),
                    model: Some(Cow::Owned(format!("model-{}", r % 10))),
                    reserved_tokens: 1_000,
                    reserved_cost: 500,
                }));
                entries.push(Entry::Settlement(Settlement {
                    id: Cow::Owned(id),
                    at: at + 200,
                    deployment: Some(Cow::Owned(format!("dep-{}", r % 30))),
                    model: None,
                    status: if r % 50 == 0 { 502 } else { 200 },
                    prompt_tokens: 200 + r % 800,
                    completion_tokens: 50 + r % 400,
                    cached_tokens: 0,
                    cost: 100 + r % 900,
                    currency: Some("USD".into()),
                    estimated: false,
                    detail: Detail {
                        latency_us: Some(5_000 + (r >> 8) % 5_000_000),
                        ttfb_us: Some(1_000 + (r >> 16) % 500_000),
                        error_class: (r % 50 == 0).then(|| "upstream_error".into()),
                        cache: Some(if r % 3 == 0 { "hit" } else { "miss" }.into()),
                        guardrail: None,
                        saved_cost_micros: None,
                        ttft_us: None,
                    },
                }));
            }
            if db.writes_blocking() {
                db.apply_blocking(&entries)?;
            } else {
                db.apply(&entries).await?;
            }
            n += batch;
        }
        println!("filled {rows} rows in {:.1} s ({path})", filled.elapsed().as_secs_f64());
        let q = |metric, by, per, top, tenant| Query {
            metric,
            by,
            per,
            since_ms: start,
            until_ms: start + span_ms,
            tz_offset_s: 0,
            top,
            tenant,
            only: Vec::new(),
        };
        let cases: [(&str, Query<'_>); 5] = [
            (
                "requests by model per day, 30 days",
                q(Metric::Requests, Dim::Model, Span::Day, None, None),
            ),
            (
                "cost by key per day, top 10",
                q(Metric::Cost, Dim::Key, Span::Day, Some(10), None),
            ),
            (
                "cache hit rate by route per hour",
                q(Metric::CacheHitRate, Dim::Route, Span::Hour, None, None),
            ),
            (
                "requests by model per day, one tenant",
                q(Metric::Requests, Dim::Model, Span::Day, None, Some("tenant-7")),
            ),
            (
                "latency p95 by model per day",
                q(Metric::LatencyP95, Dim::Model, Span::Day, None, None),
            ),
        ];
        let rolling = Instant::now();
        let mut hours = 0;
        loop {
            let pass = db.roll_up(24).await?;
            if pass.hours == 0 {
                break;
            }
            hours += pass.hours;
        }
        println!("rolled up {hours} hours in {:.1} s", rolling.elapsed().as_secs_f64());
        let time = |label: &'static str, from_rows: bool| {
            let db = &db;
            let cases = &cases;
            async move {
                for (name, query) in cases {
                    let mut times = Vec::new();
                    let mut points = 0;
                    for _ in 0..3 {
                        let t = Instant::now();
                        points = if from_rows {
                            db.analytics_from_rows(query).await?.len()
                        } else {
                            db.analytics(query).await?.len()
                        };
                        times.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    times.sort_by(f64::total_cmp);
                    println!("{label}: {name}: median {:.1} ms ({points} points)", times[1]);
                }
                Ok::<_, Box<dyn std::error::Error>>(())
            }
        };
        time("rollup", false).await?;
        // The newest request settles again (as a late settlement would): its hour is read from
        // the rows until the next pass.
        let last = rows - 1;
        let resettle = || {
            [Entry::Settlement(Settlement {
                id: Cow::Owned(format!("r{last}")),
                at: start + span_ms,
                deployment: Some("dep-0".into()),
                model: None,
                status: 200,
                prompt_tokens: 1,
                completion_tokens: 1,
                cached_tokens: 0,
                cost: 1,
                currency: Some("USD".into()),
                estimated: false,
                detail: Detail::default(),
            })]
        };
        db.apply(&resettle()).await?;
        time("rollup, newest hour dirty", false).await?;
        // What a pass costs in steady state: the newest hour again, and its day made again from
        // its hours.
        let mut passes = Vec::new();
        for _ in 0..3 {
            db.apply(&resettle()).await?;
            let t = Instant::now();
            db.roll_up(24).await?;
            passes.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        passes.sort_by(f64::total_cmp);
        println!("a pass over the newest hour (and its day): median {:.0} ms", passes[1]);
        if raw {
            time("rows", true).await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
