//! Admission over the wire: per-deployment concurrency limits (a stream holds its place until it
//! ends; a request that finds every deployment full waits, then gets 503 with Retry-After),
//! tenants sharing a route's queue by weight, clients leaving a route's queue without taking a
//! place with them, and capacity read from response headers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_mock::{Knobs, MockConfig, MockServer};
use sluice_testkit::*;

fn deployment(name: &str, base: &str, extra: &str) -> String {
    deployment_yaml(name, base, extra)
}

/// A stream of `chunks` chunks 100 ms apart on `chat`, read to its end in the background.
fn long_stream(gw: &Arc<TestGateway>, chunks: u64) -> tokio::task::JoinHandle<String> {
    let gw = gw.clone();
    tokio::spawn(async move {
        let body = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "long"}],
                          "mock": {"chunks": chunks, "chunk_delay_ms": 100}});
        read_all(gw.stream(KEY, &body).await.into_body()).await
    })
}

fn ask() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
}

fn peak(m: &MockServer) -> i64 {
    m.stats().peak_in_flight.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_never_has_more_in_flight_than_its_limit() {
    let knobs = Knobs {
        latency_ms: Some(150),
        ..Knobs::default()
    };
    let (a, b) = (mock_knobs(knobs.clone()).await, mock_knobs(knobs).await);
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [a, b], balance: least_outstanding }}\nroutes:\n  - {{ name: default, queue: {{ max_concurrency: 100, max_queued: 100, timeout_ms: 10000 }} }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("a", &a.base_url(), ", max_concurrency: 2"),
        deployment("b", &b.base_url(), ", max_concurrency: 3"),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.chat(KEY, &ask()).await.status.as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "every request waits for a place and gets one");
    }
    assert_eq!(
        (peak(&a), peak(&b)),
        (2, 3),
        "each deployment filled to its limit, never past it"
    );
    let served = a.stats().requests.load(Ordering::Relaxed) + b.stats().requests.load(Ordering::Relaxed);
    assert_eq!(served, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_holds_its_place_and_a_full_pool_answers_503_with_retry_after() {
    let m = mock_with(MockConfig::default()).await;
    // No route queue: a request waits at most a second for a place.
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [a] }}\nroutes:\n  - {{ name: default }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("a", &m.base_url(), ", max_concurrency: 1"),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let streaming = long_stream(&gw, 25);
    assert!(eventually(|| m.stats().in_flight.load(Ordering::Relaxed) == 1).await);
    let health = gw.admin(http::Method::GET, "/admin/health", None).await.json();
    let a = &health["deployments"][0];
    assert_eq!(
        (a["in_flight"].as_i64(), a["max_concurrency"].as_i64()),
        (Some(1), Some(1)),
        "{health}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("sluice_deployment_in_flight{deployment=\"a\"} 1"),
        "{metrics}"
    );
    // Six more: four may wait for the place (four times the limit), two are turned away at once.
    let waiters: Vec<_> = (0..6)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = gw.chat(KEY, &ask()).await;
                (r, t.elapsed())
            })
        })
        .collect();
    let mut waited = 0;
    for w in waiters {
        let (r, took) = w.await.unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.error_code(), "deployments_at_capacity");
        assert_eq!(r.header("retry-after"), Some("1"));
        if took >= Duration::from_millis(900) {
            waited += 1;
        } else {
            assert!(took < Duration::from_millis(500), "turned away at once: {took:?}");
        }
    }
    assert_eq!(waited, 4, "four waited for a place first");
    let waits: Vec<f64> = gw
        .log_lines(6)
        .await
        .iter()
        .filter(|l| l["error_code"] == "deployments_at_capacity")
        .filter_map(|l| l["queue_ms"].as_f64())
        .filter(|ms| *ms >= 900.0)
        .collect();
    assert_eq!(waits.len(), 4, "the waits are logged as queue_ms: {waits:?}");
    assert!(streaming.await.unwrap().contains("[DONE]"));
    // The stream's place is free again.
    assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
    assert_eq!(peak(&m), 1);

    // A reload changes the limit at once; the count in flight carries over.
    let streaming = long_stream(&gw, 10);
    assert!(eventually(|| m.stats().in_flight.load(Ordering::Relaxed) == 1).await);
    gw.write_config(&yaml.replace("max_concurrency: 1", "max_concurrency: 2"));
    let r = gw.admin(http::Method::POST, "/admin/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = Instant::now();
    assert_eq!(gw.chat(KEY, &ask()).await.status, 200, "a second place now");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "without waiting: {:?}",
        t.elapsed()
    );
    let health = gw.admin(http::Method::GET, "/admin/health", None).await.json();
    assert_eq!(health["deployments"][0]["max_concurrency"], 2, "{health}");
    assert!(streaming.await.unwrap().contains("[DONE]"));
    assert_eq!(peak(&m), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_a_route_queue_by_weight() {
    let m = mock_knobs(Knobs {
        latency_ms: Some(40),
        ..Knobs::default()
    })
    .await;
    const BIG: &str = "sk-sluice-test-big";
    const SMALL: &str = "sk-sluice-test-small";
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [a] }}\nroutes:\n  - {{ name: default, queue: {{ max_concurrency: 1, max_queued: 50, timeout_ms: 20000 }} }}\ntenants:\n  - {{ name: big, queue_weight: 3 }}\n  - {{ name: small }}\nkeys:\n  - {{ id: big, hash: \"{}\", tenant: big }}\n  - {{ id: small, hash: \"{}\", tenant: small }}\n",
        deployment("a", &m.base_url(), ""),
        key_hash(BIG),
        key_hash(SMALL)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let send = |key: &'static str| {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat(key, &ask()).await.status.as_u16() })
    };
    let mut tasks = vec![send(BIG)];
    assert!(eventually(|| m.stats().in_flight.load(Ordering::Relaxed) == 1).await);
    // The small tenant queues four, then the big one floods twelve.
    for key in std::iter::repeat_n(SMALL, 4).chain(std::iter::repeat_n(BIG, 12)) {
        tasks.push(send(key));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let order: String = gw
        .log_lines(17)
        .await
        .iter()
        .map(|l| if l["tenant"] == "big" { 'b' } else { 's' })
        .collect();
    assert_eq!(&order[1..], "sbbbsbbbsbbbsbbb", "three turns to one, in turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_read_from_response_headers_steers_away_from_a_busy_server() {
    let busy = mock_knobs(Knobs {
        report_waiting: Some(40),
        ..Knobs::default()
    })
    .await;
    let idle = mock_with(MockConfig::default()).await;
    // No metrics endpoint: what each server says in its answers (`x-queue-depth`) is all.
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [busy, idle], balance: capacity }}\nroutes:\n  - {{ name: default }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("busy", &busy.base_url(), ", load_header: x-queue-depth"),
        deployment("idle", &idle.base_url(), ", load_header: x-queue-depth"),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    for _ in 0..200 {
        assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
    }
    let health = gw.admin(http::Method::GET, "/admin/health", None).await.json();
    let busy_load = health["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "busy")
        .map(|d| d["reported_load"].as_u64());
    assert_eq!(
        busy_load,
        Some(Some(40_000)),
        "its queue of 40, as read from its answers: {health}"
    );
    let to_busy = busy.stats().requests.load(Ordering::Relaxed);
    assert!(
        to_busy <= 2,
        "the busy server got {to_busy} of 200 after saying it had 40 waiting"
    );
    assert!(to_busy >= 1, "it was asked once, before its queue was known");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mocks_slots_make_a_model_server_that_queues() {
    let m = mock_knobs(Knobs {
        latency_ms: Some(100),
        slots: Some(1),
        ..Knobs::default()
    })
    .await;
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [a] }}\nroutes:\n  - {{ name: default }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("a", &m.base_url(), ""),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let t = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.chat(KEY, &ask()).await })
        })
        .collect();
    let mut depths = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 200);
        depths.push(r.header("x-queue-depth").map(str::to_owned));
    }
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "one at a time: {:?}",
        t.elapsed()
    );
    assert_eq!(peak(&m), 1);
    assert!(
        depths.iter().all(Option::is_none),
        "the gateway does not pass the upstream's header on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_model_spills_over_to_its_fallback_at_once() {
    let (a, b) = (
        mock_with(MockConfig::default()).await,
        mock_with(MockConfig::default()).await,
    );
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [a] }}\n  - {{ name: backup, deployments: [b] }}\nroutes:\n  - {{ name: default, fallback: [backup] }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("a", &a.base_url(), ", max_concurrency: 1"),
        deployment("b", &b.base_url(), ""),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let streaming = long_stream(&gw, 15);
    assert!(eventually(|| a.stats().in_flight.load(Ordering::Relaxed) == 1).await);
    let t = Instant::now();
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-sluice-model"), Some("backup"));
    assert_eq!(r.header("x-sluice-fallback-reason"), Some("capacity"));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "no wait for a place: {:?}",
        t.elapsed()
    );
    assert!(streaming.await.unwrap().contains("[DONE]"));
    assert_eq!(b.stats().requests.load(Ordering::Relaxed), 1);
}

