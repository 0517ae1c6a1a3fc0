//! Limits shared by several Sluice processes through a real Redis (one node, and a three-node
//! cluster): quotas hold exactly under concurrency, token limits and budgets overshoot by at
//! most one reservation, and a store outage follows each limit's declared policy and recovers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::instances::Instance;
use sluice_testkit::services::{RedisCluster, RedisServer, redis_command};
use sluice_testkit::{key_hash, mock};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const QUOTA_KEY: &str = "sk-sluice-shared-quota";
const TOKENS_KEY: &str = "sk-sluice-shared-tokens";
const BUDGET_KEY: &str = "sk-sluice-shared-budget";
const LOCAL_KEY: &str = "sk-sluice-outage-local";
const CLOSED_KEY: &str = "sk-sluice-outage-closed";
const OPEN_KEY: &str = "sk-sluice-outage-open";
const LOAD_KEY: &str = "sk-sluice-outage-load";
const ALERTS_KEY: &str = "sk-sluice-shared-alerts";

/// Token and cost limits: the prompt is counted exactly by the mock; 40 output tokens.
const TOKEN_LIMIT: u64 = 2_000;
/// Micro-units: input 10 and output 30 per million tokens.
const BUDGET_MICROS: u64 = 20_000;

fn config(mock_url: &str, store: &str) -> String {
    format!(
        r#"
store:
  sqlite_path: "{{DIR}}/keys.db"
{store}
teams:
  - {{ name: band, limits: {{ requests_per_day: 100 }} }}
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
  - {{ id: quota, hash: "{}", team: band, limits: {{ requests_per_day: 150 }} }}
  - {{ id: tokens, hash: "{}", limits: {{ tokens_per_day: {TOKEN_LIMIT} }} }}
  - {{ id: budget, hash: "{}", limits: {{ cost_per_day: {} }} }}
  - {{ id: local, hash: "{}", limits: {{ requests_per_day: 90 }} }}
  - {{ id: closed, hash: "{}", limits: {{ requests_per_day: 1000, requests_per_day_on_outage: closed }} }}
  - {{ id: open, hash: "{}", limits: {{ requests_per_day: 1, requests_per_day_on_outage: open }} }}
  - {{ id: load, hash: "{}", limits: {{ requests_per_day: 1000000, requests_per_day_on_outage: open }} }}
  - {{ id: alerts, hash: "{}", limits: {{ soft_cost_per_day: 0.0005 }} }}
"#,
        key_hash(QUOTA_KEY),
        key_hash(TOKENS_KEY),
        key_hash(BUDGET_KEY),
        BUDGET_MICROS as f64 / 1e6,
        key_hash(LOCAL_KEY),
        key_hash(CLOSED_KEY),
        key_hash(OPEN_KEY),
        key_hash(LOAD_KEY),
        key_hash(ALERTS_KEY),
    )
}

fn instances(n: usize, yaml: &str, dir: &std::path::Path) -> Vec<Arc<Instance>> {
    (0..n)
        .map(|i| {
            let d = dir.join(format!("sluice-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let yaml = yaml.replace("{DIR}", d.to_str().unwrap());
            Arc::new(Instance::spawn(BIN, &yaml, &d))
        })
        .collect()
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": "chat", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hello there"}]})
}

