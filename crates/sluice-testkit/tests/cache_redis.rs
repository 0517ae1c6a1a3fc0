//! The cache's Redis tier, over real sockets and a real Redis: three gateways sharing it (a
//! miss on one is a hit on the others, never across tenants; a large answer is stored
//! compressed; a purge on one reaches all three), and an outage (one timeout, then memory
//! only, counted; back by itself).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod cache_support;

use std::time::{Duration, Instant};

use cache_support::*;
use http::Method;
use serde_json::json;
use sluice_testkit::services::{RedisCluster, RedisServer, redis_command};
use sluice_testkit::*;

/// The cache tests' config with `store.redis` shared, in a directory of the gateway's own.
async fn instance(mock: &sluice_mock::MockServer, redis: &RedisServer, cache: &str) -> TestGateway {
    on_store(mock, &format!("{{ url: \"{}\", instances: 3 }}", redis.url()), cache).await
}

async fn on_store(mock: &sluice_mock::MockServer, redis: &str, cache: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}\nstore:\n  sqlite_path: \"{}\"\n  redis: {redis}\ncache: {{ {cache} }}\n",
        config(mock, ""),
        dir.path().join("keys.db").display(),
    );
    TestGateway::start_in(&yaml, dir).await
}

/// A series' value in a Prometheus text page (0 when absent).
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (at most 10 s) until `series` on `gw` reaches `at_least`.
async fn until_metric(gw: &TestGateway, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(&gw.metrics().await, series);
        if v >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {v}, below {at_least}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bytes a tenant holds in a gateway's memory, by its stats.
async fn held(gw: &TestGateway, tenant: &str) -> u64 {
    let stats = gw.admin(Method::GET, "/admin/cache/stats", None).await.json();
    stats["largest_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .map_or(0, |t| t["bytes"].as_u64().unwrap())
}

/// The strings in a raw RESP reply (an array of bulk strings, or one).
fn resp_strings(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with(['*', '$']))
        .map(str::to_owned)
        .collect()
}

const STORES: &str = "sluice_cache_redis_stores_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_entries_through_redis_never_across_tenants_and_purge_together() {
    let redis = RedisServer::start();
    let mock = mock().await;
    let a = instance(&mock, &redis, "redis_timeout_ms: 2000").await;
    let b = instance(&mock, &redis, "redis_timeout_ms: 2000").await;
    let c = instance(&mock, &redis, "redis_timeout_ms: 2000").await;

    // A miss on one instance, stored in Redis in the background…
    let question = ask("chat", "What is shared?");
    let first = a.chat(KEY, &question).await;
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    until_metric(&a, STORES, 1.0).await;
    // …is a hit on the other two, with the same answer and usage.
    for gw in [&b, &c] {
        let r = gw.chat(KEY, &question).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-sluice-cache"), Some("hit"));
        assert_eq!(text(&r), text(&first));
        for n in ["prompt_tokens", "completion_tokens", "total_tokens"] {
            assert_eq!(r.json()["usage"][n], first.json()["usage"][n]);
        }
    }
    assert_eq!(requests(&mock), 1);
    // Another key of the same tenant shares it; another tenant does not.
    assert_eq!(b.chat(ACME_2, &question).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(b.chat(GLOBEX, &question).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 2);
    let page = b.metrics().await;
    assert!(
        metric(&page, "sluice_cache_redis_lookups_total{result=\"hit\"}") >= 1.0,
        "{page}"
    );

    // A long answer is stored compressed, and still a hit elsewhere.
    let long = json!({"model": "chat", "messages": [{"role": "user", "content": "Tell me at length."}],
                      "temperature": 0.2, "mock": {"chunks": 600}});
    let stored = metric(&a.metrics().await, STORES);
    let made = a.chat(KEY, &long).await;
    assert!(text(&made).len() > 2_000, "{}", text(&made).len());
    until_metric(&a, STORES, stored + 1.0).await;
    let keys = resp_strings(&redis_command(redis.port, "KEYS sluice:cache:{*}:*"));
    let tags: Vec<String> = keys
        .iter()
        .filter(|k| !k.ends_with(":index"))
        .flat_map(|k| resp_strings(&redis_command(redis.port, &format!("GETRANGE {k} 0 0"))))
        .collect();
    assert!(
        tags.iter().any(|t| t == "z"),
        "no compressed entry among {keys:?}: {tags:?}"
    );
    assert!(tags.iter().any(|t| t == "j"), "no plain entry among {keys:?}: {tags:?}");
    let replayed = c.chat(KEY, &long).await;
    assert_eq!(replayed.header("x-sluice-cache"), Some("hit"));
    assert_eq!(text(&replayed), text(&made));
    assert_eq!(requests(&mock), 3);

    // B and C hold acme's entries in memory now. A purge of acme on A reaches Redis and both.
    assert!(held(&b, "acme").await > 0 && held(&c, "acme").await > 0);
    let purged = a.admin(Method::DELETE, "/admin/cache?tenant=acme", None).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert!(purged.json()["purged"].as_u64().unwrap() >= 2, "{}", purged.text());
    assert_eq!(purged.json()["purged_shared"], 2, "{}", purged.text());
    for gw in [&b, &c] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while held(gw, "acme").await > 0 {
            assert!(Instant::now() < deadline, "the purge did not reach an instance");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(c.chat(KEY, &question).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 4);
    // Globex's entry was not purged.
    assert_eq!(c.chat(GLOBEX, &question).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(requests(&mock), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_costs_one_timeout_then_memory_serves_and_the_tier_comes_back() {
    let redis = RedisServer::start();
    let mock = mock().await;
    let gw = instance(&mock, &redis, "redis_timeout_ms: 300").await;
    let kept = ask("chat", "Kept in memory?");
    assert_eq!(gw.chat(KEY, &kept).await.header("x-sluice-cache"), Some("miss"));
    until_metric(&gw, STORES, 1.0).await;

    // Redis stops answering (its connections stay open).
    redis.pause();
    let mut answered = 0;
    for n in 0..12 {
        let r = gw.chat(KEY, &ask("chat", &format!("New question {n}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-sluice-cache"), Some("miss"));
        answered += 1;
    }
    let hit = gw.chat(KEY, &kept).await;
    assert_eq!(hit.header("x-sluice-cache"), Some("hit"), "memory still serves");
    assert_eq!(answered, 12);
    let page = gw.metrics().await;
    // One lookup waited for the timeout; the tier was then down and skipped, not waited for.
    assert_eq!(
        metric(&page, "sluice_cache_redis_lookups_total{result=\"error\"}"),
        1.0,
        "{page}"
    );
    assert!(
        metric(&page, "sluice_cache_redis_lookups_total{result=\"skipped\"}") >= 11.0,
        "{page}"
    );
    assert_eq!(metric(&page, "sluice_cache_redis_up"), 0.0);

    // Back: a probe finds it, and entries are shared again.
    redis.resume();
    until_metric(&gw, "sluice_cache_redis_up", 1.0).await;
    let stored = metric(&gw.metrics().await, STORES);
    assert_eq!(
        gw.chat(KEY, &ask("chat", "After the outage"))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    until_metric(&gw, STORES, stored + 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_entries_are_shared_and_purged_too() {
    let cluster = RedisCluster::start();
    let store = format!(
        "{{ cluster: [{}], instances: 2, timeout_ms: 2000 }}",
        cluster
            .urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mock = mock().await;
    let a = on_store(&mock, &store, "").await;
    let b = on_store(&mock, &store, "").await;
    // Several tenants and questions, so entries land on more than one node.
    let mut n = 0.0;
    for (key, q) in [(KEY, "one"), (KEY, "two"), (GLOBEX, "one"), (SOLO, "three")] {
        assert_eq!(
            a.chat(key, &ask("chat", q)).await.header("x-sluice-cache"),
            Some("miss")
        );
        n += 1.0;
        until_metric(&a, STORES, n).await;
        assert_eq!(b.chat(key, &ask("chat", q)).await.header("x-sluice-cache"), Some("hit"));
    }
    assert_eq!(requests(&mock), 4);
    // A purge by route reaches every tenant's entries on every node.
    let purged = b.admin(Method::DELETE, "/admin/cache?route=cached", None).await;
    assert_eq!(purged.json()["purged_shared"], 4, "{}", purged.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.admin(Method::GET, "/admin/cache/stats", None).await.json()["entries"] != 0 {
        assert!(Instant::now() < deadline, "the purge did not reach the other instance");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.chat(SOLO, &ask("chat", "three")).await.header("x-sluice-cache"),
        Some("miss")
    );
}
