//! The ledger database's tests: batches, idempotence, usage queries, and the blocking writer
//! against sqlx's.

use super::*;

fn intent(id: &str, at: i64) -> Entry<'static> {
    Entry::Intent(Intent {
        id: id.to_owned().into(),
        instance: "i1".into(),
        at,
        key: Some("k".into()),
        team: Some("t".into()),
        tenant: None,
        route: Some("default".into()),
        model: Some("chat".into()),
        reserved_tokens: 100,
        reserved_cost: 50,
    })
}

fn settle(id: &str, at: i64, prompt: u64, completion: u64, cost: u64) -> Entry<'static> {
    Entry::Settlement(Settlement {
        id: id.to_owned().into(),
        at,
        deployment: Some("d".into()),
        model: None,
        status: 200,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: 0,
        cost,
        currency: Some("USD".into()),
        estimated: false,
        detail: Default::default(),
    })
}

#[test]
fn records_read_back_borrowing_the_line() {
    let line = serde_json::to_vec(&intent("r1", 5)).unwrap();
    assert!(line.starts_with(b"{\"i\":{"), "{}", String::from_utf8_lossy(&line));
    let back: Entry<'_> = serde_json::from_slice(&line).unwrap();
    assert_eq!(back, intent("r1", 5));
    let Entry::Intent(i) = back else { panic!() };
    assert!(matches!(i.id, Cow::Borrowed(_)), "no copy of unescaped text");
}

#[tokio::test]
async fn batches_are_idempotent_and_open_rows_close_as_unsettled() {
    let dir = tempfile::tempdir().unwrap();
    let db = LedgerDb::sqlite(dir.path().join("l.db").to_str().unwrap())
        .await
        .unwrap();
    // 2026-11-22 09:00 UTC and 2026-11-23 01:00 UTC.
    let (t1, t2) = (1_795_338_000_000, 1_795_395_600_000);
    let batch = vec![
        intent("a", t1),
        settle("a", t1 + 5, 10, 20, 700),
        intent("b", t2),
        intent("c", t2),
        settle("c", t2 + 5, 1, 2, 30),
    ];
    db.apply(&batch).await.unwrap();
    db.apply(&batch).await.unwrap();
    assert_eq!(db.close_unsettled("i1", t2 + 10).await.unwrap(), 1);
    let states = db.states().await.unwrap();
    assert_eq!(
        states,
        vec![
            ("a".to_owned(), "settled".to_owned()),
            ("b".to_owned(), "unsettled".to_owned()),
            ("c".to_owned(), "settled".to_owned())
        ]
    );
    let day = db.usage(UsageBy::Key, Per::Day, 0, i64::MAX, 0, None).await.unwrap();
    assert_eq!(day.len(), 2, "{day:?}");
    assert_eq!(
        (day[0].bucket.as_str(), day[0].requests, day[0].cost_micros),
        ("2026-11-22", 1, 700)
    );
    assert_eq!(day[1].requests, 2);
    assert_eq!(day[1].cost_micros, 30 + 50, "the unsettled one carries its reservation");
    assert_eq!(day[1].total_tokens, 3 + 100);
    assert_eq!((day[1].estimated, day[1].unsettled), (1, 1));
    // At +02:00 the 01:00 UTC request is still on the 23rd; at -02:00 on the 22nd.
    let west = db
        .usage(UsageBy::Model, Per::Day, 0, i64::MAX, -7200, None)
        .await
        .unwrap();
    assert_eq!(west.len(), 1);
    assert_eq!(west[0].requests, 3);
    let month = db.usage(UsageBy::Team, Per::Month, 0, i64::MAX, 0, None).await.unwrap();
    assert_eq!((month[0].bucket.as_str(), month[0].group.as_str()), ("2026-11", "t"));
    // Confined to a tenant: none of these rows (they have none) are its.
    let other = db
        .usage(UsageBy::Key, Per::Day, 0, i64::MAX, 0, Some("acme"))
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");
}

