//! The answer's JSON check over the wire: an answer that is not the JSON the request asked for
//! (`response_format`, Responses' `text.format`, messages' `output_config.format`) or the route
//! requires (`guard.output_schema`) is retried on the next deployment, falls back, or ends as a
//! 502 `invalid_output` — the caller never receives it as if it were valid. A streamed request
//! with a check is held: sent upstream whole, checked, and written to the client as a stream in
//! its format. The mock's `reply` knob makes one deployment answer badly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use sluice_mock::{Knobs, MockServer};
use sluice_testkit::*;

const BAD: &str = "Sure! Here it is: {\"city\": \"Paris\"";
const GOOD: &str = "{\"city\": \"Paris\", \"population\": 2100000}";

fn requests(m: &MockServer) -> u64 {
    m.stats().requests.load(Ordering::Relaxed)
}

fn deployment(name: &str, base: &str) -> String {
    deployment_yaml(name, base, "")
}

fn replying(text: &str) -> Knobs {
    Knobs {
        reply: Some(text.to_owned()),
        ..Knobs::default()
    }
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": false
    })
}

fn asking(stream: bool) -> Value {
    json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "The capital of France, as JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": schema(), "strict": true}},
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

/// A gateway whose `chat` runs on `bad` then `good` (round robin), whose `solo` runs on `bad`
/// alone and falls back to `chat-good` (on `good`), with `route` settings on every route; a
/// token costs one micro-unit.
async fn setup(route: &str) -> (MockServer, MockServer, TestGateway) {
    let bad = mock_knobs(replying(BAD)).await;
    let good = mock_knobs(replying(GOOD)).await;
    let yaml = format!(
        "prices:\n  currency: USD\n  models:\n    - {{ model: \"upstream-*\", input: 1, output: 1 }}\ndeployments:\n{}{}models:\n  - {{ name: chat, deployments: [bad, good] }}\n  - {{ name: solo, deployments: [bad] }}\n  - {{ name: chat-good, deployments: [good] }}\nroutes:\n  - {{ name: solo, match: {{ models: [solo] }}, max_attempts: 2, retry: {{ backoff_ms: 0 }}, fallback: [chat-good]{route} }}\n  - {{ name: default, max_attempts: 2, retry: {{ backoff_ms: 0 }}{route} }}\nkeys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n",
        deployment("bad", &bad.base_url()),
        deployment("good", &good.base_url()),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    (bad, good, gw)
}

fn content(r: &TestResponse) -> Value {
    let text = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An OpenAI chat stream: its text, whether it had a usage chunk, whether it ended `[DONE]`.
fn streamed(text: &str) -> (String, bool, bool) {
    let (mut content, mut usage, mut done) = (String::new(), false, false);
    for data in sse_data(text) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        usage |= v["usage"].is_object();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(t);
        }
    }
    (content, usage, done)
}

