//! The response cache over the wire: exact hits that cost nothing and never reach the
//! upstream, tenants that never share, streamed answers stored after their end and replayed
//! as streams, what is never stored, what the client may ask (bounded by the route), purges,
//! one entry for every front door, a tenant's share, paced replays.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod cache_support;

use std::time::Duration;

use cache_support::*;
use serde_json::{Value, json};
use sluice_testkit::*;

#[tokio::test]
async fn an_identical_request_is_answered_from_the_cache_and_charged_nothing() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;

    let first = gw.chat(KEY, &ask("chat", "What is the capital of France?")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 1);

    // The same request written another way: key order, spacing, `1.0` for `1`, a `user`, a
    // default given explicitly.
    let same = r#"{ "temperature": 0.2, "user": "someone", "top_p": 1.0,
        "messages": [ { "content": "What is the capital of France?", "role": "user" } ], "model": "chat" }"#;
    let second = gw.post_raw("/v1/chat/completions", Some(KEY), &[], same).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.header("x-sluice-cache"), Some("hit"));
    assert_eq!(requests(&mock), 1, "a hit never reaches the upstream");
    assert_eq!(text(&second), text(&first));
    for n in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(
            second.json()["usage"][n],
            first.json()["usage"][n],
            "the replayed usage is the original's"
        );
    }
    assert_ne!(second.json()["id"], first.json()["id"], "a replay has an id of its own");
    // To a client of the same format, the answer as the upstream wrote it, but for the id.
    let (mut a, mut b) = (first.json(), second.json());
    a["id"] = json!(null);
    b["id"] = json!(null);
    assert_eq!(a, b);

    let lines = gw.log_lines(2).await;
    assert_eq!(lines[0]["cache"], "miss");
    assert!(lines[0]["cost_micros"].as_u64().unwrap() > 0);
    assert_eq!(lines[1]["cache"], "hit");
    assert_eq!(lines[1]["cache_key"], lines[0]["cache_key"]);
    assert_eq!(lines[1]["cost_micros"], 0, "a hit costs nothing");
    assert_eq!(lines[1]["saved_cost_micros"], lines[0]["cost_micros"]);
    assert_eq!(lines[1]["prompt_tokens"], lines[0]["prompt_tokens"]);
    assert!(lines[1]["attempts"].as_array().unwrap().is_empty());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_cache_lookups_total{route="cached",result="hit"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"sluice_cache_lookups_total{route="cached",result="miss"} 1"#));
    assert!(metrics.contains("sluice_cache_entries 1"), "{metrics}");
    let saved_cost = format!(
        r#"sluice_cache_saved_cost_micros_total{{route="cached"}} {}"#,
        lines[0]["cost_micros"]
    );
    assert!(metrics.contains(&saved_cost), "{metrics}");
    let saved_tokens = format!(
        r#"sluice_cache_saved_tokens_total{{route="cached"}} {}"#,
        lines[0]["total_tokens"]
    );
    assert!(metrics.contains(&saved_tokens), "{metrics}");

    // A different question, or another model alias's route, is another entry.
    let other = gw.chat(KEY, &ask("chat", "What is the capital of Germany?")).await;
    assert_eq!(other.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 2);
}