/// Every column of every row, as SQLite quotes it.
async fn dump(db: &LedgerDb) -> Vec<String> {
    let LedgerDb::Sqlite(SqliteLedger { pool, .. }) = db else {
        panic!()
    };
    let cols: Vec<String> = COLUMNS.split(',').map(|c| format!("quote({})", c.trim())).collect();
    let sql = format!(
        "SELECT {} FROM spend_ledger ORDER BY request_id",
        cols.join(" || ',' || ")
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_blocking_writer_writes_what_sqlx_writes() {
    let dir = tempfile::tempdir().unwrap();
    let a = LedgerDb::sqlite(dir.path().join("a.db").to_str().unwrap())
        .await
        .unwrap();
    let b = LedgerDb::sqlite(dir.path().join("b.db").to_str().unwrap())
        .await
        .unwrap();
    assert!(b.writes_blocking(), "a database on disk gets the blocking writer");
    let memory = LedgerDb::sqlite(":memory:").await.unwrap();
    assert!(!memory.writes_blocking(), "an in-memory one is only the pool's");
    // 463 rows (statements of 200 rows twice — one statement, bound again —, 50 and 10 rows,
    // and single ones), texts with quotes and non-ASCII, absent fields, and a settlement whose
    // intent came earlier.
    let (t1, t2) = (1_795_338_000_000, 1_795_395_600_000);
    let ids: Vec<String> = (0..463).map(|n| format!("r-{n:03}")).collect();
    let mut first = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let mut i = intent(id, t1 + n as i64);
        if let Entry::Intent(i) = &mut i
            && n % 7 == 0
        {
            i.key = None;
            i.route = Some("r\"ö'ute".into());
        }
        first.push(i);
        if n % 3 != 0 {
            let mut s = settle(id, t1 + n as i64 + 5, n as u64, 2 * n as u64, 10 * n as u64);
            if let Entry::Settlement(s) = &mut s
                && n % 2 == 0
            {
                // Half the settlements carry the analytics' detail, the rest none.
                s.detail = Detail {
                    latency_us: Some(1_000 + n as u64),
                    ttfb_us: Some(100 + n as u64),
                    error_class: (n % 4 == 0).then(|| "upstream_error".into()),
                    cache: Some("miss".into()),
                    guardrail: (n % 8 == 0).then(|| "pii-redact/pii:redact:input".into()),
                    saved_cost_micros: None,
                    ttft_us: Some(50 + n as u64),
                };
            }
            first.push(s);
        }
    }
    let second: Vec<Entry<'_>> = ids
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 3 == 0)
        .map(|(n, id)| settle(id, t2 + n as i64, 1, 2, 3))
        .collect();
    for batch in [&first, &second, &first] {
        a.apply(batch).await.unwrap();
        b.apply_blocking(batch).unwrap();
    }
    let (rows_a, rows_b) = (dump(&a).await, dump(&b).await);
    assert_eq!(rows_a.len(), 463);
    assert_eq!(rows_a, rows_b);
    // The detail is in its columns (r-002: settled with detail; r-001: without).
    let detail = |id: &str| {
        rows_a
            .iter()
            .find(|r| r.starts_with(&format!("'{id}'")))
            .unwrap()
            .clone()
    };
    assert!(
        detail("r-002").ends_with("1002,102,NULL,'miss',NULL,NULL,52"),
        "{}",
        detail("r-002")
    );
    assert!(
        detail("r-004").ends_with("1004,104,'upstream_error','miss',NULL,NULL,54"),
        "{}",
        detail("r-004")
    );
    assert!(
        detail("r-001").ends_with("NULL,NULL,NULL,NULL,NULL,NULL,NULL"),
        "{}",
        detail("r-001")
    );
    assert!(memory.apply_blocking(&second).is_err());
}

#[test]
fn batches_split_into_few_statement_sizes() {
    let rows: Vec<u32> = (0..273).collect();
    let sizes: Vec<usize> = chunks(&rows).iter().map(|c| c.len()).collect();
    assert_eq!(sizes, [200, 50, 10, 10, 1, 1, 1]);
    for n in STATEMENT_ROWS {
        assert_eq!(statement(n, false).matches('?').count(), n * PER_ROW);
        assert!(statement(n, true).contains(&format!("${}", n * PER_ROW)));
    }
}

#[test]
fn placeholders_are_numbered_for_postgres() {
    assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
}

