//! The response cache under concurrency and failure, over the wire: single flight (one upstream
//! request for identical misses, a new leader when the first leaves, streaming followers fed
//! the leader's stream live),
//! stale answers from a fallback chain's cache step, and cache-only degradation under overload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod cache_support;

use std::time::Duration;

use cache_support::*;
use serde_json::json;
use sluice_testkit::*;

#[tokio::test]
async fn a_hundred_concurrent_identical_misses_send_one_upstream_request() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let mut q = ask("chat", "Everyone asks this at once.");
    // Long enough upstream that every request arrives while the first is in the air.
    q["mock"] = json!({"latency_ms": 500});
    let answers = futures_util::future::join_all((0..100).map(|_| gw.chat(KEY, &q))).await;
    let mut outcomes = std::collections::BTreeMap::new();
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(text(a), text(&answers[0]));
        *outcomes
            .entry(a.header("x-sluice-cache").unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(
        requests(&mock),
        1,
        "one upstream request for a hundred identical misses"
    );
    assert_eq!(outcomes.get("miss"), Some(&1), "{outcomes:?}");
    assert_eq!(outcomes.get("hit"), Some(&99), "{outcomes:?}");
    assert!(gw.metrics().await.contains("sluice_cache_waiting 0"));
}

#[tokio::test]
async fn when_the_leader_leaves_one_follower_takes_over_and_the_rest_follow_it() {
    let mut up = ScriptedUpstream::start().await;
    let yaml = scripted_config(&up, "cached", "    cache: { ttl_ms: 60000 }\n");
    let gw = std::sync::Arc::new(TestGateway::start(&yaml).await);
    let q = ask("chat", "Who leads?");

    // The leader's request is in the air (on a connection of its own, so it can leave).
    let leader = raw_chat(&gw, &q).await;
    let first = up.next_stream().await;
    // Ten identical requests follow it: they wait, and send nothing upstream.
    let followers: Vec<_> = (0..10)
        .map(|_| {
            let (gw, q) = (gw.clone(), q.clone());
            tokio::spawn(async move {
                let r = gw.chat(KEY, &q).await;
                (r.header("x-sluice-cache").unwrap_or("").to_owned(), r)
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while waiting(&gw).await < 10 {
        assert!(std::time::Instant::now() < deadline, "the followers never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.bodies().len(), 1);

    // The leader's client leaves: its upstream request is cancelled, and one follower leads
    // the next attempt.
    drop(leader);
    first.closed().await;
    let second = up.next_stream().await;
    second
        .send(
            &json!({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "the whole answer"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
            .to_string(),
        )
        .await;
    drop(second);

    let mut outcomes = std::collections::BTreeMap::new();
    for f in followers {
        let (cache, r) = tokio::time::timeout(Duration::from_secs(20), f).await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(text(&r), "the whole answer");
        *outcomes.entry(cache).or_insert(0) += 1;
    }
    assert_eq!(outcomes.get("miss"), Some(&1), "one follower led: {outcomes:?}");
    assert_eq!(outcomes.get("hit"), Some(&9), "{outcomes:?}");
    assert_eq!(up.bodies().len(), 2, "one new upstream request, not ten");
}

/// `n` streaming clients asking `q`: each task sends on `started` once its text has `first`,
/// then returns its whole stream.
fn streaming_followers(
    gw: &std::sync::Arc<TestGateway>,
    q: &serde_json::Value,
    n: usize,
    first: &'static str,
) -> (
    Vec<tokio::task::JoinHandle<(String, String)>>,
    tokio::sync::mpsc::Receiver<()>,
) {
    let (tx, started) = tokio::sync::mpsc::channel(n);
    let tasks = (0..n)
        .map(|_| {
            let (gw, q, tx) = (gw.clone(), q.clone(), tx.clone());
            tokio::spawn(async move {
                let r = gw.stream(KEY, &q).await;
                let cache = r.headers()["x-sluice-cache"].to_str().unwrap().to_owned();
                let mut body = r.into_body();
                let mut seen = String::new();
                let mut told = false;
                while let Some(frame) = next_frame(&mut body, Duration::from_secs(20)).await {
                    seen.push_str(&String::from_utf8_lossy(&frame));
                    if !told && stream_text(&seen).0.contains(first) {
                        told = true;
                        let _ = tx.send(()).await;
                    }
                }
                (cache, seen)
            })
        })
        .collect();
    (tasks, started)
}

#[tokio::test]
async fn streaming_followers_get_the_leaders_stream_live_from_one_upstream_request() {
    let mut up = ScriptedUpstream::start().await;
    let yaml = scripted_config(&up, "cached", "    cache: { ttl_ms: 60000 }\n");
    let gw = std::sync::Arc::new(TestGateway::start(&yaml).await);
    let mut q = ask("chat", "Stream me");
    q["stream"] = json!(true);
    q["stream_options"] = json!({"include_usage": true});
    let leader = gw.stream(KEY, &q).await;
    assert_eq!(leader.headers()["x-sluice-cache"], "miss");
    let s1 = up.next_stream().await;
    s1.send(&chunk("first ")).await;

    // Twenty identical streaming requests: each gets the leader's first chunk while the
    // leader's stream is still open upstream (it has not ended: nothing more was sent).
    let (followers, mut started) = streaming_followers(&gw, &q, 20, "first");
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(20), started.recv())
            .await
            .expect("a follower got the first chunk before the leader's stream ended")
            .unwrap();
    }
    assert_eq!(up.bodies().len(), 1, "the followers sent nothing upstream");
    finish_stream(s1, "answer").await;
    let (text, usage, done) = stream_text(&read_all(leader.into_body()).await);
    assert_eq!((text.as_str(), done), ("first answer", true));
    for f in followers {
        let (cache, sse) = tokio::time::timeout(Duration::from_secs(20), f).await.unwrap().unwrap();
        assert_eq!(cache, "hit");
        let (t, u, d) = stream_text(&sse);
        assert_eq!((t.as_str(), d), ("first answer", true));
        assert_eq!(u, usage, "the follower sees the answer's usage");
    }
    assert_eq!(up.bodies().len(), 1, "one upstream request for twenty-one clients");
    let lines = gw.log_lines(21).await;
    let hits: Vec<_> = lines.iter().filter(|l| l["cache"] == "hit").collect();
    assert_eq!(hits.len(), 20);
    assert!(
        hits.iter()
            .all(|l| l["cost_micros"] == 0 && l["completion_tokens"] == 3),
        "{:?}",
        hits[0]
    );
}

#[tokio::test]
async fn when_the_leaders_stream_breaks_off_midway_its_followers_are_told_and_nothing_is_stored() {
    let mut up = ScriptedUpstream::start().await;
    let yaml = scripted_config(&up, "cached", "    cache: { ttl_ms: 60000 }\n");
    let gw = std::sync::Arc::new(TestGateway::start(&yaml).await);
    let mut q = ask("chat", "Break midway");
    q["stream"] = json!(true);
    let leader = gw.stream(KEY, &q).await;
    let s1 = up.next_stream().await;
    s1.send(&chunk("partial ")).await;
    let (followers, mut started) = streaming_followers(&gw, &q, 3, "partial");
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(20), started.recv())
            .await
            .unwrap()
            .unwrap();
    }
    // The upstream's connection is cut mid-answer.
    drop(s1);
    let leader_sse = read_all(leader.into_body()).await;
    assert!(leader_sse.contains("error"), "{leader_sse}");
    for f in followers {
        let (cache, sse) = tokio::time::timeout(Duration::from_secs(20), f).await.unwrap().unwrap();
        assert_eq!(cache, "hit");
        let events = sse_data(&sse);
        let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(last["error"].is_object(), "the follower is told: {sse}");
        assert!(!sse.contains("[DONE]"), "{sse}");
    }
    // Nothing was stored: the next identical request goes upstream.
    let next = gw.stream(KEY, &q).await;
    assert_eq!(next.headers()["x-sluice-cache"], "miss");
    finish_stream(up.next_stream().await, "whole").await;
    assert_eq!(stream_text(&read_all(next.into_body()).await).0, "whole");
}

#[tokio::test]
async fn when_a_streaming_leader_breaks_off_before_its_first_event_one_follower_takes_over() {
    let mut up = ScriptedUpstream::start().await;
    let yaml = scripted_config(&up, "cached", "    cache: { ttl_ms: 60000 }\n");
    let gw = std::sync::Arc::new(TestGateway::start(&yaml).await);
    let mut q = ask("chat", "Who streams?");
    q["stream"] = json!(true);
    let leader = gw.stream(KEY, &q).await;
    let first = up.next_stream().await;
    let (followers, _started) = streaming_followers(&gw, &q, 5, "answer");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while waiting(&gw).await < 5 {
        assert!(std::time::Instant::now() < deadline, "the followers never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The leader's client leaves before any event: one follower leads the next attempt.
    drop(leader);
    first.closed().await;
    let second = up.next_stream().await;
    finish_stream(second, "answer").await;
    let mut outcomes = std::collections::BTreeMap::new();
    for f in followers {
        let (cache, sse) = tokio::time::timeout(Duration::from_secs(20), f).await.unwrap().unwrap();
        assert_eq!(stream_text(&sse).0, "answer");
        *outcomes.entry(cache).or_insert(0) += 1;
    }
    assert_eq!(outcomes.get("miss"), Some(&1), "one follower led: {outcomes:?}");
    assert_eq!(outcomes.get("hit"), Some(&4), "{outcomes:?}");
    assert_eq!(up.bodies().len(), 2, "one new upstream request, not five");
}

#[tokio::test]
async fn when_every_model_fails_a_stored_answer_past_its_ttl_answers_as_stale() {
    let mock = mock().await;
    let yaml = format!(
        r#"
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
breaker: {{ consecutive_failures: 2, open_ms: 600000 }}
routes:
  - name: stale
    forward_params: [mock]
    cache: {{ ttl_ms: 200, stale_ms: 600000 }}
    fallback: [{{ cache: {{ stale_ms: 600000 }} }}]
keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme }}
"#,
        mock.base_url(),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    let q = ask("chat", "Still there?");
    let first = gw.chat(KEY, &q).await;
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    tokio::time::sleep(Duration::from_millis(400)).await;

    // The upstream fails until its breaker opens: nothing stored for these, so they fail.
    for i in 0..2 {
        let mut failing = ask("chat", &format!("Failing {i}"));
        failing["mock"] = json!({"status": 500});
        assert_eq!(gw.chat(KEY, &failing).await.status, 502);
    }
    // Past its TTL the entry is no hit; with every model out, the chain's cache step answers.
    let stale = gw.chat(KEY, &q).await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("x-sluice-cache"), Some("stale"));
    assert_eq!(stale.header("x-sluice-fallback"), Some("true"));
    assert_eq!(stale.header("x-sluice-fallback-reason"), Some("open_circuit"));
    assert_eq!(text(&stale), text(&first));
    // A question never answered has nothing to fall back on.
    assert_eq!(gw.chat(KEY, &ask("chat", "Never asked")).await.status, 502);
    let lines = gw.log_lines(5).await;
    assert_eq!(lines[3]["cache"], "stale");
    assert_eq!(lines[3]["cost_micros"].as_u64().unwrap_or(0), 0);
    assert_eq!(
        requests(&mock),
        3,
        "the stale answer and the last one never reached the upstream"
    );
}

#[tokio::test]
async fn a_cache_step_needs_the_routes_cache_and_no_more_staleness_than_it_keeps() {
    let mock = mock().await;
    let route = |cache: &str| {
        format!(
            "  - name: r\n    match: {{ models: [chat] }}\n{cache}    fallback: [other, {{ cache: {{ stale_ms: 5000 }} }}]\n"
        )
    };
    for (cache, problem) in [
        ("", "needs the route's `cache`"),
        ("    cache: { ttl_ms: 1000, stale_ms: 1000 }\n", "must not exceed"),
    ] {
        let text = config_with_routes(&mock, &route(cache));
        match sluice_config::load_str(&text, &env) {
            Err(e) => assert!(e.to_string().contains(problem), "{e}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }
    let ok = config_with_routes(&mock, &route("    cache: { ttl_ms: 1000, stale_ms: 5000 }\n"));
    let c = sluice_config::load_str(&ok, &env).unwrap();
    let chain = &c.routes[0].fallback;
    assert_eq!(chain.models.len(), 1);
    assert_eq!(chain.cache.unwrap().after, 1);
}

#[tokio::test]
async fn under_overload_a_cache_only_step_serves_hits_and_refuses_misses() {
    let mut up = ScriptedUpstream::start().await;
    let yaml = scripted_config(
        &up,
        "busy",
        "    cache: { ttl_ms: 600000 }\n    queue: { max_concurrency: 1, max_queued: 4, timeout_ms: 60000 }\n    degrade: [{ when_queued: 1, cache_only: true }]\n",
    );
    let gw = std::sync::Arc::new(TestGateway::start(&yaml).await);
    let streamed = |question: &str| {
        let mut q = ask("chat", question);
        q["stream"] = json!(true);
        q
    };
    // An answer stored while the route is calm.
    let stored = gw.stream(KEY, &streamed("Known")).await;
    finish_stream(up.next_stream().await, "known answer").await;
    assert_eq!(stream_text(&read_all(stored.into_body()).await).0, "known answer");

    // One request holds the route's only place; the next waits in its queue.
    let holder = gw.stream(KEY, &streamed("Long")).await;
    let held = up.next_stream().await;
    let waiter = {
        let gw = gw.clone();
        let q = streamed("Waiting");
        tokio::spawn(async move { read_all(gw.stream(KEY, &q).await.into_body()).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.metrics().await.contains(r#"sluice_queue_depth{route="busy"} 1"#) {
        assert!(std::time::Instant::now() < deadline, "the second request never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Overloaded: a stored answer is served at once, anything else refused.
    let hit = gw.chat(KEY, &ask("chat", "Known")).await;
    assert_eq!(hit.status, 200, "{}", hit.text());
    assert_eq!(hit.header("x-sluice-cache"), Some("hit"));
    assert_eq!(text(&hit), "known answer");
    let refused = gw.chat(KEY, &ask("chat", "Unknown")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "cache_only");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(up.bodies().len(), 2, "neither reached the upstream");

    // The load passes: the held stream ends, the waiter is served.
    finish_stream(held, "long answer").await;
    assert_eq!(stream_text(&read_all(holder.into_body()).await).0, "long answer");
    finish_stream(up.next_stream().await, "waited answer").await;
    let waited = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream_text(&waited).0, "waited answer");
}