// One thread: the gateway runs beside these clients, so when a running request's client and the
// next waiter's client leave together, the gateway sees both in the same turn — the running
// request ends and hands its place over, then the waiter's connection closes before the waiter
// has looked. That is the race in which a place used to be lost.
#[tokio::test]
async fn clients_that_leave_a_route_queue_take_no_place_with_them() {
    let m = mock().await;
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [a] }}\nroutes:\n  - {{ name: default, queue: {{ max_concurrency: 2, max_queued: 20, timeout_ms: 30000 }} }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("a", &m.base_url(), ""),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    let snap = gw.running.as_ref().unwrap().gateway.snapshot();
    let queue = snap
        .routes
        .iter()
        .find(|r| &*r.name == "default")
        .unwrap()
        .queue
        .clone();
    let state = || (queue.running(), queue.queued());
    let upstream = || m.stats().in_flight.load(Ordering::Relaxed);
    // The upstream never answers: a request runs until its client leaves.
    let stalled = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "mock": {"stall": true}});
    for round in 0..6 {
        let mut running = Vec::new();
        for _ in 0..2 {
            running.push(raw_chat(&gw, &stalled).await);
        }
        assert!(
            eventually(|| state() == (2, 0) && upstream() == 2).await,
            "{:?}",
            state()
        );
        let mut waiting = VecDeque::new();
        for n in 1..=5 {
            waiting.push_back(raw_chat(&gw, &stalled).await);
            assert!(eventually(|| state() == (2, n)).await, "queued in order: {:?}", state());
        }
        // A running request's client leaves, and in the same instant the client of the waiter
        // its place goes to: the place passes on to the next waiter.
        drop(running.remove(round % 2));
        drop(waiting.pop_front());
        assert!(
            eventually(|| state() == (2, 3) && upstream() == 2).await,
            "round {round}: the next waiter runs: {:?}, {} at the upstream",
            state(),
            upstream()
        );
        // A waiter leaves before its turn: it leaves the queue at once.
        drop(waiting.remove(round % 3));
        assert!(eventually(|| state() == (2, 2)).await, "round {round}: {:?}", state());
        // Everyone leaves at once, runners and waiters in turn: each place handed over in the
        // cascade lands with a waiter that is leaving too.
        while !running.is_empty() || !waiting.is_empty() {
            drop(running.pop());
            drop(waiting.pop_front());
        }
        assert!(
            eventually(|| state() == (0, 0) && upstream() == 0).await,
            "round {round}: nothing left behind: {:?}, {} at the upstream",
            state(),
            upstream()
        );
    }
    // The route still runs two at once, and its queue depth is back to 0.
    let both = [raw_chat(&gw, &stalled).await, raw_chat(&gw, &stalled).await];
    assert!(
        eventually(|| state() == (2, 0) && upstream() == 2).await,
        "full concurrency: {:?}, {} at the upstream",
        state(),
        upstream()
    );
    let metrics = gw.metrics().await;
    assert!(metrics.contains("sluice_queue_depth{route=\"default\"} 0"), "{metrics}");
    assert!(
        metrics.contains("sluice_queue_running{route=\"default\"} 2"),
        "{metrics}"
    );
    drop(both);
    assert!(eventually(|| state() == (0, 0)).await, "{:?}", state());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("sluice_queue_running{route=\"default\"} 0"),
        "{metrics}"
    );
}
