//! Streaming through the gateway: no buffering, usage always recorded, every abnormal end
//! signalled with an error event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use serde_json::{Value, json};
use sluice_testkit::*;

fn stream_body(extra: Value) -> Value {
    let mut body = json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}], "stream": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

#[tokio::test]
async fn the_client_holds_the_first_chunk_before_the_upstream_sends_the_second() {
    let mut up = ScriptedUpstream::start().await;
    let gw = TestGateway::start(&config_for(&up.base_url(), "")).await;
    let resp = gw.stream(KEY, &stream_body(json!({}))).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let s = up.next_stream().await;
    s.send(&chunk("first")).await;
    let got = next_frame(&mut body, Duration::from_secs(5))
        .await
        .expect("first chunk forwarded");
    assert!(String::from_utf8_lossy(&got).contains("first"), "{got:?}");
    // Only now does the upstream produce the second chunk.
    s.send(&chunk("second")).await;
    let got = next_frame(&mut body, Duration::from_secs(5))
        .await
        .expect("second chunk");
    assert!(String::from_utf8_lossy(&got).contains("second"));
    s.send("data: [DONE]\n\n").await;
    drop(s);
    let rest = read_all(body).await;
    assert!(rest.contains("[DONE]"));
    // The gateway asked for usage on the client's behalf.
    assert!(
        up.bodies()[0].contains(r#""stream_options":{"include_usage":true}"#),
        "{}",
        up.bodies()[0]
    );
}

#[tokio::test]
async fn usage_chunk_is_hidden_unless_asked_and_always_logged() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;

    let text = read_all(
        gw.stream(KEY, &stream_body(json!({"mock": {"chunks": 5}})))
            .await
            .into_body(),
    )
    .await;
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(
        data.iter().all(|d| !d.contains("\"prompt_tokens\"")),
        "usage chunk must be hidden: {text}"
    );
    let content: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(content, "Sluice is a fast gateway ");

    let asked = stream_body(json!({"stream_options": {"include_usage": true}, "mock": {"chunks": 5}}));
    let text = read_all(gw.stream(KEY, &asked).await.into_body()).await;
    let data = sse_data(&text);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(usage["choices"], json!([]));

    let lines = gw.log_lines(2).await;
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["stream"], true);
        assert_eq!(l["completion_tokens"], 5);
        assert_eq!(l["usage_estimated"], false);
        assert_eq!(l["status"], 200);
        assert!(l["error_class"].is_null());
    }
}

async fn faulted_stream(knobs: Value, routes: &str) -> (String, Value) {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with_routes(&mock, routes)).await;
    let resp = gw.stream(KEY, &stream_body(json!({"mock": knobs}))).await;
    assert_eq!(resp.status(), 200, "headers went out before the fault");
    let text = read_all(resp.into_body()).await;
    let line = gw.log_lines(1).await.remove(0);
    (text, line)
}

fn last_error_event(text: &str) -> Value {
    let data = sse_data(text);
    let last = data.last().expect("some event");
    assert_ne!(
        last, "[DONE]",
        "an abnormal stream must not end like a successful one: {text}"
    );
    serde_json::from_str::<Value>(last).expect("error event is JSON")["error"].clone()
}

#[tokio::test]
async fn a_stall_after_bytes_ends_with_an_error_event() {
    let routes = "  - name: quick\n    match: { models: [chat] }\n    stream_idle_timeout_ms: 200\n";
    let (text, line) = faulted_stream(json!({"chunks": 10, "stall_after_chunks": 3}), routes).await;
    assert!(text.contains("Sluice "), "content before the stall was relayed");
    assert_eq!(last_error_event(&text)["code"], "stream_idle_timeout");
    assert_eq!(line["error_class"], "upstream_timeout");
    assert_eq!(line["usage_estimated"], true);
    assert_eq!(line["completion_tokens"], 3);
    assert_eq!(content_chunks(&text), 3, "the client got exactly what was counted");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_ends_with_an_error_event() {
    let (text, line) = faulted_stream(json!({"chunks": 10, "drop_after_chunks": 4, "chunk_delay_ms": 10}), "").await;
    assert_eq!(last_error_event(&text)["code"], "upstream_dropped");
    assert_eq!(line["error_code"], "upstream_dropped");
    // What the client received is what was counted (the mock's last chunks may die with the
    // connection before they reach the gateway).
    let received = content_chunks(&text);
    assert!((1..=4).contains(&received), "{text}");
    assert_eq!(line["completion_tokens"], received, "tokens actually relayed");
    assert_eq!(line["usage_estimated"], true);
}

fn content_chunks(text: &str) -> u64 {
    sse_data(text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count() as u64
}

#[tokio::test]
async fn a_malformed_chunk_ends_with_an_error_event() {
    let (text, line) = faulted_stream(json!({"chunks": 6, "malformed": true}), "").await;
    assert_eq!(last_error_event(&text)["code"], "upstream_malformed_stream");
    assert!(!text.contains("{\"choices\": [\n"), "the broken chunk is not forwarded");
    assert_eq!(line["error_code"], "upstream_malformed_stream");
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_an_error() {
    let mut up = ScriptedUpstream::start().await;
    let gw = TestGateway::start(&config_for(&up.base_url(), "")).await;
    let resp = gw.stream(KEY, &stream_body(json!({}))).await;
    let s = up.next_stream().await;
    s.send(&chunk("partial")).await;
    drop(s); // clean close, but no [DONE]
    let text = read_all(resp.into_body()).await;
    assert_eq!(last_error_event(&text)["code"], "upstream_incomplete_stream");
    let line = gw.log_lines(1).await.remove(0);
    assert_eq!(line["error_code"], "upstream_incomplete_stream");
}

#[tokio::test]
async fn a_stream_the_upstream_ends_with_its_rate_limit_is_logged_as_the_upstreams() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": true,
                      "mock": {"error_after_chunks": 2, "error_type": "rate_limit_error"}});
    let r = gw.stream(KEY, &body).await;
    assert_eq!(r.status(), 200);
    let text = read_all(r.into_body()).await;
    assert!(
        text.contains("rate_limit_error"),
        "the provider's own event is relayed: {text}"
    );
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["error_class"], "upstream_rate_limited", "{line}");
    assert_eq!(line["error_code"], "upstream_rate_limited", "{line}");
}
