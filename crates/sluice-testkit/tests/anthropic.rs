//! Anthropic Messages end to end over real HTTP: pass-through to an Anthropic upstream,
//! translation to and from an OpenAI upstream, errors in the client's format, usage in the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;

/// `chat` served by an OpenAI-format deployment, `claude` by an Anthropic one; the mock knobs
/// are forwarded into translated requests.
fn config(mock: &MockServer) -> String {
    let base = mock.base_url();
    format!(
        r#"
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{base}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: claude-a, provider: anthropic, base_url: "{base}", model: claude-upstream, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
  - {{ name: claude, deployments: [claude-a] }}
routes:
  - name: default
    forward_params: [mock]
keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme }}
"#,
        key_hash(KEY)
    )
}

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

async fn messages(gw: &TestGateway, body: &Value, extra: &[(&str, &str)]) -> TestResponse {
    let mut headers = vec![VERSION];
    headers.extend_from_slice(extra);
    gw.post_raw("/v1/messages", Some(KEY), &headers, body.to_string()).await
}

#[tokio::test]
async fn anthropic_to_anthropic_passes_the_body_and_version_headers_through() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let body = "{\"model\":\"claude\", \"max_tokens\": 32,\n \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9\"}], \"x_ext\": [1, 2.50e0]}";
    let r = gw
        .post_raw(
            "/v1/messages",
            Some(KEY),
            &[
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "tools-2024-05-16"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["type"], "message");
    let seen = mock.stats().recent();
    let req = seen.last().unwrap();
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(
        req.body,
        body.replace("\"model\":\"claude\"", "\"model\":\"claude-upstream\"")
    );
    let header = |name: &str| req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("x-api-key").as_deref(), Some(UPSTREAM_SECRET));
    assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(header("anthropic-beta").as_deref(), Some("tools-2024-05-16"));
    assert_eq!(header("authorization"), None);
}

#[tokio::test]
async fn a_translated_stream_records_the_upstreams_usage() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    // Anthropic client, OpenAI upstream.
    let r = messages(
        &gw,
        &json!({"model": "chat", "max_tokens": 16, "stream": true, "messages": [{"role": "user", "content": "hi"}],
                "mock": {"chunks": 5}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
    // OpenAI client, Anthropic upstream, with prompt-cache usage.
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}],
                    "mock": {"chunks": 4, "cached_tokens": 30, "cache_write_tokens": 5}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.text());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(
        data.iter().all(|d| !d.contains("\"usage\"")),
        "no usage chunk unless asked: {data:?}"
    );

    let lines = gw.log_lines(2).await;
    assert_eq!(lines[0]["endpoint"], "messages");
    assert_eq!(lines[0]["completion_tokens"], 5);
    assert_eq!(lines[0]["usage_estimated"], false);
    assert_eq!(lines[1]["endpoint"], "chat_completions");
    assert_eq!(lines[1]["completion_tokens"], 4);
    assert_eq!(lines[1]["cached_tokens"], 30);
    assert_eq!(lines[1]["cache_write_tokens"], 5);
    assert!(lines[1]["prompt_tokens"].as_u64().unwrap() > 35);
    assert_eq!(lines[1]["usage_estimated"], false);
}

#[tokio::test]
async fn messages_errors_come_back_in_anthropics_shape() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let body = json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});

    let r = gw.post_raw("/v1/messages", None, &[VERSION], body.to_string()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");

    let r = messages(
        &gw,
        &json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("max_tokens"));

    let r = messages(
        &gw,
        &json!({"model": "nope", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");

    let r = messages(
        &gw,
        &json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}],
                                  "mock": {"status": 529}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    assert!(r.json()["request_id"].is_string());

    // The same failure on the OpenAI endpoint is OpenAI-shaped.
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 529}}),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "upstream_overloaded");
}

#[tokio::test]
async fn what_a_provider_cannot_serve_is_a_clear_400() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .post("/v1/embeddings", KEY, &json!({"model": "claude", "input": "x"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_endpoint");
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "logprobs": true}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_parameter");
    assert_eq!(mock.stats().recent().len(), 0, "nothing reached the upstream");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("sluice_errors_total{class=\"bad_request\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cut_pass_through_stream_is_charged_its_prompt_as_counted_and_its_output_tokenized() {
    let mock = mock().await;
    let yaml = config(&mock).replace("tenant: acme }", "tenant: acme, limits: { tokens_per_day: 100000 } }");
    let gw = TestGateway::start(&yaml).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sluice_gateway::stream::tokens::tokenizer_ready() {
        assert!(std::time::Instant::now() < deadline, "the tokenizer never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Anthropic on both sides; the upstream drops the connection after 9 of 12 chunks, so no
    // final usage ever comes.
    let r = messages(
        &gw,
        &json!({"model": "claude", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "tell me something long"}],
                "mock": {"chunks": 12, "drop_after_chunks": 9}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let events: Vec<Value> = sse_data(&r.text())
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let said_prompt = events
        .iter()
        .find(|e| e["type"] == "message_start")
        .and_then(|e| e["message"]["usage"]["input_tokens"].as_u64())
        .unwrap();
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert!((5..12).contains(&pieces.len()), "cut short: {}", pieces.len());
    let counted: u64 = pieces
        .iter()
        .map(|p| sluice_gateway::stream::tokens::count_tokens(p))
        .sum();
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["usage_estimated"], true, "{line}");
    assert_eq!(line["prompt_tokens"], said_prompt, "the upstream's own count: {line}");
    assert_eq!(line["completion_tokens"], counted, "{line}");
}
