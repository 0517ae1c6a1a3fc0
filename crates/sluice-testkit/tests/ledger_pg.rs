//! The ledger and the key store on a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use sluice_store::ledger::{Entry, Intent, LedgerDb, Per, Settlement, UsageBy};
use sluice_store::{KeyStore, PgStore};
use sluice_testkit::services::PostgresServer;

#[tokio::test]
async fn ledger_batches_usage_and_keys_on_postgres() {
    let pg = PostgresServer::start();
    let db = LedgerDb::postgres(&pg.url()).await.unwrap();
    let t = 1_795_338_000_000; // 2026-11-22 09:00 UTC
    let batch = vec![
        Entry::Intent(Intent {
            id: "r1".into(),
            instance: "a".into(),
            at: t,
            key: Some("k1".into()),
            team: Some("search".into()),
            tenant: None,
            route: None,
            model: Some("chat".into()),
            reserved_tokens: 500,
            reserved_cost: 900,
        }),
        Entry::Settlement(Settlement {
            id: "r1".into(),
            at: t + 3,
            deployment: Some("d".into()),
            model: None,
            status: 200,
            prompt_tokens: 7,
            completion_tokens: 9,
            cached_tokens: 0,
            cost: 123,
            currency: Some("USD".into()),
            estimated: false,
            detail: Default::default(),
        }),
        Entry::Intent(Intent {
            id: "r2".into(),
            instance: "a".into(),
            at: t + 3_600_000,
            key: Some("k1".into()),
            team: Some("search".into()),
            tenant: Some("acme".into()),
            route: None,
            model: Some("chat".into()),
            reserved_tokens: 500,
            reserved_cost: 900,
        }),
    ];
    db.apply(&batch).await.unwrap();
    db.apply(&batch).await.unwrap();
    assert_eq!(db.close_unsettled("other-instance", t).await.unwrap(), 0);
    assert_eq!(db.close_unsettled("a", t).await.unwrap(), 1);
    let hours = db.usage(UsageBy::Key, Per::Hour, 0, i64::MAX, 0, None).await.unwrap();
    assert_eq!(hours.len(), 2, "{hours:?}");
    assert_eq!(hours[0].bucket, "2026-11-22T09");
    assert_eq!(
        (hours[0].requests, hours[0].total_tokens, hours[0].cost_micros),
        (1, 16, 123)
    );
    assert_eq!((hours[1].unsettled, hours[1].cost_micros), (1, 900));
    let days = db.usage(UsageBy::Team, Per::Day, 0, i64::MAX, 0, None).await.unwrap();
    assert_eq!((days.len(), days[0].requests, days[0].group.as_str()), (1, 2, "search"));
    // Confined to a tenant (an admin principal's view): only its rows.
    let acme = db
        .usage(UsageBy::Key, Per::Day, 0, i64::MAX, 0, Some("acme"))
        .await
        .unwrap();
    assert_eq!((acme.len(), acme[0].requests, acme[0].unsettled), (1, 1, 1), "{acme:?}");
    let other = db
        .usage(UsageBy::Key, Per::Day, 0, i64::MAX, 0, Some("globex"))
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");
    // Analytics on PostgreSQL: the same SQL, numbered placeholders, a tenant's rows only.
    use sluice_store::ledger::analytics::{Dim, Metric, Query, Span};
    let q = |metric, tenant| Query {
        metric,
        by: Dim::Model,
        per: Span::Hour,
        since_ms: 0,
        until_ms: i64::MAX,
        tz_offset_s: 0,
        top: None,
        tenant,
        only: Vec::new(),
    };
    let requests = db.analytics(&q(Metric::Requests, None)).await.unwrap();
    assert_eq!(
        requests.iter().map(|p| p.value).collect::<Vec<_>>(),
        [Some(1.0), Some(1.0)]
    );
    let acme = db.analytics(&q(Metric::Cost, Some("acme"))).await.unwrap();
    assert_eq!((acme.len(), acme[0].value), (1, Some(900.0)));
    let p95 = db.analytics(&q(Metric::LatencyP95, None)).await.unwrap();
    assert!(
        p95.iter().all(|p| p.value.is_none()),
        "no latency recorded: nothing to tell"
    );

    // Drilling down: filters bound after the tenant, in order (numbered placeholders).
    let drill = |only: Vec<(Dim, &'static str)>| Query {
        by: Dim::All,
        only,
        ..q(Metric::Requests, Some("acme"))
    };
    let k1 = db
        .analytics(&drill(vec![(Dim::Key, "k1"), (Dim::Team, "search")]))
        .await
        .unwrap();
    assert_eq!((k1.len(), k1[0].group.as_str(), k1[0].value), (1, "all", Some(1.0)));
    assert!(db.analytics(&drill(vec![(Dim::Key, "k2")])).await.unwrap().is_empty());
    // Recent requests, newest first; a tenant's only.
    let recent = db.recent(10, i64::MAX, None).await.unwrap();
    assert_eq!(
        recent.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    assert_eq!((recent[1].http_status, recent[1].cost_micros), (200, 123));
    let acme = db.recent(10, i64::MAX, Some("acme")).await.unwrap();
    assert_eq!(acme.len(), 1);
    assert!(
        db.recent(10, t, None).await.unwrap().is_empty(),
        "only those started before"
    );

    // The key store: a second handle (another instance) sees the first's changes.
    let a = PgStore::open(&pg.url()).await.unwrap();
    let b = PgStore::open(&pg.url()).await.unwrap();
    let before = b.version().await.unwrap();
    let key = sluice_store::StoredKey {
        id: "k9".into(),
        hash: [7; 32],
        prefix: "sk-sluice-k9".into(),
        tenant: None,
        team: None,
        user: None,
        tier: None,
        models: None,
        routes: None,
        expires_at: None,
        created_at: chrono::Utc::now(),
        revoked_at: None,
        trust_user: false,
    };
    a.insert(&key).await.unwrap();
    assert!(matches!(
        a.insert(&key).await,
        Err(sluice_store::StoreError::Conflict { .. })
    ));
    let added = b.version().await.unwrap();
    assert_ne!(before, added);
    assert_eq!(b.list().await.unwrap().len(), 1);
    assert!(a.revoke("k9", chrono::Utc::now()).await.unwrap());
    assert_ne!(b.version().await.unwrap(), added);
    assert!(b.list().await.unwrap()[0].revoked_at.is_some());

    // The audit log: two instances appending at once still make one chain (the advisory lock
    // serializes appends), seen whole by either.
    let append = |store: PgStore, who: &'static str| async move {
        for i in 0..25 {
            let e = sluice_store::audit::NewAudit {
                actor: who.to_owned(),
                action: "key.create".to_owned(),
                target: Some(format!("{who}-{i}")),
                ..Default::default()
            };
            store.append_audit(&e).await.unwrap();
        }
    };
    let (x, y) = (a.clone(), b.clone());
    tokio::join!(append(x, "a"), append(y, "b"));
    let entries = b.audit_entries(0, 1000, None).await.unwrap();
    assert_eq!(entries.len(), 50);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(
        sluice_store::audit::verify(&entries, None, a.audit_head().await.unwrap(), None),
        Ok(())
    );

    // Console sessions: opened on one instance, known to the other, ended by either.
    let now = chrono::Utc::now().timestamp_millis();
    let session = sluice_store::StoredSession {
        hash: [5; 32],
        token_hash: [6; 32],
        principal: "ops".into(),
        csrf: "f".repeat(64),
        created_ms: now,
        expires_ms: now + 60_000,
    };
    a.insert_session(&session).await.unwrap();
    assert_eq!(b.session(&[5; 32], now).await.unwrap(), Some(session));
    assert!(b.session(&[5; 32], now + 60_000).await.unwrap().is_none(), "expired");
    assert!(b.delete_session(&[5; 32]).await.unwrap());
    assert!(
        a.session(&[5; 32], now).await.unwrap().is_none(),
        "signed out everywhere"
    );
    assert_eq!(a.prune_sessions(now).await.unwrap(), 0);
}