#[tokio::test]
async fn tenants_never_share_an_entry_and_keys_of_one_tenant_do() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let q = ask("chat", "Summarise the quarterly report.");

    assert_eq!(gw.chat(KEY, &q).await.header("x-sluice-cache"), Some("miss"));
    // Another key of the same tenant shares the entry.
    assert_eq!(gw.chat(ACME_2, &q).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(requests(&mock), 1);
    // Another tenant never does; nor does a key without a tenant (its own tenant).
    assert_eq!(gw.chat(GLOBEX, &q).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(gw.chat(SOLO, &q).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 3);
    assert_eq!(gw.chat(GLOBEX, &q).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(gw.chat(SOLO, &q).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(requests(&mock), 3);
}

#[tokio::test]
async fn a_route_scoped_by_team_shares_only_within_the_team() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, ", scope: team")).await;
    let q = ask("chat", "Draft a reply.");
    assert_eq!(gw.chat(KEY, &q).await.header("x-sluice-cache"), Some("miss"));
    // Same tenant, another team.
    assert_eq!(gw.chat(ACME_2, &q).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(gw.chat(KEY, &q).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(requests(&mock), 2);
}

#[tokio::test]
async fn a_streamed_answer_is_stored_after_its_end_and_replayed_as_a_stream_in_each_format() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let mut q = ask("chat", "Tell me about the sea.");
    q["mock"] = json!({"chunks": 12});
    q["stream"] = json!(true);
    q["stream_options"] = json!({"include_usage": true});

    let live = gw.stream(KEY, &q).await;
    assert_eq!(live.headers()["x-sluice-cache"], "miss");
    let (live_text, live_usage, done) = stream_text(&read_all(live.into_body()).await);
    assert!(done && !live_text.is_empty());
    assert!(live_usage.is_some());

    let replay = gw.stream(KEY, &q).await;
    assert_eq!(replay.headers()["x-sluice-cache"], "hit");
    assert_eq!(replay.headers()["content-type"], "text/event-stream");
    let (text, usage, done) = stream_text(&read_all(replay.into_body()).await);
    assert!(done, "a replay ends as a live stream does");
    assert_eq!(text, live_text);
    assert_eq!(
        usage.unwrap()["completion_tokens"],
        live_usage.unwrap()["completion_tokens"]
    );
    assert_eq!(requests(&mock), 1);

    // The same question not streamed is the same entry, as a whole answer.
    q["stream"] = json!(false);
    q.as_object_mut().unwrap().remove("stream_options");
    let whole = gw.chat(KEY, &q).await;
    assert_eq!(whole.header("x-sluice-cache"), Some("hit"));
    assert_eq!(text_of(&whole), live_text);
    assert_eq!(requests(&mock), 1);

    // Through the Anthropic front door, with other parameters (`max_tokens`, no mock knobs):
    // another entry, stored from the stream and replayed in Anthropic's event sequence.
    let body = json!({"model": "chat", "max_tokens": 64, "temperature": 0.2, "stream": true,
        "messages": [{"role": "user", "content": "Tell me about the sea."}]});
    let headers = [("anthropic-version", "2023-06-01")];
    let first = gw.post_raw("/v1/messages", Some(KEY), &headers, body.to_string()).await;
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let again = gw.post_raw("/v1/messages", Some(KEY), &headers, body.to_string()).await;
    assert_eq!(again.header("x-sluice-cache"), Some("hit"));
    let events: Vec<String> = again
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("message_start"));
    assert_eq!(events.last().map(String::as_str), Some("message_stop"));
    assert_eq!(anthropic_text(&again.text()), anthropic_text(&first.text()));
}

#[tokio::test]
async fn errors_cut_streams_error_events_several_choices_and_no_store_are_never_stored() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    // Failures and successes alternate: never enough failures in a row to open the breaker.
    type Case<'a> = (&'a str, Value, &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 5] = [
        ("a 500", json!({"mock": {"status": 500}}), &[]),
        ("several choices", json!({"n": 2}), &[]),
        (
            "a stream cut short",
            json!({"stream": true, "mock": {"chunks": 8, "drop_after_chunks": 3}}),
            &[],
        ),
        ("no-store", json!({}), &[("cache-control", "no-store")]),
        (
            "a stream ended by an error event",
            json!({"stream": true, "mock": {"chunks": 8, "error_after_chunks": 3}}),
            &[],
        ),
    ];
    for (i, (what, extra, headers)) in cases.iter().enumerate() {
        let mut q = ask("chat", &format!("Question {i}"));
        for (k, v) in extra.as_object().unwrap() {
            q[k] = v.clone();
        }
        let before = requests(&mock);
        for _ in 0..2 {
            let r = gw
                .post_raw("/v1/chat/completions", Some(KEY), headers, q.to_string())
                .await;
            assert_ne!(r.header("x-sluice-cache"), Some("hit"), "{what}: {}", r.text());
        }
        assert_eq!(requests(&mock), before + 2, "{what}: both went upstream");
    }
}

