//! AWS Bedrock over real HTTP: SigV4-signed Converse requests (the mock verifies the signature
//! as Bedrock does), ConverseStream decoded from AWS event-stream framing, translated back to
//! the client's format, usage logged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::json;
use sluice_mock::{MockConfig, MockServer};
use sluice_testkit::*;

fn config(mock: &MockServer) -> String {
    let root = mock.base_url().trim_end_matches("/v1").to_owned();
    format!(
        r#"
deployments:
  - {{ name: br, provider: bedrock, region: us-east-1, base_url: "{root}", model: "anthropic.claude-3-haiku-20240307-v1:0" }}
  - {{ name: titan, provider: bedrock, region: us-east-1, base_url: "{root}", model: "amazon.titan-embed-text-v2:0" }}
  - {{ name: cohere, provider: bedrock, region: us-east-1, base_url: "{root}", model: "cohere.embed-english-v3" }}
models:
  - {{ name: claude-bedrock, deployments: [br] }}
  - {{ name: titan-embed, deployments: [titan] }}
  - {{ name: cohere-embed, deployments: [cohere] }}
routes:
  - name: default
    forward_params: [mock]
keys:
  - {{ id: {KEY_ID}, hash: "{}" }}
"#,
        key_hash(KEY)
    )
}

async fn verifying_mock(secret: &str) -> MockServer {
    mock_with(MockConfig {
        aws: Some((AWS_KEY_ID.to_owned(), secret.to_owned())),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn signed_converse_whole_and_streamed() {
    let mock = verifying_mock(AWS_SECRET).await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude-bedrock", "max_tokens": 50, "messages": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hello"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Sluice is a fast gateway for models; this "
    );
    assert_eq!(r.json()["usage"]["completion_tokens"], 8);

    let seen = mock.stats().recent();
    let req = seen.last().unwrap();
    assert_eq!(req.path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
    let sent: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 50);
    let header = |name: &str| req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert!(
        header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST/")
    );
    assert_eq!(header("x-amz-security-token").as_deref(), Some("test-session-token"));

    // Streamed, with a tool call, to an OpenAI client.
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude-bedrock", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Weather?"}],
                    "tools": [{"type": "function", "function": {"name": "weather",
                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.text());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let args: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/tool_calls/0/function/arguments")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&args).unwrap(),
        json!({"city": "mock"})
    );
    assert!(data.iter().any(|d| d.contains(r#""finish_reason":"tool_calls""#)));

    // Streamed to an Anthropic client: events and usage.
    let r = gw
        .post_raw(
            "/v1/messages",
            Some(KEY),
            &[("anthropic-version", "2023-06-01")],
            json!({"model": "claude-bedrock", "max_tokens": 64, "stream": true,
                   "messages": [{"role": "user", "content": "x"}], "mock": {"chunks": 3}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("event: message_stop"), "{}", r.text());

    let lines = gw.log_lines(3).await;
    assert_eq!(lines[2]["completion_tokens"], 3);
    assert_eq!(lines[2]["usage_estimated"], false);
    assert_eq!(lines[1]["stream"], true);
}

#[tokio::test]
async fn a_bad_signature_is_the_gateways_problem() {
    let mock = verifying_mock("a-different-secret").await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude-bedrock", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_auth_failed");
}

#[tokio::test]
async fn a_throttling_exception_mid_stream_ends_it_with_an_error_event() {
    let mock = verifying_mock(AWS_SECRET).await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude-bedrock", "stream": true, "messages": [{"role": "user", "content": "x"}],
                    "mock": {"error_after_chunks": 2}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.text());
    let last = data.last().unwrap();
    assert!(last.contains(r#""code":"upstream_rate_limited""#), "{data:?}");
    let lines = gw.log_lines(1).await;
    assert_eq!(lines[0]["error_code"], "upstream_rate_limited");
    assert_eq!(lines[0]["completion_tokens"], 2);
    assert_eq!(lines[0]["usage_estimated"], true);
}

#[tokio::test]
async fn embeddings_through_bedrock_titan_and_cohere() {
    let mock = verifying_mock(AWS_SECRET).await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            &json!({"model": "titan-embed", "input": "hello world", "encoding_format": "float"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert!(r.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let seen = mock.stats().recent();
    assert_eq!(
        seen.last().unwrap().path,
        "/model/amazon.titan-embed-text-v2%3A0/invoke"
    );
    // Titan takes one text per request: several are refused clearly, not silently split.
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            &json!({"model": "titan-embed", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_parameter");
    // Cohere takes a batch; base64 as the OpenAI SDK asks by default.
    let r = gw
        .post(
            "/v1/embeddings",
            KEY,
            &json!({"model": "cohere-embed", "input": ["a", "b", "c"], "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["embedding"].as_str().unwrap().len(), 44, "8 floats, base64");
    let lines = gw.log_lines(3).await;
    assert_eq!(lines[0]["usage_estimated"], false);
    assert_eq!(
        lines[2]["usage_estimated"], true,
        "Cohere reports no token count: estimated"
    );
}