#[tokio::test]
async fn payload_rows_are_stored_once_and_pruned_past_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = LedgerDb::sqlite(dir.path().join("p.db").to_str().unwrap())
        .await
        .unwrap();
    let row = |id: &str, tenant: &str, expires_at: i64| PayloadRow {
        request_id: id.to_owned(),
        at: 1_000,
        expires_at,
        route: Some("r".into()),
        tenant: Some(tenant.into()),
        key_id: Some("k".into()),
        endpoint: "chat_completions".into(),
        redacted: true,
        request: "{}".into(),
        response: "hi".into(),
    };
    let rows = [row("a", "acme", 5_000), row("b", "globex", 9_000)];
    db.insert_payloads(&rows).await.unwrap();
    db.insert_payloads(&rows).await.unwrap();
    assert_eq!(db.payloads(None, 10).await.unwrap().len(), 2, "stored once");
    assert_eq!(db.payloads(Some("acme"), 10).await.unwrap(), [rows[0].clone()]);
    assert_eq!(db.prune_payloads(6_000).await.unwrap(), 1);
    assert_eq!(db.payloads(None, 10).await.unwrap(), [rows[1].clone()]);
}

#[tokio::test]
async fn analytics_sum_rate_and_take_percentiles_from_merged_histograms() {
    use super::analytics::{Dim, Metric, Query, Span};
    let dir = tempfile::tempdir().unwrap();
    let db = LedgerDb::sqlite(dir.path().join("a.db").to_str().unwrap())
        .await
        .unwrap();
    // 2026-11-22 09:00 UTC; model "big" in two minutes, "small" in one; tenants apart.
    let t = 1_795_338_000_000;
    let mut batch = Vec::new();
    for n in 0..40i64 {
        let (model, tenant, at) = match n % 4 {
            0 => ("small", "globex", t),
            1 => ("big", "acme", t),
            _ => ("big", "acme", t + 60_000),
        };
        let mut i = intent(&format!("q{n}"), at + n);
        if let Entry::Intent(i) = &mut i {
            i.model = Some(model.into());
            i.tenant = Some(tenant.into());
        }
        batch.push(i);
        let mut s = settle(&format!("q{n}"), at + n + 5, 10, 20, 100);
        if let Entry::Settlement(s) = &mut s {
            // "big" has a slow tail: 1 request in 10 takes 5 s, the rest 20 ms.
            let slow = model == "big" && n % 10 == 2;
            s.detail.latency_us = Some(if slow { 5_000_000 } else { 20_000 });
            s.detail.error_class = (n % 5 == 0).then(|| "upstream_error".into());
            s.detail.cache = Some(if n % 2 == 0 { "hit" } else { "miss" }.into());
        }
        batch.push(s);
    }
    db.apply(&batch).await.unwrap();
    let q = |metric, per, top, tenant| Query {
        metric,
        by: Dim::Model,
        per,
        since_ms: 0,
        until_ms: i64::MAX,
        tz_offset_s: 0,
        top,
        tenant,
        only: Vec::new(),
    };
    let per_minute = db
        .analytics(&q(Metric::Requests, Span::Minute, None, None))
        .await
        .unwrap();
    let got: Vec<(&str, &str, Option<f64>)> = per_minute
        .iter()
        .map(|p| (p.bucket.as_str(), p.group.as_str(), p.value))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-22T09:00", "big", Some(10.0)),
            ("2026-11-22T09:00", "small", Some(10.0)),
            ("2026-11-22T09:01", "big", Some(20.0)),
        ]
    );
    let cost = db.analytics(&q(Metric::Cost, Span::Day, None, None)).await.unwrap();
    assert_eq!(
        cost.iter().map(|p| p.value).collect::<Vec<_>>(),
        [Some(3_000.0), Some(1_000.0)]
    );
    let errors = db.analytics(&q(Metric::Errors, Span::Day, None, None)).await.unwrap();
    // Every fifth request failed: 6 of big's, 2 of small's (n = 0, 20).
    assert_eq!(
        errors.iter().map(|p| p.value).collect::<Vec<_>>(),
        [Some(6.0), Some(2.0)]
    );
    // p95 over the day merges both minutes' histograms: 3 slow of 30 → the slow tail.
    let p95 = db
        .analytics(&q(Metric::LatencyP95, Span::Day, None, None))
        .await
        .unwrap();
    assert!(p95[0].value.unwrap() >= 5_000.0, "{p95:?}");
    assert!(p95[1].value.unwrap() < 30.0, "{p95:?}");
    let p50 = db
        .analytics(&q(Metric::LatencyP50, Span::Day, None, None))
        .await
        .unwrap();
    assert!(p50[0].value.unwrap() < 30.0, "{p50:?}");
    let hits = db
        .analytics(&q(Metric::CacheHitRate, Span::Day, None, None))
        .await
        .unwrap();
    assert_eq!(hits[1].value, Some(1.0), "every small request was an even one: a hit");
    // Top 1 by requests: big only; a tenant sees its own rows only.
    let top = db
        .analytics(&q(Metric::Requests, Span::Day, Some(1), None))
        .await
        .unwrap();
    assert_eq!(top.iter().map(|p| p.group.as_str()).collect::<Vec<_>>(), ["big"]);
    let globex = db
        .analytics(&q(Metric::Requests, Span::Day, None, Some("globex")))
        .await
        .unwrap();
    assert_eq!(
        globex.iter().map(|p| (p.group.as_str(), p.value)).collect::<Vec<_>>(),
        [("small", Some(10.0))]
    );
}

