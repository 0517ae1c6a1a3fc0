//! The spend ledger as an operator meets it: a record per billable request in SQLite and in
//! PostgreSQL, usage queries by the admin API and the CLI, nothing lost or doubled when the
//! gateway is killed with SIGKILL, and keys shared by several instances through PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sluice_mock::{Knobs, MockConfig};
use sluice_store::ledger::LedgerDb;
use sluice_testkit::instances::Instance;
use sluice_testkit::services::PostgresServer;
use sluice_testkit::{key_hash, mock_with};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const KEY: &str = "sk-sluice-ledger-test";

fn config(mock_url: &str, store: &str) -> String {
    format!(
        r#"
store:
{store}
prices:
  models:
    - {{ model: upstream-a, input: 10, output: 30 }}
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{mock_url}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
routes:
  - name: default
keys:
  - {{ id: app, hash: "{}", team: search, tenant: acme }}
ledger: {{ ship_interval_ms: 100 }}
"#,
        key_hash(KEY)
    )
}

fn sqlite_store(dir: &std::path::Path) -> String {
    format!("  sqlite_path: \"{}\"", dir.join("sluice.db").display())
}

fn ask(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "hello ledger"}]})
}

async fn usage(gw: &Instance, query: &str) -> Value {
    let r = gw.admin(Method::GET, &format!("/admin/usage?{query}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn states(rows: &[(String, String)]) -> BTreeMap<String, String> {
    rows.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_billable_request_is_in_the_ledger_and_the_usage_queries() {
    let mock = mock_with(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Instance::spawn(BIN, &config(&mock.base_url(), &sqlite_store(dir.path())), dir.path());
    let mut costs = 0u64;
    for stream in [false, false, true] {
        let r = gw.chat(KEY, &ask(stream)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if !stream {
            let u = &r.json()["usage"];
            costs += u["prompt_tokens"].as_u64().unwrap() * 10 + u["completion_tokens"].as_u64().unwrap() * 30;
        }
    }
    // Refused before admission (unknown model): not billable, not in the ledger.
    let r = gw
        .chat(
            KEY,
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 404);

    let by_key = usage(&gw, "by=key&per=day").await;
    let rows = by_key["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{by_key}");
    assert_eq!(rows[0]["group"], "app");
    assert_eq!(rows[0]["requests"], 3);
    assert!(
        rows[0]["cost_micros"].as_u64().unwrap() > costs,
        "the stream costs too: {by_key}"
    );
    assert_eq!(rows[0]["unsettled"], 0);
    assert_eq!(by_key["currency"], "USD");
    let by_team = usage(&gw, "by=team&per=month").await;
    assert_eq!(by_team["rows"][0]["group"], "search");
    assert_eq!(
        by_team["rows"][0]["bucket"].as_str().unwrap().len(),
        7,
        "a month bucket: {by_team}"
    );
    let r = gw.admin(Method::GET, "/admin/usage?by=colour", None).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // The CLI reads the same database, without the provider credentials in its environment.
    let out = std::process::Command::new(BIN)
        .args(["usage", "--config"])
        .arg(dir.path().join("sluice.yaml"))
        .args(["--by", "tenant", "--per", "hour", "--json"])
        .env_remove("SLUICE_TEST_UPSTREAM_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        (line["group"].as_str(), line["requests"].as_i64()),
        (Some("acme"), Some(3))
    );
}

/// A tiny deterministic generator: kill moments differ between rounds, runs are repeatable.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_ten_times_loses_nothing_and_doubles_nothing() {
    let mock = mock_with(MockConfig {
        defaults: Knobs {
            chunks: Some(8),
            chunk_delay_ms: Some(15),
            latency_ms: Some(20),
            ..Knobs::default()
        },
        ..MockConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Arc::new(Instance::spawn(
        BIN,
        &config(&mock.base_url(), &sqlite_store(dir.path())),
        dir.path(),
    ));
    let mut seed = 0x5eed_u64;
    for _ in 0..10 {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..6)
            .map(|c| {
                let (g, stop) = (gw.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && n < 500 {
                        let _ = g.try_chat(KEY, &ask((c + n) % 2 == 0)).await;
                        n += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(60 + next(&mut seed) % 400)).await;
        // SIGKILL while clients are mid-request.
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let mut inst = Arc::try_unwrap(gw).unwrap_or_else(|_| panic!("clients hold the instance"));
        inst.restart();
        gw = Arc::new(inst);
    }
    // Let the last process ship what its predecessor left (and close it as unsettled).
    let _ = usage(&gw, "by=key").await;
    let db = LedgerDb::sqlite(dir.path().join("sluice.db").to_str().unwrap())
        .await
        .unwrap();
    let rows = db.states().await.unwrap();
    let ledger = states(&rows);
    assert_eq!(ledger.len(), rows.len(), "one row per request id");
    let completed: BTreeSet<String> = mock.stats().completed_ids().into_iter().collect();
    let unsettled: BTreeSet<String> = ledger
        .iter()
        .filter(|(_, s)| *s == "unsettled")
        .map(|(id, _)| id.clone())
        .collect();
    let settled: BTreeSet<String> = ledger
        .iter()
        .filter(|(_, s)| *s == "settled")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ledger.values().filter(|s| *s == "open").count(), 0, "nothing left open");
    let lost: Vec<_> = completed.iter().filter(|id| !ledger.contains_key(*id)).collect();
    assert!(lost.is_empty(), "answered by the mock but not in the ledger: {lost:?}");
    let ids: BTreeSet<String> = ledger.keys().cloned().collect();
    let expected: BTreeSet<String> = completed.union(&unsettled).cloned().collect();
    assert_eq!(
        ids, expected,
        "the ledger is what the mock completed plus what was cut off"
    );
    assert!(settled.is_subset(&completed));
    assert!(completed.len() > 50, "traffic ran: {} completed", completed.len());
    assert!(!unsettled.is_empty(), "some kills landed mid-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_postgres_share_keys_and_one_ledger() {
    let pg = PostgresServer::start();
    let mock = mock_with(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("  sqlite_path: \"{{DIR}}/unused.db\"\n  postgres_url: \"{}\"", pg.url());
    let yaml = config(&mock.base_url(), &store);
    let gws: Vec<Instance> = (0..3)
        .map(|i| {
            let d = dir.path().join(format!("sluice-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Instance::spawn(BIN, &yaml.replace("{DIR}", d.to_str().unwrap()), &d)
        })
        .collect();

    // A key made on one instance works on every instance within 5 s…
    let r = gws[0]
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"id": "shared-app", "team": "ml"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["key"].as_str().unwrap().to_owned();
    let made = Instant::now();
    for gw in &gws[1..] {
        loop {
            if gw.chat(&key, &ask(false)).await.status == 200 {
                break;
            }
            assert!(made.elapsed() < Duration::from_secs(5), "not honoured after 5 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // …and one revoked on one instance stops working on every instance within 5 s.
    let r = gws[1].admin(Method::DELETE, "/admin/keys/shared-app", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked = Instant::now();
    for gw in [&gws[0], &gws[2]] {
        loop {
            if gw.chat(&key, &ask(false)).await.status == 401 {
                break;
            }
            assert!(revoked.elapsed() < Duration::from_secs(5), "still honoured after 5 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let took = revoked.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");

    // One ledger for all three.
    for gw in &gws {
        assert_eq!(gw.chat(KEY, &ask(false)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by_team = usage(&gws[2], "by=team&per=day").await;
    let rows = by_team["rows"].as_array().unwrap();
    let count = |team: &str| {
        rows.iter()
            .find(|r| r["group"] == team)
            .map_or(0, |r| r["requests"].as_i64().unwrap())
    };
    assert_eq!(count("search"), 3, "{by_team}");
    assert!(count("ml") >= 2, "{by_team}");
}