#[tokio::test]
async fn the_client_may_refresh_or_shorten_but_never_lengthen_and_entries_expire() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let q = ask("chat", "What time zone is Lisbon in?");
    assert_eq!(gw.chat(KEY, &q).await.header("x-sluice-cache"), Some("miss"));

    // no-cache: looks nothing up, goes upstream, stores the fresh answer.
    let fresh = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("cache-control", "no-cache")],
            q.to_string(),
        )
        .await;
    assert_eq!(fresh.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 2);
    // A shorter TTL than the entry's age: a miss. (The entry is at least 50 ms old.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    let young = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-sluice-cache-ttl-ms", "10")],
            q.to_string(),
        )
        .await;
    assert_eq!(young.header("x-sluice-cache"), Some("miss"));
    // Asking for more than the route's TTL changes nothing: still served from the entry.
    let long = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-sluice-cache-ttl-ms", "999999999")],
            q.to_string(),
        )
        .await;
    assert_eq!(long.header("x-sluice-cache"), Some("hit"));

    // A 200 ms route: after 400 ms the entry is gone.
    let brief = ask("short", "Ephemeral?");
    assert_eq!(gw.chat(KEY, &brief).await.header("x-sluice-cache"), Some("miss"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gw.chat(KEY, &brief).await.header("x-sluice-cache"), Some("miss"));

    // `ttl_ms: 0` never caches, and says nothing.
    let never = ask("never", "Sensitive?");
    for _ in 0..2 {
        assert_eq!(gw.chat(KEY, &never).await.header("x-sluice-cache"), None);
    }
}

#[tokio::test]
async fn a_route_that_skips_sampled_requests_caches_only_deterministic_ones() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, ", skip_sampled: true")).await;
    let mut sampled = json!({"model": "chat", "messages": [{"role": "user", "content": "A poem?"}]});
    for _ in 0..2 {
        assert_eq!(gw.chat(KEY, &sampled).await.header("x-sluice-cache"), Some("bypass"));
    }
    sampled["temperature"] = json!(0);
    assert_eq!(gw.chat(KEY, &sampled).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(gw.chat(KEY, &sampled).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(requests(&mock), 3);
}

#[tokio::test]
async fn entries_are_purged_by_tenant_route_or_key_through_the_admin_api() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    for (key, q) in [(KEY, "one"), (KEY, "two"), (GLOBEX, "one")] {
        assert_eq!(
            gw.chat(key, &ask("chat", q)).await.header("x-sluice-cache"),
            Some("miss")
        );
    }
    let stats = gw.admin(http::Method::GET, "/admin/cache/stats", None).await.json();
    assert_eq!(stats["entries"], 3, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0);

    let purged = gw.admin(http::Method::DELETE, "/admin/cache?tenant=acme", None).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.json()["purged"], 2);
    assert_eq!(
        gw.chat(KEY, &ask("chat", "one")).await.header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(
        gw.chat(GLOBEX, &ask("chat", "one")).await.header("x-sluice-cache"),
        Some("hit")
    );

    // By key: the access log's `cache_key` of globex's entry.
    let lines = gw.log_lines(5).await;
    let key = lines[2]["cache_key"].as_str().unwrap().to_owned();
    let purged = gw
        .admin(http::Method::DELETE, &format!("/admin/cache?key={key}"), None)
        .await;
    assert_eq!(purged.json()["purged"], 1);
    assert_eq!(
        gw.chat(GLOBEX, &ask("chat", "one")).await.header("x-sluice-cache"),
        Some("miss")
    );
    // By route: everything left.
    let purged = gw.admin(http::Method::DELETE, "/admin/cache?route=cached", None).await;
    assert_eq!(purged.json()["purged"], 2);
    assert_eq!(requests(&mock), 5);
}

#[tokio::test]
async fn the_same_question_through_three_front_doors_is_one_entry_in_three_formats() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let question = "Name three rivers in Portugal.";
    let openai = json!({"model": "chat", "max_tokens": 64, "temperature": 0.2,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]});
    let first = gw.chat(KEY, &openai).await;
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let answer = text(&first);

    // Anthropic's Messages API: the system prompt apart, `max_tokens` required.
    let anthropic = json!({"model": "chat", "max_tokens": 64, "temperature": 0.2, "system": "Be brief.",
        "messages": [{"role": "user", "content": question}]});
    let r = gw
        .post_raw(
            "/v1/messages",
            Some(KEY),
            &[("anthropic-version", "2023-06-01")],
            anthropic.to_string(),
        )
        .await;
    assert_eq!(r.header("x-sluice-cache"), Some("hit"), "{}", r.text());
    assert_eq!(r.json()["type"], "message");
    assert_eq!(r.json()["content"][0]["text"], answer.as_str());
    assert!(r.json()["id"].as_str().unwrap().starts_with("msg_"));

    // The Responses API.
    let responses = json!({"model": "chat", "max_output_tokens": 64, "temperature": 0.2,
        "instructions": "Be brief.", "input": question});
    let r = gw.post("/v1/responses", KEY, &responses).await;
    assert_eq!(r.header("x-sluice-cache"), Some("hit"), "{}", r.text());
    assert_eq!(r.json()["output"][0]["content"][0]["text"], answer.as_str());
    assert_eq!(requests(&mock), 1);

    // A parameter only one format has still tells requests apart: not served from the entry,
    // this one goes on (and is refused: the OpenAI upstream has no `top_k`).
    let mut top_k = anthropic.clone();
    top_k["top_k"] = json!(5);
    let r = gw
        .post_raw(
            "/v1/messages",
            Some(KEY),
            &[("anthropic-version", "2023-06-01")],
            top_k.to_string(),
        )
        .await;
    assert_ne!(r.header("x-sluice-cache"), Some("hit"), "{}", r.text());
    assert_eq!(r.status, 400, "{}", r.text());
    let mut seed = openai.clone();
    seed["seed"] = json!(7);
    assert_eq!(gw.chat(KEY, &seed).await.header("x-sluice-cache"), Some("miss"));
}