/// Rows over three days with every dimension varying (keys, tenants, models, deployments, error
/// classes, cache and guardrail outcomes, latencies), some left open.
fn varied_rows(t: i64) -> Vec<Entry<'static>> {
    let mut batch = Vec::new();
    for n in 0..600i64 {
        let at = t + n * 432_000 + 17; // 72 hours, not on hour edges
        let id = format!("v{n}");
        let mut i = intent(&id, at);
        if let Entry::Intent(i) = &mut i {
            i.key = Some(format!("k{}", n % 7).into());
            i.team = (n % 5 != 0).then(|| format!("team{}", n % 3).into());
            i.tenant = (n % 4 != 0).then(|| ["acme", "globex"][(n % 2) as usize].into());
            i.model = Some(["big", "small", "mid"][(n % 3) as usize].into());
            i.route = Some(if n % 6 == 0 { "batch" } else { "default" }.into());
        }
        batch.push(i);
        if n % 11 == 0 {
            continue; // still open
        }
        let mut s = settle(&id, at + 5, 10 + n as u64 % 90, 5 + n as u64 % 40, 100 + n as u64 % 900);
        if let Entry::Settlement(s) = &mut s {
            s.deployment = Some(format!("d{}", n % 4).into());
            s.detail.latency_us = (n % 9 != 0).then_some(1_000 + (n as u64 * 7_919) % 3_000_000);
            s.detail.ttfb_us = (n % 3 != 0).then_some(200 + (n as u64 * 104_729) % 400_000);
            s.detail.ttft_us = (n % 4 == 1).then_some(5_000 + (n as u64 * 7_477) % 900_000);
            s.detail.error_class = (n % 13 == 0).then(|| ["upstream_error", "timeout"][(n % 2) as usize].into());
            s.detail.cache = (n % 2 == 0).then(|| ["hit", "miss", "semantic"][(n % 3) as usize].into());
            s.detail.guardrail = (n % 17 == 0).then(|| "redact".into());
        }
        batch.push(s);
    }
    batch
}

/// Every metric by every dimension, per hour, day and month, in three time zones, over a range
/// with partial hours at both ends, with and without a tenant and a top N.
fn rollup_queries(t: i64) -> Vec<analytics::Query<'static>> {
    use analytics::{Dim, Metric, Query, Span};
    let metrics = [
        Metric::Requests,
        Metric::Cost,
        Metric::Tokens,
        Metric::Errors,
        Metric::LatencyP50,
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::CacheHitRate,
        Metric::TtfbP95,
        Metric::TtftP99,
        Metric::GuardrailTriggers,
    ];
    let mut out = Vec::new();
    for metric in metrics {
        for by in super::rollup::DIMS {
            for (per, tz, tenant, top) in [
                (Span::Hour, 0, None, None),
                (Span::Day, 0, Some("acme"), None),
                (Span::Day, 3_600, None, None),
                (Span::Month, 0, None, Some(2)),
                (Span::Month, -7_200, Some("globex"), None),
            ] {
                out.push(Query {
                    metric,
                    by,
                    per,
                    since_ms: t + 1_234_567,
                    until_ms: t + 72 * 3_600_000 - 1_000,
                    tz_offset_s: tz,
                    top,
                    tenant,
                    only: Vec::new(),
                });
            }
        }
    }
    out.push(Query {
        only: vec![(Dim::Key, "k3")],
        ..out[0].clone()
    });
    out
}

