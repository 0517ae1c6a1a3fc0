//! Restart without dropping a request: a new process binds the same port (SO_REUSEPORT) while
//! the old one serves, takes every new connection, and the old one drains its requests and
//! streams after SIGTERM, then exits. Under steady load with long streams in flight (HTTP/1.1
//! keep-alive, a new connection per request, and HTTP/2), no caller sees a failure, every
//! request is logged once, and the spend ledger (both processes writing to one directory)
//! holds every request settled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sluice_mock::MockConfig;
use sluice_store::ledger::LedgerDb;
use sluice_testkit::instances::Instance;
use sluice_testkit::{key_hash, mock_with, request};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const KEY: &str = "sk-sluice-handover-test";

fn config(mock_url: &str, dir: &std::path::Path) -> String {
    format!(
        r#"
store: {{ sqlite_path: "{}" }}
deployments:
  - {{ name: mock, provider: openai, base_url: "{mock_url}", model: upstream, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock] }}
routes:
  - name: default
keys:
  - {{ id: app, hash: "{}" }}
ledger: {{ ship_interval_ms: 100 }}
"#,
        dir.join("sluice.db").display(),
        key_hash(KEY)
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    streams: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

/// One caller: alternates long streams and plain requests over a shared keep-alive pool until
/// told to stop.
async fn caller(
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    stream: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let body = if stream {
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "a long one"}],
               "mock": {"chunks": 10, "chunk_delay_ms": 60}})
    } else {
        json!({"model": "chat", "messages": [{"role": "user", "content": "a short one"}],
               "mock": {"latency_ms": 30}})
    };
    let body = Bytes::from(body.to_string());
    while !stop.load(Ordering::Relaxed) {
        let req = request(Method::POST, &url, Some(KEY), &[], body.clone());
        let outcome = async {
            let resp = client.request(req).await.map_err(|e| format!("request: {e:?}"))?;
            let status = resp.status();
            let text = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e:?}"))?
                .to_bytes();
            let text = String::from_utf8_lossy(&text).into_owned();
            if status != 200 {
                return Err(format!("{status}: {text}"));
            }
            if stream && !text.contains("data: [DONE]") {
                return Err(format!("stream cut short: {text}"));
            }
            Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(20), outcome).await {
            Ok(Ok(())) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if stream {
                    tally.streams.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Err(e)) => tally.failures.lock().unwrap().push(e),
            Err(_) => tally.failures.lock().unwrap().push("no answer in 20 s".to_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_process_takes_the_port_and_the_old_one_drains_without_a_failed_request() {
    let mock = mock_with(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(&mock.base_url(), dir.path());
    let old = Arc::new(Instance::spawn(BIN, &yaml, &dir.path().join("old")));
    let url = format!("http://{}/v1/chat/completions", old.addr);

    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Callers on a keep-alive pool, and callers that open a new connection for every request
    // (those are what an old listener's accept queue would hold when it closes).
    let fresh: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    // And HTTP/2 callers (cleartext, prior knowledge): the old process ends theirs with GOAWAY.
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let callers: Vec<_> = (0..20)
        .map(|i| {
            let client = match i {
                0..12 => client.clone(),
                12..16 => fresh.clone(),
                _ => h2.clone(),
            };
            tokio::spawn(caller(client, url.clone(), i % 2 == 0, stop.clone(), tally.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The new process binds the same port while the old one serves.
    let new_dir = dir.path().join("new");
    let new = {
        let old = old.clone();
        tokio::task::spawn_blocking(move || old.successor(&new_dir))
            .await
            .unwrap()
    };
    assert_ne!(new.pid(), old.pid());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served_before = tally.ok.load(Ordering::Relaxed);

    // SIGTERM to the old one: it drains (streams in flight finish) and exits by itself.
    old.terminate();
    let mut old = Arc::try_unwrap(old).unwrap_or_else(|_| panic!("the instance is shared"));
    let (old, status) = tokio::task::spawn_blocking(move || {
        let status = old.wait_exit(Duration::from_secs(15));
        (old, status)
    })
    .await
    .unwrap();
    let status = status.unwrap_or_else(|| panic!("the old process did not exit: {}", old.stderr()));
    assert!(status.success(), "{status}: {}", old.stderr());
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    let ok = tally.ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok > served_before + 50,
        "the new process served: {served_before} then {ok}"
    );
    assert!(tally.streams.load(Ordering::Relaxed) >= 20, "streams were in flight");
    assert!(!old.stderr().contains("drain time ran out"), "{}", old.stderr());

    // Both wrote to the one ledger directory (the new one in its own slot); once the new one
    // has stopped too, every request is in the ledger, settled.
    new.terminate();
    let mut new = new;
    let (new, status) = tokio::task::spawn_blocking(move || {
        let status = new.wait_exit(Duration::from_secs(15));
        (new, status)
    })
    .await
    .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{}", new.stderr());
    // Every request is logged exactly once, by one of the two processes.
    let (old_log, new_log) = (old.access_log().len() as u64, new.access_log().len() as u64);
    eprintln!(
        "{ok} requests ({} streams), none failed: {old_log} answered by the old process, {new_log} by the new",
        tally.streams.load(Ordering::Relaxed)
    );
    assert!(old_log > 0 && new_log > 0, "both served: {old_log} + {new_log}");
    assert_eq!(old_log + new_log, ok, "one log line per request");

    let db = LedgerDb::sqlite(dir.path().join("sluice.db").to_str().unwrap())
        .await
        .unwrap();
    let rows = db.states().await.unwrap();
    assert_eq!(rows.len() as u64, ok, "one ledger row per request");
    let unsettled: Vec<_> = rows.iter().filter(|(_, s)| s != "settled").collect();
    assert!(unsettled.is_empty(), "{unsettled:?}");
    assert_eq!(mock.stats().completed_ids().len() as u64, ok);
}
