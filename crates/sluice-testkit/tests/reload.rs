//! Hot reload: validated fully, swapped atomically, invalid files keep the old config, in-flight
//! requests finish under the config they started with, and live state survives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::json;
use sluice_testkit::*;

fn body(model: &str, mock: serde_json::Value) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "x"}], "mock": mock})
}

fn with_extra(mock: &sluice_mock::MockServer) -> String {
    config_with(mock).replace(
        "  - { name: other, deployments: [mock-a] }",
        "  - { name: other, deployments: [mock-a] }\n  - { name: extra, deployments: [mock-a] }",
    )
}

#[tokio::test]
async fn reload_under_load_loses_no_request() {
    let mock = mock().await;
    let gw = Arc::new(TestGateway::start(&config_with(&mock)).await);
    let (a, b) = (config_with(&mock), with_extra(&mock));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let gw = gw.clone();
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..100 {
                statuses.push(gw.chat(KEY, &body("chat", json!({"chunks": 2}))).await.status.as_u16());
            }
            statuses
        }));
    }
    let mut swaps = 0;
    for i in 0..10 {
        gw.write_config(if i % 2 == 0 { &b } else { &a });
        let r = gw.admin(Method::POST, "/admin/reload", None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json()["reloaded"] == true {
            swaps += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        let statuses = w.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "every request served: {statuses:?}");
    }
    assert_eq!(swaps, 10);
}

#[tokio::test]
async fn an_invalid_file_keeps_the_old_config_serving() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let before = gw.version().await;
    std::fs::write(&gw.config_path, "routes:\n  - name: broken\n    model: nowhere\n").unwrap();
    let r = gw.admin(Method::POST, "/admin/reload", None).await;
    assert_eq!(r.status, 422);
    assert!(
        r.text().contains("line 3") && r.text().contains("routes[0].model"),
        "{}",
        r.text()
    );
    assert_eq!(gw.version().await, before);
    assert_eq!(gw.chat(KEY, &body("chat", json!({}))).await.status, 200);
    std::fs::write(&gw.config_path, "server: [unclosed").unwrap();
    assert_eq!(gw.admin(Method::POST, "/admin/reload", None).await.status, 422);
    assert!(
        gw.metrics()
            .await
            .contains("sluice_config_reloads_total{result=\"error\"} 2")
    );
}

#[tokio::test]
async fn in_flight_requests_finish_under_their_config() {
    let mock = mock().await;
    let gw = Arc::new(TestGateway::start(&with_extra(&mock)).await);
    let slow = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat(KEY, &body("extra", json!({"latency_ms": 400}))).await })
    };
    assert!(eventually(|| mock_stats(&mock)["in_flight"] == 1).await);
    gw.write_config(&config_with(&mock));
    let r = gw.admin(Method::POST, "/admin/reload", None).await;
    assert_eq!(r.json()["reloaded"], true);
    assert_eq!(
        gw.chat(KEY, &body("extra", json!({}))).await.status,
        404,
        "new requests see the new config"
    );
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request kept its snapshot: {}", r.text());
}

#[tokio::test]
async fn the_file_watcher_reloads_and_live_state_survives() {
    let a = mock().await;
    let b = mock().await;
    let yaml = |comment: &str| {
        format!(
            "# {comment}\ndeployments:\n  - {{ name: a, provider: openai, base_url: \"{}\", model: up }}\n  - {{ name: b, provider: openai, base_url: \"{}\", model: up }}\nmodels:\n  - {{ name: chat, deployments: [a, b] }}\nkeys:\n  - {{ id: t, hash: \"{}\" }}\n",
            a.base_url(),
            b.base_url(),
            key_hash(KEY)
        )
    };
    let gw = TestGateway::start_watching(&yaml("one")).await;
    for _ in 0..3 {
        assert_eq!(gw.chat(KEY, &body("chat", json!({"chunks": 1}))).await.status, 200);
    }
    let before = gw.version().await;
    gw.write_config(&yaml("two"));
    let changed = version_moves_from(&gw, &before).await;
    assert!(changed, "the watcher picked up the change");
    // Round-robin continues where it was (a, b, a → b), not from the start.
    assert_eq!(gw.chat(KEY, &body("chat", json!({"chunks": 1}))).await.status, 200);
    assert_eq!(
        (mock_stats(&a)["requests"].clone(), mock_stats(&b)["requests"].clone()),
        (json!(2), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_file_stops_with_the_reload_even_while_the_store_stalls() {
    let pg = sluice_testkit::services::PostgresServer::start();
    let valve = sluice_testkit::valve::Valve::start(([127, 0, 0, 1], pg.port).into()).await;
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "store:\n  sqlite_path: \"{}\"\n  postgres_url: \"postgres://postgres@{}/postgres\"\n",
        dir.path().join("unused.db").display(),
        valve.addr
    );
    let with_limited = format!("{store}{}", config_with(&mock));
    let without: String = with_limited
        .lines()
        .filter(|l| !l.contains("id: limited"))
        .map(|l| format!("{l}\n"))
        .collect();
    let gw = Arc::new(TestGateway::start_in(&with_limited, dir).await);
    assert_eq!(gw.chat(LIMITED_KEY, &body("other", json!({}))).await.status, 200);

    // The store stops answering; the file loses the key; a reload starts (and waits on the
    // store for the run-time keys, up to its pool's acquire timeout).
    let before = gw.version().await;
    valve.shut();
    gw.write_config(&without);
    let reload = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.admin(Method::POST, "/admin/reload", None).await })
    };
    // Once the new config serves, the key it removed must fail: never the new config with the
    // old keys.
    let mut status = 0;
    for _ in 0..400 {
        let serving = gw.version().await;
        status = gw.chat(LIMITED_KEY, &body("other", json!({}))).await.status.as_u16();
        assert!(
            serving == before || status == 401,
            "the new config served the key it removed ({status})"
        );
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        status, 401,
        "the removed key stopped with the new config, store or no store"
    );
    assert_eq!(gw.chat(KEY, &body("chat", json!({}))).await.status, 200);

    valve.open();
    let r = tokio::time::timeout(Duration::from_secs(30), reload)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.chat(LIMITED_KEY, &body("other", json!({}))).await.status, 401);
    assert_eq!(gw.chat(KEY, &body("chat", json!({}))).await.status, 200);
}

/// How a Kubernetes ConfigMap updates a mounted file: the path is a symlink to `..data/FILE`,
/// `..data` a symlink to a timestamped directory, and an update writes a new directory and
/// renames a new `..data` over the old one — the file itself is never written.
#[tokio::test]
async fn a_config_map_style_update_through_symlinks_is_reloaded() {
    use std::os::unix::fs::symlink;
    let mock = mock().await;
    let gw = TestGateway::start_watching(&config_with(&mock)).await;
    let dir = gw.dir.path();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    // Mount the running config the ConfigMap way.
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/sluice.yaml"), &text).unwrap();
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/sluice.yaml", dir.join("sluice.yaml.new")).unwrap();
    std::fs::rename(dir.join("sluice.yaml.new"), &gw.config_path).unwrap();
    // Let the watcher see the (same) config once under its new inode.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = gw.version().await;

    // The update: a new directory, and `..data` swapped to it atomically.
    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/sluice.yaml"), format!("# updated\n{text}")).unwrap();
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let changed = version_moves_from(&gw, &before).await;
    assert!(changed, "the watcher followed the swapped symlink");
}

/// Whether the serving config's version leaves `before` within five seconds.
async fn version_moves_from(gw: &TestGateway, before: &str) -> bool {
    for _ in 0..100 {
        if gw.version().await != before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