async fn assert_rollup_answers_as_rows(db: &LedgerDb, t: i64, when: &str) {
    for q in rollup_queries(t) {
        let rolled = db.analytics(&q).await.unwrap();
        let rows = db.analytics_from_rows(&q).await.unwrap();
        if rolled != rows {
            let first = rolled.iter().zip(&rows).find(|(a, b)| a != b);
            panic!(
                "{when}: {q:?}: {} points from the rollup, {} from the rows; first difference {first:?}",
                rolled.len(),
                rows.len()
            );
        }
    }
}

#[tokio::test]
async fn the_hourly_rollup_answers_as_the_rows_do_and_follows_late_settlements() {
    let dir = tempfile::tempdir().unwrap();
    let db = LedgerDb::sqlite(dir.path().join("r.db").to_str().unwrap())
        .await
        .unwrap();
    let t = 1_795_338_000_000; // 2026-11-22 09:00 UTC
    db.apply(&varied_rows(t)).await.unwrap();
    assert_eq!(db.dirty_hours(0, i64::MAX / 3_600_000, 100).await.unwrap().len(), 72);
    assert_rollup_answers_as_rows(&db, t, "nothing rolled up yet").await;
    // Part of it rolled up: some days' hours dirty, some clean.
    let part = db.roll_up(30).await.unwrap();
    assert_eq!(part.hours, 30);
    assert_rollup_answers_as_rows(&db, t, "rolled up in part").await;

    let pass = db.roll_up(100).await.unwrap();
    assert_eq!(pass.hours, 42);
    assert_eq!(part.rows + pass.rows, 600 - 55, "finished rows only");
    assert!(db.dirty_hours(0, i64::MAX / 3_600_000, 100).await.unwrap().is_empty());
    assert_eq!(
        db.roll_up(100).await.unwrap(),
        RollupPass::default(),
        "nothing left to do"
    );
    assert_rollup_answers_as_rows(&db, t, "rolled up").await;

    // A request left open settles later: its hour is dirty again, answered from the rows until
    // the next pass, then from the rollup.
    db.apply(&[settle("v11", t + 11 * 432_000 + 40, 1, 1, 5_000)])
        .await
        .unwrap();
    let dirty = db.dirty_hours(0, i64::MAX / 3_600_000, 100).await.unwrap();
    assert_eq!(dirty, [(t + 11 * 432_000) / 3_600_000]);
    assert_rollup_answers_as_rows(&db, t, "a late settlement, not rolled up").await;
    assert_eq!(db.roll_up(100).await.unwrap().hours, 1);
    assert_rollup_answers_as_rows(&db, t, "the late settlement rolled up").await;

    // Retention prunes the rollup's hours before the cut and redoes the hour it falls in.
    db.prune_ledger(t + 3 * 3_600_000 + 1).await.unwrap();
    assert_eq!(
        db.dirty_hours(0, i64::MAX / 3_600_000, 100).await.unwrap(),
        [t / 3_600_000 + 3]
    );
    db.roll_up(100).await.unwrap();
    assert_rollup_answers_as_rows(&db, t, "after pruning").await;
    // The whole hours and days really come from the rollups: rows taken out behind their back
    // (never done by the gateway) still count there, and not in the raw answer.
    if let LedgerDb::Sqlite(SqliteLedger { pool, .. }) = &db {
        let h = t + 30 * 3_600_000; // 2026-11-23 15:00, in the first whole day
        sqlx::query("DELETE FROM spend_ledger WHERE started_at >= ? AND started_at < ?")
            .bind(h)
            .bind(h + 3_600_000)
            .execute(pool)
            .await
            .unwrap();
    }
    let total = |p: &[analytics::Point]| p.iter().map(|p| p.requests).sum::<i64>();
    for q in &rollup_queries(t)[..4] {
        let (rolled, rows) = (db.analytics(q).await.unwrap(), db.analytics_from_rows(q).await.unwrap());
        assert!(
            total(&rolled) > total(&rows),
            "{q:?}: {} vs {}",
            total(&rolled),
            total(&rows)
        );
    }
}