/// Sends `n` requests at once, spread over the instances; returns (status, body) of each.
async fn burst(gws: &[Arc<Instance>], key: &'static str, n: usize, max_tokens: u64) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gw = gws[i % gws.len()].clone();
            tokio::spawn(async move {
                let r = gw.chat(key, &ask(max_tokens)).await;
                (
                    r.status.as_u16(),
                    serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(results: &[(u16, Value)], status: u16) -> usize {
    results.iter().filter(|(s, _)| *s == status).count()
}

/// 1 000 concurrent requests over three instances against a key allowing 150 a day in a team
/// allowing 100: exactly 100 pass, and the key's counter ends at 100 too. On a cluster the key's
/// slot (14620) comes before the team's (16052), so every refusal by the team must release what
/// the key's script took.
async fn exactly_the_quota(store: &str, ports: &[u16]) {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let gws = instances(3, &config(&mock.base_url(), store), dir.path());
    let results = burst(&gws, QUOTA_KEY, 1000, 8).await;
    let other: Vec<_> = results.iter().filter(|(s, _)| *s != 200 && *s != 429).collect();
    assert!(other.is_empty(), "only 200s and 429s: {other:?}");
    assert_eq!(count(&results, 200), 100, "exactly the quota is admitted");
    assert_eq!(count(&results, 429), 900);
    assert_eq!(mock.stats().requests.load(std::sync::atomic::Ordering::Relaxed), 100);
    for gw in &gws {
        assert_eq!(
            gw.metric("sluice_limits_store_errors_total").await,
            0.0,
            "{}",
            gw.stderr()
        );
    }
    let refused = results.iter().find(|(s, _)| *s == 429).unwrap();
    assert_eq!(refused.1["error"]["code"], "rate_limit_exceeded");
    assert_eq!(refused.1["error"]["param"], "requests_per_day");
    // Which limit a refusal names can differ on a cluster: until the team's refusals release
    // them, the key's counter holds reservations of requests the team then refuses.
    let message = refused.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("requests_per_day"), "{message}");
    let counted = |pattern: &str| ports.iter().map(|p| redis_used(*p, pattern)).sum::<u64>();
    assert_eq!(counted("sluice:{team:band}:requests:day:*"), 100);
    let released = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        counted("sluice:{key:quota}:requests:day:*") == 100
    });
    assert!(
        released,
        "key counter: {}",
        counted("sluice:{key:quota}:requests:day:*")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_redis_admit_exactly_a_daily_quota() {
    let redis = RedisServer::start();
    // A generous timeout: this test is about exactness, not outages (a debug build under 1 000
    // concurrent requests on two cores can take longer than the default 100 ms).
    exactly_the_quota(
        &format!(
            "  redis: {{ url: \"{}\", instances: 3, timeout_ms: 3000 }}",
            redis.url()
        ),
        &[redis.port],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_a_redis_cluster_admit_exactly_a_daily_quota() {
    let cluster = RedisCluster::start();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    exactly_the_quota(
        &format!(
            "  redis: {{ cluster: [{}], instances: 3, timeout_ms: 3000 }}",
            nodes.join(", ")
        ),
        &cluster.nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
    )
    .await;
}

/// The sum of one Redis hash field over the keys matching `pattern`.
fn redis_used(port: u16, pattern: &str) -> u64 {
    let keys = redis_command(port, &format!("KEYS {pattern}"));
    keys.lines()
        .filter(|l| l.starts_with("sluice:"))
        .map(|k| {
            let v = redis_command(port, &format!("HGET {k} u"));
            v.lines().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_token_limits_and_budgets_overshoot_by_at_most_one_reservation() {
    let redis = RedisServer::start();
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "  redis: {{ url: \"{}\", instances: 3, timeout_ms: 3000 }}",
        redis.url()
    );
    let gws = instances(3, &config(&mock.base_url(), &store), dir.path());
    let body_len = ask(40).to_string().len() as u64;
    // What admission reserves: a byte bound on the prompt plus max_tokens.
    let reservation_tokens = body_len.div_ceil(3) + 40;

    let results = burst(&gws, TOKENS_KEY, 300, 40).await;
    let admitted: Vec<&Value> = results.iter().filter(|(s, _)| *s == 200).map(|(_, b)| b).collect();
    assert!(
        !admitted.is_empty() && count(&results, 429) > 0,
        "some admitted, some refused"
    );
    let used: u64 = admitted
        .iter()
        .map(|b| b["usage"]["total_tokens"].as_u64().unwrap())
        .sum();
    assert!(
        used <= TOKEN_LIMIT + reservation_tokens,
        "{used} tokens used against {TOKEN_LIMIT} (+ one reservation of {reservation_tokens})"
    );
    // Settlement leaves exactly the usage in the shared counter, whichever instance served.
    let settled = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        redis_used(redis.port, "sluice:{key:tokens}:tokens:day:*") == used
    });
    assert!(
        settled,
        "the counter holds the usage: {}",
        redis_used(redis.port, "sluice:*tokens*")
    );

    let results = burst(&gws, BUDGET_KEY, 100, 40).await;
    let admitted: Vec<&Value> = results.iter().filter(|(s, _)| *s == 200).map(|(_, b)| b).collect();
    assert!(!admitted.is_empty() && count(&results, 429) > 0);
    let cost = |b: &Value| {
        let u = &b["usage"];
        (u["prompt_tokens"].as_u64().unwrap() * 10 + u["completion_tokens"].as_u64().unwrap() * 30) as f64
    };
    let spent: f64 = admitted.iter().map(|b| cost(b)).sum();
    let reservation_cost = ((body_len.div_ceil(3) * 10 + 40 * 30) as f64).ceil();
    assert!(
        spent <= (BUDGET_MICROS as f64) + reservation_cost,
        "spent {spent} µ against a budget of {BUDGET_MICROS} (+ one reservation of {reservation_cost})"
    );
    let refused = results.iter().find(|(s, _)| *s == 429).unwrap();
    assert_eq!(refused.1["error"]["code"], "budget_exceeded");
}

/// Requests on a key with an `open` outage policy, in a loop until `stop`: every one must be
/// answered 200 within `bound`; returns how many were sent and the slowest.
async fn steady_load(gw: Arc<Instance>, stop: Arc<std::sync::atomic::AtomicBool>, bound: Duration) -> (u64, Duration) {
    let mut n = 0;
    let mut slowest = Duration::ZERO;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
        let t = Instant::now();
        let r = gw.chat(LOAD_KEY, &ask(4)).await;
        let took = t.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(took <= bound, "a request waited {took:?} (> {bound:?})");
        slowest = slowest.max(took);
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (n, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_follows_each_limits_policy_and_recovers() {
    let mut redis = RedisServer::start();
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("  redis: {{ url: \"{}\", timeout_ms: 200, instances: 3 }}", redis.url());
    let gw = instances(1, &config(&mock.base_url(), &store), dir.path()).remove(0);
    assert_eq!(gw.metric("sluice_limits_store_up").await, 1.0);
    for key in [LOCAL_KEY, CLOSED_KEY, OPEN_KEY] {
        let r = gw.chat(key, &ask(4)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        gw.chat(OPEN_KEY, &ask(4)).await.status,
        429,
        "1 per day, while Redis is up"
    );

    // A steady load throughout: no request waits longer than the store timeout (plus the
    // request's own time).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bound = Duration::from_millis(200 + 800);
    let load = tokio::spawn(steady_load(gw.clone(), stop.clone(), bound));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Stopped.
    redis.stop();
    let t = Instant::now();
    let r = gw.chat(CLOSED_KEY, &ask(4)).await;
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "limits_store_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    for _ in 0..3 {
        assert_eq!(gw.chat(OPEN_KEY, &ask(4)).await.status, 200, "open: admitted uncounted");
    }
    // Local: 90 ÷ 3 instances = 30 while the store is down.
    let statuses = {
        let mut s = Vec::new();
        for _ in 0..40 {
            s.push(gw.chat(LOCAL_KEY, &ask(4)).await.status.as_u16());
        }
        s
    };
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 30, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 10);
    assert_eq!(gw.metric("sluice_limits_store_up").await, 0.0);
    let m = gw.metrics().await;
    let series = |policy: &str, decision: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "sluice_limits_outage_decisions_total{{policy=\"{policy}\",decision=\"{decision}\"}}"
                ))?
                .trim()
                .parse::<f64>()
                .ok()
            })
            .unwrap_or(0.0)
    };
    assert!(series("closed", "refused") >= 1.0, "{m}");
    assert_eq!(series("local", "refused"), 10.0, "{m}");
    assert!(series("local", "admitted") >= 30.0, "{m}");
    assert!(series("open", "admitted") >= 3.0, "{m}");

    // Restarted empty: back within seconds, with its own counters.
    redis.restart_empty();
    let back = Instant::now();
    loop {
        if gw.chat(CLOSED_KEY, &ask(4)).await.status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "not back after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.metric("sluice_limits_store_up").await, 1.0);

    // Paused: the store holds the connection and answers nothing.
    redis.pause();
    let t = Instant::now();
    let r = gw.chat(CLOSED_KEY, &ask(4)).await;
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    assert_eq!(r.status, 503);
    redis.resume();
    let back = Instant::now();
    loop {
        if gw.chat(CLOSED_KEY, &ask(4)).await.status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "not back after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, slowest) = load.await.unwrap();
    assert!(sent > 20, "the load kept going: {sent} requests, slowest {slowest:?}");
    // One line per change of state: two outages, two recoveries.
    let log = gw.stderr();
    assert_eq!(log.matches("shared limits store unreachable").count(), 2, "{log}");
    assert_eq!(log.matches("shared limits store reachable again").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_alerts_go_out_once_per_threshold_across_instances() {
    let redis = RedisServer::start();
    let mock = mock().await;
    let (url, got) = sluice_testkit::webhook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "  redis: {{ url: \"{}\", instances: 3, timeout_ms: 3000 }}",
        redis.url()
    );
    let yaml = config(&mock.base_url(), &store).replacen(
        "prices:",
        &format!("budget_alerts: {{ url: \"{url}\", thresholds: [50, 100] }}\nprices:"),
        1,
    );
    let gws = instances(3, &yaml, dir.path());
    // A soft budget of 500 µ: every instance's requests cross both thresholds together.
    let results = burst(&gws, ALERTS_KEY, 60, 8).await;
    assert_eq!(count(&results, 200), 60, "a soft budget never refuses");
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alerts = got.lock().unwrap().clone();
    let mut thresholds: Vec<u64> = alerts
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["threshold_percent"]
                .as_u64()
                .unwrap()
        })
        .collect();
    thresholds.sort_unstable();
    assert_eq!(
        thresholds,
        [50, 100],
        "each threshold once, from whichever instance crossed it"
    );
}

/// Without `instances` in the config, each instance announces itself in Redis every second and
/// counts the others: the `local` outage share follows how many are really running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_are_counted_live_and_an_outage_shares_the_limit_among_them() {
    let mut redis = RedisServer::start();
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("  redis: {{ url: \"{}\", timeout_ms: 200 }}", redis.url());
    let mut gws = instances(3, &config(&mock.base_url(), &store), dir.path());
    let counted = |gws: Vec<Arc<Instance>>, n: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut all = true;
            for gw in &gws {
                all &= gw.metric("sluice_limits_store_instances").await == n;
            }
            if all {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(counted(gws.clone(), 3.0).await, "three instances count three");
    // One goes away without a word (SIGKILL): within three heartbeats the others count two.
    let gone = gws.pop().unwrap();
    Arc::try_unwrap(gone).unwrap_or_else(|_| panic!("shared")).kill();
    assert!(counted(gws.clone(), 2.0).await, "the others count two");

    // Redis stops: the last count stands, and `local` allows 90 ÷ 2 on each.
    redis.stop();
    let gw = &gws[0];
    let mut admitted = 0;
    for _ in 0..50 {
        if gw.chat(LOCAL_KEY, &ask(4)).await.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 45);
    assert_eq!(gw.metric("sluice_limits_store_instances").await, 2.0);
}
