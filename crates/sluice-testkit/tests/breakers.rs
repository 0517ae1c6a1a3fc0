//! Deployment health with the mock on real sockets: a failing deployment, a slow one, a dead one
//! that heals, Retry-After, the breaker's states, the retry budget under a failure storm,
//! capacity-aware balancing, active health checks, and health state across a config reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{ask, deployment, requests};
use serde_json::{Value, json};
use sluice_mock::{Knobs, MockConfig, MockServer};
use sluice_testkit::*;

/// A config whose alias `chat` spreads over `deps` (name, base URL).
fn config(deps: &[(&str, String)], model_extra: &str, route_extra: &str, breaker: &str) -> String {
    let names: Vec<&str> = deps.iter().map(|(n, _)| *n).collect();
    format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [{}]{model_extra} }}\nroutes:\n  - {{ name: default{route_extra} }}\nbreaker: {{ {breaker} }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deps.iter().map(|(n, b)| deployment(n, b)).collect::<String>(),
        names.join(", "),
        key_hash(KEY)
    )
}

/// A gateway on [`config`].
async fn gateway(deps: &[(&str, String)], model_extra: &str, route_extra: &str, breaker: &str) -> Arc<TestGateway> {
    Arc::new(TestGateway::start(&config(deps, model_extra, route_extra, breaker)).await)
}

