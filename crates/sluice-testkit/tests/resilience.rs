//! Resilience past one alias's deployments, with the mock on real sockets: fallback chains and
//! the headers that say why, the degradation answer, the priority queue under overload,
//! geographic routing and its failover, and degradation steps under load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{ask, deployment, requests};
use serde_json::{Value, json};
use sluice_mock::{Knobs, MockServer};
use sluice_testkit::*;

/// `chat` (on `primary`) falls back to `backup` (on `spare`), with `route_extra` on the route.
async fn fallback_setup(primary: Knobs, route_extra: &str, key_limits: &str) -> (MockServer, MockServer, TestGateway) {
    let p = mock_knobs(primary).await;
    let s = mock().await;
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [primary] }}\n  - {{ name: backup, deployments: [spare] }}\nroutes:\n  - {{ name: default, first_byte_timeout_ms: 300, fallback: [backup]{route_extra} }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\", limits: {key_limits} }}\n",
        deployment("primary", &p.base_url()),
        deployment("spare", &s.base_url()),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    (p, s, gw)
}

#[tokio::test]
async fn a_fallback_alias_answers_and_the_headers_say_why() {
    let failing = Knobs {
        status: Some(500),
        ..Knobs::default()
    };
    let (p, s, gw) = fallback_setup(failing, "", "{ requests_per_day: 2 }").await;
    for _ in 0..2 {
        let r = gw.chat(KEY, &ask()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-sluice-model"), Some("backup"));
        assert_eq!(r.header("x-sluice-fallback"), Some("true"));
        assert_eq!(r.header("x-sluice-fallback-reason"), Some("error"));
        assert_eq!(r.json()["model"], "upstream-spare");
    }
    // The primary's reservation was released when the fallback reserved: two requests, two
    // counted, and the third is refused by the key's limit.
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!((requests(&p), requests(&s)), (2, 2));
    let line = &gw.log_lines(2).await[1];
    assert_eq!(line["fallback"], "error", "{line}");
    assert_eq!(line["model"], "backup");
    assert_eq!(
        line["attempts"].as_array().unwrap().len(),
        2,
        "both attempts are in the log line"
    );
    // The spend ledger charges the alias that answered (the intent named the first one).
    let usage = gw.admin(http::Method::GET, "/admin/usage?by=model", None).await.json();
    let models: Vec<&str> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    assert!(models.contains(&"backup"), "{usage}");
    assert!(!models.contains(&"chat"), "{usage}");
}

#[tokio::test]
async fn a_fallback_alias_refused_by_its_limits_leaves_the_callers_upstream_error() {
    let p = mock_knobs(Knobs {
        status: Some(500),
        ..Knobs::default()
    })
    .await;
    let s = mock().await;
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [primary] }}\n  - {{ name: backup, deployments: [spare], limits: {{ requests_per_day: 1 }} }}\nroutes:\n  - {{ name: default, max_attempts: 1, fallback: [backup] }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("primary", &p.base_url()),
        deployment("spare", &s.base_url()),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 200, "the backup answers once: {}", r.text());
    assert_eq!(r.header("x-sluice-model"), Some("backup"));
    // Its day's quota is spent: the chain skips it, and the caller learns what really failed.
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_error");
    assert_eq!((requests(&p), requests(&s)), (2, 1));
}

#[tokio::test]
async fn an_upstream_429_is_its_own_class_apart_from_the_gateways_limits() {
    let m = mock().await;
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [only] }}\nroutes:\n  - {{ name: default, max_attempts: 1 }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\", limits: {{ requests_per_day: 2 }} }}\n",
        deployment("only", &m.base_url()),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    let limited = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 429}});
    let r = gw.chat(KEY, &limited).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_rate_limited");
    assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 429, "the key's own limit: {}", r.text());
    let classes: Vec<Value> = gw.log_lines(3).await.iter().map(|l| l["error_class"].clone()).collect();
    assert_eq!(
        classes,
        [json!("upstream_rate_limited"), Value::Null, json!("rate_limited")]
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("sluice_errors_total{class=\"upstream_rate_limited\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_errors_total{class=\"rate_limited\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn timeouts_fall_back_and_unlisted_reasons_do_not() {
    let stalled = Knobs {
        stall: Some(true),
        ..Knobs::default()
    };
    let (_p, _s, gw) = fallback_setup(stalled, "", "{}").await;
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-sluice-fallback-reason"), Some("timeout"));

    let failing = Knobs {
        status: Some(500),
        ..Knobs::default()
    };
    let (_p, s, gw) = fallback_setup(failing, ", fallback_on: [timeout]", "{}").await;
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 502, "a 500 is not a timeout: {}", r.text());
    assert!(r.header("x-sluice-fallback").is_none());
    assert_eq!(requests(&s), 0);
}