#[tokio::test]
async fn invalid_json_is_retried_on_the_next_deployment_and_the_caller_gets_the_valid_answer() {
    let (bad, good, gw) = setup(", guard: { on_invalid: retry }").await;
    for _ in 0..4 {
        let r = gw.chat(KEY, &asking(false)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(content(&r), json!({"city": "Paris", "population": 2_100_000}));
    }
    // Round robin sent two of the four first attempts to `bad`; each was retried on `good`.
    assert!(requests(&bad) >= 1, "the bad deployment was asked");
    assert_eq!(requests(&good), 4, "every answer came from the good one");
    let lines = gw.log_lines(4).await;
    let invalid: u64 = lines.iter().filter_map(|l| l["guard_invalid_outputs"].as_u64()).sum();
    assert_eq!(invalid, requests(&bad), "{lines:?}");
    let retried = lines
        .iter()
        .find(|l| l["guard_invalid_outputs"] == 1)
        .expect("a retried request");
    let attempts = retried["attempts"].to_string();
    assert!(
        attempts.contains("invalid_output") && attempts.contains("\"ok\""),
        "{attempts}"
    );
    assert!(
        !retried.to_string().contains("Sure!"),
        "never the answer's text: {retried}"
    );
    // The thrown-away answer's tokens are charged with the one the caller got (a token costs
    // one micro-unit here).
    let discarded = retried["discarded_cost_micros"].as_u64().unwrap();
    assert!(discarded > 0, "{retried}");
    let own = retried["prompt_tokens"].as_u64().unwrap() + retried["completion_tokens"].as_u64().unwrap();
    assert_eq!(retried["cost_micros"].as_u64().unwrap(), own + discarded, "{retried}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!("sluice_guardrail_invalid_outputs_total {}", requests(&bad))),
        "{metrics}"
    );

    // Streamed: held, asked for whole, checked, and written as a stream with its usage.
    let (bad_before, good_before) = (requests(&bad), requests(&good));
    for _ in 0..2 {
        let resp = gw.stream(KEY, &asking(true)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let (text, usage, done) = streamed(&read_all(resp.into_body()).await);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["city"], "Paris");
        assert!(usage && done, "a usage chunk and [DONE]");
    }
    assert_eq!(requests(&good) - good_before, 2);
    let sent: Value = serde_json::from_str(&good.stats().recent().pop().unwrap().body).unwrap();
    assert_eq!(
        sent["stream"], false,
        "held: the upstream was asked for the whole answer"
    );
    assert!(sent.get("stream_options").is_none());
    let lines = gw.log_lines(6).await;
    assert!(lines[4..].iter().all(|l| l["guard_held_whole"] == true), "{lines:?}");
    let invalid: u64 = lines[4..]
        .iter()
        .filter_map(|l| l["guard_invalid_outputs"].as_u64())
        .sum();
    assert_eq!(
        invalid,
        requests(&bad) - bad_before,
        "each bad answer retried: {lines:?}"
    );
    assert!(
        gw.metrics().await.contains("sluice_guardrail_held_whole_total 2"),
        "the holds are counted"
    );

    // A request without a JSON format is not checked (and not held).
    let plain = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let resp = gw.stream(KEY, &plain).await;
    let (text, _, done) = streamed(&read_all(resp.into_body()).await);
    assert!(done && (text == BAD || text == GOOD), "{text}");
}

#[tokio::test]
async fn an_invalid_answer_falls_back_or_ends_in_an_error_as_the_route_says() {
    // `fallback`: no retry on the alias's deployments; the chain's alias answers.
    let (bad, good, gw) = setup(", guard: { on_invalid: fallback }").await;
    let mut body = asking(false);
    body["model"] = json!("solo");
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(content(&r)["city"], "Paris");
    assert_eq!(r.header("x-sluice-fallback-reason"), Some("invalid_output"));
    assert!(
        gw.metrics()
            .await
            .contains(r#"sluice_fallbacks_total{route="solo",reason="invalid_output"} 1"#),
        "fallbacks are counted by route and reason"
    );
    assert_eq!((requests(&bad), requests(&good)), (1, 1));
    drop(gw);

    // `error`: one attempt, then a 502 that names no answer text.
    let (bad, _good, gw) = setup(", guard: { on_invalid: error }").await;
    let mut body = asking(false);
    body["model"] = json!("solo");
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_output");
    assert!(!r.text().contains("Sure!"), "{}", r.text());
    assert_eq!(requests(&bad), 1, "not retried, not fallen back");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            r#"sluice_guardrail_triggers_total{rule="guard/output_schema",action="block",side="output",tenant=""} 1"#
        ),
        "{metrics}"
    );

    // Streamed, the same error arrives before any stream starts.
    let mut body = asking(true);
    body["model"] = json!("solo");
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_output");
}

#[tokio::test]
async fn a_route_schema_checks_every_front_door() {
    let route_schema = ", guard: { output_schema: { type: object, required: [city, population] }, on_invalid: error }";
    let (_bad, _good, gw) = setup(route_schema).await;
    // Without asking for JSON, the route's schema applies: `solo` answers badly, `chat-good` well.
    let plain = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.chat(KEY, &plain("solo")).await.status, 502);
    assert_eq!(gw.chat(KEY, &plain("chat-good")).await.status, 200);

    // Anthropic's front door, streamed: held and written as its own event sequence; a failure
    // is its own error shape.
    let messages = |model: &str| {
        json!({"model": model, "max_tokens": 64, "stream": true,
               "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
    };
    let version = [("anthropic-version", "2023-06-01")];
    let r = gw
        .post_raw("/v1/messages", Some(KEY), &version, messages("chat-good"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events: Vec<Value> = sse_data(&r.text())
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "message_start");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let text: String = events.iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["population"], 2_100_000);
    let r = gw.post_raw("/v1/messages", Some(KEY), &version, messages("solo")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["type"], "error");

    // Responses, streamed: the Responses event sequence around the valid answer.
    let responses = json!({"model": "chat-good", "input": "hi", "stream": true}).to_string();
    let r = gw.post_raw("/v1/responses", Some(KEY), &[], responses).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let kinds: Vec<String> = sse_data(&r.text())
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("response.created"), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("response.completed"),
        "{kinds:?}"
    );

    // A schema in the request that does not compile is the caller's mistake.
    let (_b, _g, gw) = setup(", guard: { on_invalid: retry }").await;
    let mut body = asking(false);
    body["response_format"]["json_schema"]["schema"] = json!({"type": 12});
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_response_format");
}
