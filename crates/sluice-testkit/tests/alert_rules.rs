//! Alert rules over real traffic: two gateways sharing Redis both see a model's error rate go
//! over its threshold, and the webhook (signed, as budget alerts are) gets the breach once and,
//! when the window has passed, the recovery once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::services::RedisServer;
use sluice_testkit::*;

async fn instance(mock: &sluice_mock::MockServer, redis: &RedisServer, hook: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}\nstore:\n  sqlite_path: \"{}\"\n  redis: {{ url: \"{}\" }}\nbudget_alerts: {{ url: \"{hook}\", secret_env: SLUICE_TEST_ADMIN_TOKEN }}\nalerts:\n  every_ms: 100\n  rules:\n    - {{ name: chat-errors, metric: error_rate, by: model, window_ms: 2000, above: 0.5, min_requests: 5 }}\n",
        config_with(mock),
        dir.path().join("keys.db").display(),
        redis.url(),
    );
    TestGateway::start_in(&yaml, dir).await
}

fn kinds(got: &std::sync::Mutex<Vec<(http::HeaderMap, bytes::Bytes)>>) -> Vec<(String, Value)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(h, b)| {
            assert!(
                h.get("x-sluice-signature").is_some(),
                "signed with the budget alerts' secret"
            );
            let v: Value = serde_json::from_slice(b).unwrap();
            (v["type"].as_str().unwrap_or("").to_owned(), v)
        })
        .collect()
}

async fn until(got: &std::sync::Mutex<Vec<(http::HeaderMap, bytes::Bytes)>>, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kinds(got).iter().any(|(k, _)| k == kind) {
        assert!(Instant::now() < deadline, "no {kind}: {:?}", kinds(got));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_breach_is_sent_once_across_instances_and_so_is_its_recovery() {
    let mock = mock().await;
    let redis = RedisServer::start();
    let (hook, got) = webhook_receiver().await;
    let a = instance(&mock, &redis, &hook).await;
    let b = instance(&mock, &redis, &hook).await;
    let failing = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 500}});
    for gw in [&a, &b] {
        for _ in 0..8 {
            assert!(gw.chat(KEY, &failing).await.status.is_server_error());
        }
    }
    until(&got, "alert_firing").await;
    // Both instances keep seeing the breach for many evaluations: still one alert.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sent = kinds(&got);
    let firing: Vec<&Value> = sent
        .iter()
        .filter(|(k, _)| k == "alert_firing")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(firing.len(), 1, "{sent:?}");
    let f = firing[0];
    assert_eq!(
        (f["rule"].as_str(), f["by"].as_str(), f["group"].as_str()),
        (Some("chat-errors"), Some("model"), Some("chat"))
    );
    assert_eq!(f["metric"], "error_rate");
    assert!(
        f["value"].as_f64().unwrap() > 0.5 && f["requests"].as_u64().unwrap() >= 5,
        "{f}"
    );

    // No traffic: once the window has passed, the rate cannot be told and the alert recovers.
    until(&got, "alert_recovered").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sent = kinds(&got);
    let count = |kind: &str| sent.iter().filter(|(k, _)| k == kind).count();
    assert_eq!((count("alert_firing"), count("alert_recovered")), (1, 1), "{sent:?}");
}