#[tokio::test]
async fn the_degradation_answer_comes_last_in_the_clients_format() {
    let p = mock_knobs(Knobs {
        status: Some(503),
        ..Knobs::default()
    })
    .await;
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [primary] }}\nroutes:\n  - {{ name: default, fallback_response: {{ content: \"We are busy; please try again shortly.\" }} }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("primary", &p.base_url()),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    let r = gw.chat(KEY, &ask()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-sluice-fallback-reason"), Some("error"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "We are busy; please try again shortly."
    );
    let streamed = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw.stream(KEY, &streamed).await;
    assert_eq!(resp.status(), 200);
    let text = read_all(resp.into_body()).await;
    assert!(
        text.contains("We are busy") && text.trim_end().ends_with("data: [DONE]"),
        "{text}"
    );
    // The Anthropic front door gets Anthropic's shape.
    let r = gw
        .post(
            "/v1/messages",
            KEY,
            &json!({"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"], "We are busy; please try again shortly.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_high_priority_goes_first_and_the_rest_get_503_with_retry_after() {
    let m = mock_knobs(Knobs {
        latency_ms: Some(200),
        ..Knobs::default()
    })
    .await;
    const GOLD: &str = "sk-sluice-test-gold";
    let yaml = format!(
        "deployments:\n{}models:\n  - {{ name: chat, deployments: [a] }}\nroutes:\n  - {{ name: default, queue: {{ max_concurrency: 2, max_queued: 6, timeout_ms: 500 }} }}\ntiers:\n  - {{ name: gold, priority: 9 }}\n  - {{ name: free, priority: 1 }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\", tier: free, tenant: crowd }}\n  - {{ id: gold, hash: \"{}\", tier: gold, tenant: vip }}\n",
        deployment("a", &m.base_url()),
        key_hash(KEY),
        key_hash(GOLD)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let send = |key: &'static str| {
        let gw = gw.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = gw.chat(key, &ask()).await;
            (
                r.status.as_u16(),
                r.error_code(),
                r.header("retry-after").map(str::to_owned),
                t.elapsed(),
            )
        })
    };
    let free: Vec<_> = (0..8).map(|_| send(KEY)).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let gold: Vec<_> = (0..3).map(|_| send(GOLD)).collect();
    let mut free_out = Vec::new();
    for f in free {
        free_out.push(f.await.unwrap());
    }
    for g in gold {
        let (status, code, _, took) = g.await.unwrap();
        assert_eq!(status, 200, "{code}");
        assert!(
            took < Duration::from_millis(700),
            "gold waited for at most two turns: {took:?}"
        );
    }
    let turned: Vec<_> = free_out.iter().filter(|r| r.0 == 503).collect();
    assert!(
        turned.len() >= 3,
        "three displaced by gold, more timed out: {free_out:?}"
    );
    for (_, code, retry, _) in &turned {
        assert!(code == "queue_full" || code == "queue_timeout", "{code}");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    assert!(free_out.iter().filter(|r| r.0 == 200).count() >= 2, "the first two ran");
    // Never more than two at the upstream at once: 2 + 3 + the free ones served, in 200 ms turns.
    let served = requests(&m);
    assert_eq!(served as usize, 3 + free_out.iter().filter(|r| r.0 == 200).count());
    assert!(
        m.stats().peak_in_flight.load(Ordering::Relaxed) <= 2,
        "the route's concurrency limit held"
    );
    let queued: Vec<f64> = gw
        .log_lines(11)
        .await
        .iter()
        .filter_map(|l| l["queue_ms"].as_f64())
        .collect();
    assert!(queued.iter().any(|q| *q >= 100.0), "waits are logged: {queued:?}");
}

fn geo_config(eu: &str, us: &str, ap: &str) -> String {
    let dep = |name: &str, base: &str, geo: &str| {
        format!(
            "  - {{ name: {name}, geo: {geo}, provider: openai, base_url: \"{base}\", model: upstream-{name}, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}\n"
        )
    };
    format!(
        "deployments:\n{}{}{}models:\n  - {{ name: chat, deployments: [eu-1, us-1, ap-1] }}\nroutes:\n  - {{ name: default, max_attempts: 2, retry: {{ backoff_ms: 0 }} }}\ngeo:\n  networks: {{ us: [127.0.0.0/8] }}\n  failover: {{ eu: [ap, us] }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        dep("eu-1", eu, "eu"),
        dep("us-1", us, "us"),
        dep("ap-1", ap, "ap"),
        key_hash(KEY)
    )
}

#[tokio::test]
async fn requests_stay_in_the_callers_region_and_fail_over_in_order() {
    let (eu, us, ap) = (mock().await, mock().await, mock().await);
    let gw = TestGateway::start(&geo_config(&eu.base_url(), &us.base_url(), &ap.base_url())).await;
    for _ in 0..20 {
        let r = gw
            .post_raw(
                "/v1/chat/completions",
                Some(KEY),
                &[("x-sluice-region", "eu")],
                ask().to_string(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        (requests(&eu), requests(&us), requests(&ap)),
        (20, 0, 0),
        "the caller's region"
    );
    // No header: the caller's address (127.0.0.1) is in the `us` network.
    for _ in 0..10 {
        assert_eq!(gw.chat(KEY, &ask()).await.status, 200);
    }
    assert_eq!((requests(&eu), requests(&us), requests(&ap)), (20, 10, 0));

    // Europe is down: its callers go to the first failover region (ap), not to us.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (us2, ap2) = (mock().await, mock().await);
    let gw = TestGateway::start(&geo_config(
        &format!("http://127.0.0.1:{port}/v1"),
        &us2.base_url(),
        &ap2.base_url(),
    ))
    .await;
    for _ in 0..20 {
        let r = gw
            .post_raw(
                "/v1/chat/completions",
                Some(KEY),
                &[("x-sluice-region", "eu")],
                ask().to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!((requests(&ap2), requests(&us2)), (20, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_route_degrades_in_its_configured_order_and_says_so() {
    let big = mock_knobs(Knobs {
        latency_ms: Some(150),
        ..Knobs::default()
    })
    .await;
    let small = mock_knobs(Knobs {
        latency_ms: Some(150),
        ..Knobs::default()
    })
    .await;
    let yaml = format!(
        "deployments:\n{}{}models:\n  - {{ name: chat, deployments: [big] }}\n  - {{ name: small, deployments: [tiny] }}\nroutes:\n  - name: default\n    queue: {{ max_concurrency: 1, max_queued: 10 }}\n    degrade:\n      - {{ when_queued: 1, max_tokens: 4 }}\n      - {{ when_queued: 3, model: small }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("big", &big.base_url()),
        deployment("tiny", &small.base_url()),
        key_hash(KEY)
    );
    let gw = Arc::new(TestGateway::start(&yaml).await);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
            let r = gw.chat(KEY, &body).await;
            (r.status.as_u16(), r.header("x-sluice-degraded").map(str::to_owned))
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    let degraded: Vec<Option<&str>> = got
        .iter()
        .map(|(s, d)| {
            assert_eq!(*s, 200);
            d.as_deref()
        })
        .collect();
    assert_eq!(
        degraded,
        [
            None,
            None,
            Some("max_tokens=4"),
            Some("max_tokens=4"),
            Some("model=small,max_tokens=4"),
            Some("model=small,max_tokens=4")
        ]
    );
    assert_eq!((requests(&big), requests(&small)), (4, 2));
    let capped = big
        .stats()
        .recent()
        .iter()
        .filter(|r| r.body.contains("\"max_tokens\":4"))
        .count();
    assert_eq!(capped, 2, "the cap reached the upstream");
    let lines = gw.log_lines(6).await;
    assert_eq!(lines.iter().filter(|l| l["degraded"].is_string()).count(), 4);
}
