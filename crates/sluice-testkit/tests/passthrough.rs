//! Same format on both sides: the body goes upstream byte for byte except `model` and
//! `stream_options`; the caller's key never goes upstream, the deployment's credential does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::{Value, json};
use sluice_testkit::*;

#[tokio::test]
async fn only_model_and_stream_options_change() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let body = "{ \"model\" :\"chat\",\n  \"messages\": [ {\"role\":\"user\", \"content\":\"caf\\u00e9 \u{1F600}\"} ],\n  \"temperature\": 0.70, \"x_vendor_ext\": {\"nested\": [1, 2.50e0, null, true]},\n  \"logit_bias\": {\"50256\": -100}, \"seed\": 42 }";
    let r = gw
        .post_raw("/v1/chat/completions", Some(KEY), &[("x-request-id", "pt-1")], body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("pt-1"));

    let seen = mock.stats().recent();
    let req = seen.last().expect("upstream saw the request");
    let expected = body.replace("\"model\" :\"chat\"", "\"model\" :\"upstream-a\"");
    assert_eq!(req.body, expected, "every other byte is the client's");

    let header = |name: &str| req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        header("authorization").as_deref(),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
    assert_eq!(header("x-request-id").as_deref(), Some("pt-1"));
    assert!(
        req.headers.iter().all(|(_, v)| !v.contains(KEY)),
        "the caller's key never goes upstream"
    );
}

#[tokio::test]
async fn a_degraded_request_changes_only_its_token_cap() {
    let mock = mock().await;
    // Degraded from the first request on: a cap of 4 tokens.
    let gw = TestGateway::start(&config_with_routes(
        &mock,
        "  - name: capped\n    match: { models: [chat] }\n    queue: { max_concurrency: 4, max_queued: 4 }\n    degrade: [{ when_queued: 0, max_tokens: 4 }]\n",
    ))
    .await;
    // Structured output: the schema's properties in the order the model should write them.
    let body = "{\"model\":\"chat\", \"max_tokens\": 900, \"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\n \"response_format\": {\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":{\"type\":\"object\",\n \"properties\":{\"zeta\":{\"type\":\"string\"},\"alpha\":{\"type\":\"number\"}}}}}, \"temperature\": 0.50 }";
    let r = gw.post_raw("/v1/chat/completions", Some(KEY), &[], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-sluice-degraded"), Some("max_tokens=4"));
    let seen = mock.stats().recent();
    let expected = body
        .replace("\"model\":\"chat\"", "\"model\":\"upstream-a\"")
        .replace("\"max_tokens\": 900", "\"max_tokens\": 4");
    assert_eq!(seen.last().unwrap().body, expected, "every other byte is the client's");
}

#[tokio::test]
async fn streaming_adds_stream_options_in_place() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let body = r#"{"model":"chat","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false,"x_opt":"keep"},"x_vendor":1}"#;
    let resp = gw.post_raw("/v1/chat/completions", Some(KEY), &[], body).await;
    assert_eq!(resp.status, 200);
    let seen = mock.stats().recent();
    let sent: Value = serde_json::from_str(&seen.last().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true, "x_opt": "keep"}));
    assert_eq!(sent["x_vendor"], 1);
    assert_eq!(sent["model"], "upstream-a");
}

#[tokio::test]
async fn completions_and_embeddings_pass_through() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let r = gw
        .post(
            "/v1/completions",
            KEY,
            &json!({"model": "chat", "prompt": "say hi", "mock": {"chunks": 3}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["text"], "Sluice is a ");
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            &json!({"model": "chat", "input": ["a", "b"], "encoding_format": "float"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(2));
    let lines = gw.log_lines(2).await;
    assert_eq!(lines[0]["endpoint"], "completions");
    assert_eq!(lines[0]["completion_tokens"], 3);
    assert_eq!(lines[1]["endpoint"], "embeddings");
    assert!(lines[1]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn aliases_round_robin_across_deployments() {
    let a = mock().await;
    let b = mock().await;
    let yaml = format!(
        r#"
deployments:
  - {{ name: a, provider: openai, base_url: "{}", model: up }}
  - {{ name: b, provider: openai, base_url: "{}", model: up }}
models:
  - {{ name: chat, deployments: [a, b] }}
keys:
  - {{ id: {KEY_ID}, hash: "{}" }}
"#,
        a.base_url(),
        b.base_url(),
        key_hash(KEY)
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..10 {
        let r = gw
            .chat(
                KEY,
                &json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "mock": {"chunks": 1}}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(mock_stats(&a)["requests"], 5);
    assert_eq!(mock_stats(&b)["requests"], 5);
}

#[tokio::test]
async fn the_callers_trace_context_goes_on_to_self_hosted_upstreams_only() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mock = mock().await;
    let sent = |mock: &sluice_mock::MockServer, name: &str| {
        let seen = mock.stats().recent();
        let req = seen.last().expect("upstream saw the request").clone();
        req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}]}).to_string();
    // A server on loopback is self-hosted: the trace context and the request id go on.
    let gw = TestGateway::start(&config_with(&mock)).await;
    let headers = [
        ("traceparent", PARENT),
        ("tracestate", "vendor=abc"),
        ("x-request-id", "tr-1"),
    ];
    assert_eq!(
        gw.post_raw("/v1/chat/completions", Some(KEY), &headers, body.clone())
            .await
            .status,
        200
    );
    assert_eq!(sent(&mock, "traceparent").as_deref(), Some(PARENT));
    assert_eq!(sent(&mock, "tracestate").as_deref(), Some("vendor=abc"));
    assert_eq!(sent(&mock, "x-request-id").as_deref(), Some("tr-1"));
    // A malformed traceparent (an all-zero trace id) goes nowhere, and its tracestate with it.
    let bad = [
        ("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ("tracestate", "vendor=abc"),
    ];
    assert_eq!(
        gw.post_raw("/v1/chat/completions", Some(KEY), &bad, body.clone())
            .await
            .status,
        200
    );
    assert_eq!(sent(&mock, "traceparent"), None);
    assert_eq!(sent(&mock, "tracestate"), None);

    // A deployment that says no (as a third-party provider does by default) gets neither.
    let closed = config_with(&mock).replace(
        "api_key_env: SLUICE_TEST_UPSTREAM_KEY }",
        "api_key_env: SLUICE_TEST_UPSTREAM_KEY, forward_trace: false }",
    );
    let gw = TestGateway::start(&closed).await;
    assert_eq!(
        gw.post_raw("/v1/chat/completions", Some(KEY), &headers, body)
            .await
            .status,
        200
    );
    assert_eq!(sent(&mock, "traceparent"), None);
    assert_eq!(sent(&mock, "x-request-id"), None);
}