#[tokio::test]
async fn the_hourly_rollup_on_postgres_answers_as_the_rows_and_two_instances_roll_up_once() {
    use sluice_store::ledger::analytics::{Dim, Metric, Query, Span};
    let pg = PostgresServer::start();
    let (a, b) = (
        LedgerDb::postgres(&pg.url()).await.unwrap(),
        LedgerDb::postgres(&pg.url()).await.unwrap(),
    );
    let t = 1_795_338_000_000i64; // 2026-11-22 09:00 UTC
    let mut batch = Vec::new();
    for n in 0..300i64 {
        let id = format!("p{n}");
        let at = t + n * 864_000 + 11; // three days
        batch.push(Entry::Intent(Intent {
            id: id.clone().into(),
            instance: "a".into(),
            at,
            key: Some(format!("k{}", n % 5).into()),
            team: None,
            tenant: Some(["acme", "globex", "initech"][(n % 3) as usize].into()),
            route: Some("default".into()),
            model: Some(["big", "small"][(n % 2) as usize].into()),
            reserved_tokens: 10,
            reserved_cost: 10,
        }));
        batch.push(Entry::Settlement(Settlement {
            id: id.into(),
            at: at + 3,
            deployment: Some(format!("d{}", n % 4).into()),
            model: None,
            status: 200,
            prompt_tokens: 5 + n as u64 % 50,
            completion_tokens: 3,
            cached_tokens: 0,
            cost: 100 + n as u64,
            currency: Some("USD".into()),
            estimated: false,
            detail: sluice_store::ledger::Detail {
                latency_us: Some(2_000 + (n as u64 * 7_919) % 2_000_000),
                ttfb_us: Some(500 + n as u64 * 31),
                error_class: (n % 7 == 0).then(|| "timeout".into()),
                cache: Some(if n % 2 == 0 { "hit" } else { "miss" }.into()),
                guardrail: None,
                saved_cost_micros: None,
                ttft_us: (n % 2 == 1).then_some(900 + n as u64 * 97),
            },
        }));
    }
    a.apply(&batch).await.unwrap();
    // Two instances run their passes at once: each hour is rolled up under an advisory lock,
    // and rolling up twice changes nothing.
    let (pa, pb) = tokio::join!(a.roll_up(100), b.roll_up(100));
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!(pa.rows + pb.rows, 300, "{pa:?} {pb:?}");
    assert!(b.dirty_hours(0, i64::MAX / 3_600_000, 10).await.unwrap().is_empty());
    for metric in [
        Metric::Requests,
        Metric::Cost,
        Metric::Errors,
        Metric::LatencyP95,
        Metric::TtfbP50,
        Metric::TtftP95,
        Metric::CacheHitRate,
    ] {
        for (by, per, tenant) in [
            (Dim::Model, Span::Hour, None),
            (Dim::Key, Span::Day, Some("acme")),
            (Dim::All, Span::Month, None),
            (Dim::Deployment, Span::Hour, Some("globex")),
        ] {
            let q = Query {
                metric,
                by,
                per,
                since_ms: t + 600_000,
                until_ms: t + 72 * 3_600_000 - 5,
                // UTC days and months read the daily rollup; other zones the hourly one.
                tz_offset_s: if per == Span::Hour { 3_600 } else { 0 },
                // Top groups of a metric that adds up are ranked from totals first.
                top: (by == Dim::Key).then_some(2),
                tenant,
                only: Vec::new(),
            };
            let (rolled, rows) = (b.analytics(&q).await.unwrap(), a.analytics_from_rows(&q).await.unwrap());
            assert!(!rows.is_empty());
            assert_eq!(rolled, rows, "{q:?}");
        }
    }
}