#[tokio::test]
async fn one_tenant_cannot_fill_the_tier_the_others_share() {
    let mock = mock().await;
    let yaml = format!(
        "{}\ncache: {{ memory_bytes: 1048576, tenant_max_percent: 10 }}\n",
        config(&mock, "")
    );
    let gw = TestGateway::start(&yaml).await;
    let big = |n: usize| {
        let mut q = ask("chat", &format!("Long answer {n}"));
        q["mock"] = json!({"chunks": 400});
        q
    };
    for n in 0..60 {
        assert_eq!(gw.chat(KEY, &big(n)).await.status, 200);
    }
    let stats = gw.admin(http::Method::GET, "/admin/cache/stats", None).await.json();
    let acme = &stats["largest_tenants"][0];
    assert_eq!(acme["tenant"], "acme", "{stats}");
    let share = 1_048_576 / 100 * 10;
    assert!(acme["bytes"].as_u64().unwrap() <= share, "{stats}");
    // Room was made by evicting acme's older entries: counted in the stats and the metrics.
    let evicted = stats["evictions"].as_u64().unwrap();
    assert!(evicted > 0 && evicted < 60, "{stats}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!("sluice_cache_evictions_total {evicted}")),
        "{metrics}"
    );
    assert!(acme["bytes"].as_u64().unwrap() > share / 2, "{stats}");
    // At its share, acme made room among its own entries: its newest answers are kept, its
    // first are not.
    assert_eq!(gw.chat(KEY, &big(59)).await.header("x-sluice-cache"), Some("hit"));
    assert_eq!(gw.chat(KEY, &big(0)).await.header("x-sluice-cache"), Some("miss"));
    // Another tenant still stores.
    assert_eq!(gw.chat(GLOBEX, &big(0)).await.header("x-sluice-cache"), Some("miss"));
    assert_eq!(gw.chat(GLOBEX, &big(0)).await.header("x-sluice-cache"), Some("hit"));
}

#[tokio::test]
async fn a_route_may_pace_a_streamed_replay_as_a_live_stream_arrives() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, ", replay_chunk_ms: 40")).await;
    let mut q = ask("chat", "Pace me.");
    q["mock"] = json!({"chunks": 20});
    q["stream"] = json!(true);
    let live = stream_text(&read_all(gw.stream(KEY, &q).await.into_body()).await).0;

    let started = std::time::Instant::now();
    let replay = gw.stream(KEY, &q).await;
    assert_eq!(replay.headers()["x-sluice-cache"], "hit");
    let mut body = replay.into_body();
    let (mut text, mut events) = (String::new(), 0usize);
    while let Some(frame) = next_frame(&mut body, Duration::from_secs(10)).await {
        let frame = String::from_utf8_lossy(&frame).into_owned();
        events += frame.matches("data: ").count();
        text.push_str(&frame);
    }
    assert_eq!(stream_text(&text).0, live);
    assert!(events > 6, "{events} events");
    // Each event after the first waited its turn: the replay cannot be faster than that.
    let least = Duration::from_millis(40) * (events as u32 - 1);
    assert!(started.elapsed() >= least, "{:?} < {least:?}", started.elapsed());
    // A whole answer is not paced.
    q["stream"] = json!(false);
    assert_eq!(gw.chat(KEY, &q).await.header("x-sluice-cache"), Some("hit"));
}