/// Sends `n` requests, `concurrency` at a time; returns the statuses.
async fn load(gw: &Arc<TestGateway>, n: usize, concurrency: usize, body: Value) -> Vec<u16> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (gw, next, body) = (gw.clone(), next.clone(), body.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    out.push(gw.chat(KEY, &body).await.status.as_u16());
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deployment_failing_thirty_percent_costs_callers_nothing() {
    let a = mock_knobs(Knobs::default()).await;
    let b = mock_knobs(Knobs::default()).await;
    let c = mock_knobs(Knobs {
        fail_percent: Some(30),
        ..Knobs::default()
    })
    .await;
    let gw = gateway(
        &[("a", a.base_url()), ("b", b.base_url()), ("c", c.base_url())],
        "",
        ", max_attempts: 3, retry: { backoff_ms: 0, budget_percent: 50 }",
        "",
    )
    .await;
    let statuses = load(&gw, 10_000, 32, ask()).await;
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "every failure was retried elsewhere");
    let attempts: Vec<Value> = gw
        .log_lines(10_000)
        .await
        .iter()
        .flat_map(|l| l["attempts"].as_array().cloned().unwrap_or_default())
        .collect();
    let failed: Vec<&Value> = attempts.iter().filter(|a| a["outcome"] != "ok").collect();
    // How much traffic c gets before its breaker opens is chance (the mock fails at random) and
    // timing (how long the run lasts against the open period). What does not depend on either:
    // the breaker (default: five failures in a row, or half of twenty in a window) cannot shut c
    // out before it failed five times; only c fails; and every failed attempt was followed by one
    // more attempt, which answered — so attempts = requests + failed attempts.
    assert!(failed.len() >= 5, "the failing deployment failed: {}", failed.len());
    assert!(failed.iter().all(|a| a["deployment"] == "c"), "{failed:?}");
    assert_eq!(attempts.len(), 10_000 + failed.len(), "one retry per failed attempt");
    let m = gw.metrics().await;
    assert!(
        m.contains("sluice_retries_total{route=\"default\",decision=\"allowed\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_aware_balancing_starves_a_fifty_times_slower_deployment() {
    // Fifty times slower: a busy machine can stretch a 4 ms answer several times over (and
    // peak-EWMA keeps such a peak), never to the slow one's 200 ms.
    let fast = Knobs {
        latency_ms: Some(4),
        ..Knobs::default()
    };
    let a = mock_knobs(fast.clone()).await;
    let b = mock_knobs(fast).await;
    let slow = mock_knobs(Knobs {
        latency_ms: Some(200),
        ..Knobs::default()
    })
    .await;
    let gw = gateway(
        &[("a", a.base_url()), ("b", b.base_url()), ("slow", slow.base_url())],
        ", balance: latency",
        "",
        "",
    )
    .await;
    let statuses = load(&gw, 2_000, 8, ask()).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let share = requests(&slow) as f64 / 2_000.0;
    assert!(share <= 0.05, "the slow deployment got {:.1} %", share * 100.0);
    // It is still measured, on the balancer's schedule: its first request, then one per second.
    assert!(requests(&slow) >= 1);
    // Round-robin, for contrast, gives it a third.
    let rr = config(
        &[("a", a.base_url()), ("b", b.base_url()), ("slow", slow.base_url())],
        "",
        "",
        "",
    );
    let before = requests(&slow);
    let gw = Arc::new(TestGateway::start(&rr).await);
    load(&gw, 300, 8, ask()).await;
    assert_eq!(requests(&slow) - before, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_deployment_is_ejected_and_returns_when_it_heals() {
    let live = mock().await;
    // Nothing listens here yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}/v1");
    let gw = gateway(
        &[("live", live.base_url()), ("dead", dead)],
        "",
        ", max_attempts: 2, retry: { backoff_ms: 0 }",
        "consecutive_failures: 3, open_ms: 200, max_open_ms: 400",
    )
    .await;
    let statuses = load(&gw, 10_000, 8, ask()).await;
    assert!(statuses.iter().all(|s| *s == 200), "retried onto the live one");
    let health = gw.admin(http::Method::GET, "/admin/health", None).await.json();
    let dead_state = health["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "dead")
        .unwrap()
        .clone();
    assert!(dead_state["ejections"].as_u64().unwrap() >= 1, "{health}");
    // While it is out, it is not tried on every request: far fewer attempts than requests.
    let attempts: usize = gw
        .log_lines(10_000)
        .await
        .iter()
        .map(|l| l["attempts"].as_array().unwrap().len())
        .sum();
    assert!(attempts < 12_000, "{attempts} attempts for 10 000 requests");

    // It heals: a mock starts on its port. Within an open period or two it is probed and back.
    let healed = MockServer::start(SocketAddr::from(([127, 0, 0, 1], port)), MockConfig::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests(&healed) < 20 {
        assert!(Instant::now() < deadline, "never came back");
        load(&gw, 20, 2, ask()).await;
    }
    let health = gw.admin(http::Method::GET, "/admin/health", None).await.json();
    assert!(health.to_string().contains("\"state\":\"closed\""), "{health}");
    let m = gw.metrics().await;
    assert!(
        m.contains("sluice_breaker_transitions_total{deployment=\"dead\",to=\"open\"}"),
        "{m}"
    );
    assert!(
        m.contains("sluice_breaker_transitions_total{deployment=\"dead\",to=\"closed\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_takes_a_deployment_out_for_that_long() {
    let limited = mock_knobs(Knobs {
        status: Some(429),
        retry_after_s: Some(60),
        ..Knobs::default()
    })
    .await;
    let fine = mock().await;
    let gw = gateway(
        &[("limited", limited.base_url()), ("fine", fine.base_url())],
        "",
        ", max_attempts: 2, retry: { backoff_ms: 0 }",
        "",
    )
    .await;
    let started = Instant::now();
    let statuses = load(&gw, 10_000, 8, ask()).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the test must stay inside the pause"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Only the requests already on their way when the first 429 came back reached it.
    let asked = requests(&limited);
    assert!(
        (1..=8).contains(&asked),
        "asked {asked} times in 10 000 requests, 8 at a time, then left alone for its Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_half_opens_and_closes() {
    let m = mock().await;
    let yaml = config(
        &[("only", m.base_url())],
        "",
        "",
        "consecutive_failures: 3, open_ms: 300, half_open_probes: 1",
    );
    let gw = TestGateway::start(&yaml).await;
    let failing = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 500}});
    for _ in 0..3 {
        assert_eq!(gw.chat(KEY, &failing).await.status, 502);
    }
    // Open: refused at once, the upstream is not asked.
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "no_healthy_deployment");
    assert!(r.header("retry-after").is_some());
    assert_eq!(requests(&m), 3);
    let state = |h: Value| h["deployments"][0]["state"].as_str().unwrap().to_owned();
    assert_eq!(
        state(gw.admin(http::Method::GET, "/admin/health", None).await.json()),
        "open"
    );
    // After the open time, one probe: it fails, so open again (for twice as long).
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(gw.chat(KEY, &failing).await.status, 502);
    assert_eq!(requests(&m), 4, "one probe");
    assert_eq!(gw.chat(KEY, &ask()).await.error_code(), "no_healthy_deployment");
    tokio::time::sleep(Duration::from_millis(650)).await;
    // A probe that succeeds closes it.
    assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
    assert_eq!(
        state(gw.admin(http::Method::GET, "/admin/health", None).await.json()),
        "closed"
    );
    for _ in 0..5 {
        assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
    }
}

/// How the half-open probe ends, in [`a_probe_that_ends_neither_way_leaves_the_breaker_half_open`].
#[derive(Debug, Clone, Copy)]
enum ProbeEnd {
    CallersMistake,
    UpstreamRateLimited,
    ClientGone,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_ends_neither_way_leaves_the_breaker_half_open() {
    let m = mock().await;
    let yaml = config(
        &[("only", m.base_url())],
        "",
        ", max_attempts: 1",
        "consecutive_failures: 3, open_ms: 300, half_open_probes: 1",
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let with = |knobs: Value| json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": knobs});
    let state = |h: Value| h["deployments"][0]["state"].as_str().unwrap().to_owned();
    for end in [
        ProbeEnd::CallersMistake,
        ProbeEnd::UpstreamRateLimited,
        ProbeEnd::ClientGone,
    ] {
        for _ in 0..3 {
            assert_eq!(gw.chat(KEY, &with(json!({"status": 500}))).await.status, 502);
        }
        assert_eq!(gw.chat(KEY, &ask()).await.error_code(), "no_healthy_deployment");
        // Past the open time (the breaker closed fully each round, so it is 300 ms again).
        tokio::time::sleep(Duration::from_millis(350)).await;
        let asked = requests(&m);
        match end {
            ProbeEnd::CallersMistake => {
                let r = gw.chat(KEY, &with(json!({"status": 400}))).await;
                assert_eq!(r.status, 400, "{end:?}: {}", r.text());
            }
            ProbeEnd::UpstreamRateLimited => {
                let r = gw.chat(KEY, &with(json!({"status": 429}))).await;
                assert_eq!(r.status, 429, "{end:?}: {}", r.text());
            }
            ProbeEnd::ClientGone => {
                let (gw2, slow) = (gw.clone(), with(json!({"latency_ms": 30_000})));
                let probe = tokio::spawn(async move { gw2.chat(KEY, &slow).await });
                assert!(
                    eventually(|| mock_stats(&m)["in_flight"] == 1).await,
                    "the probe reached the upstream"
                );
                probe.abort();
                assert!(
                    eventually(|| mock_stats(&m)["in_flight"] == 0).await,
                    "the upstream saw the cancel"
                );
            }
        }
        assert_eq!(requests(&m), asked + 1, "{end:?}: one probe");
        assert_eq!(
            state(gw.admin(http::Method::GET, "/admin/health", None).await.json()),
            "half_open",
            "{end:?}: neither closed nor re-opened"
        );
        // The next request is a probe of its own; a healthy answer closes the breaker.
        let r = gw.chat(KEY, &ask()).await;
        assert_eq!(r.status, 200, "{end:?}: {}", r.text());
        assert_eq!(
            state(gw.admin(http::Method::GET, "/admin/health", None).await.json()),
            "closed",
            "{end:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_in_a_failure_storm() {
    let a = mock_knobs(Knobs {
        status: Some(500),
        ..Knobs::default()
    })
    .await;
    let b = mock_knobs(Knobs {
        status: Some(500),
        ..Knobs::default()
    })
    .await;
    let yaml = config(
        &[("a", a.base_url()), ("b", b.base_url())],
        "",
        ", max_attempts: 3, retry: { backoff_ms: 0, budget_percent: 20, budget_min_per_s: 10 }",
        "enabled: false",
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let started = Instant::now();
    let statuses = load(&gw, 10_000, 32, ask()).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(statuses.iter().all(|s| *s == 502));
    let attempts = requests(&a) + requests(&b);
    let retries = attempts - 10_000;
    let allowed = 10_000.0 * 0.2 + 10.0 * (seconds + 1.0) + 1.0;
    assert!(
        (retries as f64) <= allowed,
        "{retries} retries for 10 000 requests in {seconds:.1} s (budget {allowed:.0})"
    );
    assert!(retries >= 1_500, "the budget is used: {retries}");
    let m = gw.metrics().await;
    assert!(m.contains("decision=\"denied_budget\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_aware_balancing_sends_requests_to_the_emptiest_model_server() {
    let busy = mock_knobs(Knobs {
        report_waiting: Some(40),
        ..Knobs::default()
    })
    .await;
    let idle = mock().await;
    let metrics = |m: &MockServer| m.base_url().trim_end_matches("/v1").to_owned() + "/metrics";
    let dep = |name: &str, m: &MockServer| {
        format!(
            "  - {{ name: {name}, provider: openai, base_url: \"{}\", model: upstream-{name}, api_key_env: SLUICE_TEST_UPSTREAM_KEY, metrics: {{ url: \"{}\", interval_ms: 100 }} }}\n",
            m.base_url(),
            metrics(m)
        )
    };
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [busy, idle], balance: capacity }}\nroutes:\n  - name: default\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        dep("busy", &busy),
        dep("idle", &idle),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    // Both scraped at least once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let statuses = load(&gw, 200, 4, ask()).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert!(
        requests(&busy) <= 5,
        "the server reporting a queue of 40 got {} of 200",
        requests(&busy)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_eject_and_restore_without_traffic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        "deployments:\n  - {{ name: gpu, provider: openai, base_url: \"http://127.0.0.1:{port}/v1\", model: m, api_key_env: SLUICE_TEST_UPSTREAM_KEY, health_check: {{ path: /health, interval_ms: 50 }} }}\nmodels:\n  - {{ name: chat, deployments: [gpu] }}\nbreaker: {{ consecutive_failures: 2, open_ms: 300, max_open_ms: 300 }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    let state = |h: Value| h["deployments"][0]["state"].as_str().unwrap_or("").to_owned();
    let deadline = Instant::now() + Duration::from_secs(3);
    while state(gw.admin(http::Method::GET, "/admin/health", None).await.json()) != "open" {
        assert!(Instant::now() < deadline, "checks never opened the breaker");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The server comes up: the next check after the open time closes the breaker.
    let m = MockServer::start(SocketAddr::from(([127, 0, 0, 1], port)), MockConfig::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while state(gw.admin(http::Method::GET, "/admin/health", None).await.json()) != "closed" {
        assert!(Instant::now() < deadline, "checks never closed the breaker");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(requests(&m), 0, "health checks are not completions");
    assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
}

#[tokio::test]
async fn breaker_and_balancer_state_survive_a_config_reload() {
    let m = mock().await;
    let yaml = config(
        &[("only", m.base_url())],
        "",
        "",
        "consecutive_failures: 3, open_ms: 60000",
    );
    let gw = TestGateway::start(&yaml).await;
    let failing = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 500}});
    for _ in 0..3 {
        assert_eq!(gw.chat(KEY, &failing).await.status, 502);
    }
    assert_eq!(gw.chat(KEY, &ask()).await.error_code(), "no_healthy_deployment");
    // A reload that changes the route (not the deployment): the open breaker stays open.
    gw.write_config(&config(
        &[("only", m.base_url())],
        "",
        ", total_timeout_ms: 90000",
        "consecutive_failures: 3, open_ms: 60000",
    ));
    let r = gw.admin(http::Method::POST, "/admin/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.chat(KEY, &ask()).await.error_code(), "no_healthy_deployment");
    let health = gw.admin(http::Method::GET, "/admin/health", None).await.json();
    assert_eq!(health["deployments"][0]["ejections"], 1, "{health}");
    assert_eq!(requests(&m), 3);
}
