//! Every way a request can fail gets an OpenAI-shaped error with the right status and a stable
//! code, and is counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use http::Method;
use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;

const ROUTE_KEY: &str = "sk-sluice-test-key-route-limited";

fn config(mock: &MockServer) -> String {
    let url = mock.base_url();
    format!(
        r#"
deployments:
  - {{ name: good, provider: openai, base_url: "{url}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: badcred, provider: openai, base_url: "{url}", model: upstream-a, api_key_env: SLUICE_TEST_WRONG_KEY }}
  - {{ name: dead, provider: openai, base_url: "http://127.0.0.1:1/v1", model: nothing }}
models:
  - {{ name: chat, deployments: [good] }}
  - {{ name: other, deployments: [good] }}
  - {{ name: badcred, deployments: [badcred] }}
  - {{ name: dead, deployments: [dead] }}
  - {{ name: flaky, deployments: [good, good] }}
routes:
  - name: slow
    match: {{ headers: {{ x-test-route: slow }} }}
    first_byte_timeout_ms: 300
  - name: small
    match: {{ headers: {{ x-test-route: small }} }}
    max_body_bytes: 2000
  - name: retry
    match: {{ headers: {{ x-test-route: retry }} }}
    max_attempts: 2
  - name: default
# Every case injects its own failure into one deployment; breakers are tested in resilience.rs.
breaker: {{ enabled: false }}
keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme }}
  - {{ id: limited, hash: "{}", models: [other] }}
  - {{ id: route-limited, hash: "{}", routes: [default] }}
  - {{ id: expired, hash: "{}", expires_at: "2020-01-01T00:00:00Z" }}
"#,
        key_hash(KEY),
        key_hash(LIMITED_KEY),
        key_hash(ROUTE_KEY),
        key_hash("sk-sluice-expired")
    )
}

fn chat(model: &str, mock: Value) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "mock": mock}).to_string()
}

struct Case {
    name: &'static str,
    key: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: String,
    status: u16,
    code: &'static str,
}

#[tokio::test]
async fn errors_have_the_right_status_code_and_shape() {
    let mock = mock_with(sluice_mock::MockConfig {
        api_key: Some(UPSTREAM_SECRET.to_owned()),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&config(&mock)).await;
    let ok = || chat("chat", json!({}));
    let cases = vec![
        Case {
            name: "no key",
            key: None,
            headers: &[],
            body: ok(),
            status: 401,
            code: "missing_api_key",
        },
        Case {
            name: "bad key",
            key: Some("sk-sluice-nope"),
            headers: &[],
            body: ok(),
            status: 401,
            code: "invalid_api_key",
        },
        Case {
            name: "expired key",
            key: Some("sk-sluice-expired"),
            headers: &[],
            body: ok(),
            status: 401,
            code: "expired_api_key",
        },
        Case {
            name: "malformed JSON",
            key: Some(KEY),
            headers: &[],
            body: "{\"model\": ".into(),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "not an object",
            key: Some(KEY),
            headers: &[],
            body: "[1]".into(),
            status: 400,
            code: "invalid_json",
        },
        Case {
            name: "wrong type",
            key: Some(KEY),
            headers: &[],
            body: r#"{"model": 7, "messages": []}"#.into(),
            status: 400,
            code: "invalid_type",
        },
        Case {
            name: "missing field",
            key: Some(KEY),
            headers: &[],
            body: r#"{"model": "chat"}"#.into(),
            status: 400,
            code: "missing_required_parameter",
        },
        Case {
            name: "bad stream flag",
            key: Some(KEY),
            headers: &[],
            body: r#"{"model": "chat", "messages": [{}], "stream": 1}"#.into(),
            status: 400,
            code: "invalid_type",
        },
        Case {
            name: "unknown model",
            key: Some(KEY),
            headers: &[],
            body: chat("gpt-9", json!({})),
            status: 404,
            code: "model_not_found",
        },
        Case {
            name: "model not allowed",
            key: Some(LIMITED_KEY),
            headers: &[],
            body: ok(),
            status: 403,
            code: "model_not_allowed",
        },
        Case {
            name: "route not allowed",
            key: Some(ROUTE_KEY),
            headers: &[("x-test-route", "slow")],
            body: ok(),
            status: 403,
            code: "route_not_allowed",
        },
        Case {
            name: "route body limit",
            key: Some(KEY),
            headers: &[("x-test-route", "small")],
            body: chat("chat", json!({"pad": "x".repeat(3000)})),
            status: 413,
            code: "request_too_large",
        },
        Case {
            name: "provider 400 stays 400",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"status": 400})),
            status: 400,
            code: "upstream_invalid_request",
        },
        Case {
            name: "provider 422 stays 422",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"status": 422})),
            status: 422,
            code: "upstream_invalid_request",
        },
        Case {
            name: "provider 429",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"status": 429, "retry_after_s": 7})),
            status: 429,
            code: "upstream_rate_limited",
        },
        Case {
            name: "provider 500 is 502",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"status": 500})),
            status: 502,
            code: "upstream_error",
        },
        Case {
            name: "provider 503 is 503",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"status": 503})),
            status: 503,
            code: "upstream_overloaded",
        },
        Case {
            name: "our credential rejected",
            key: Some(KEY),
            headers: &[],
            body: chat("badcred", json!({})),
            status: 502,
            code: "upstream_auth_failed",
        },
        Case {
            name: "dead upstream",
            key: Some(KEY),
            headers: &[],
            body: chat("dead", json!({})),
            status: 502,
            code: "upstream_connect_failed",
        },
        Case {
            name: "malformed upstream JSON",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"malformed": true})),
            status: 502,
            code: "upstream_malformed_response",
        },
        Case {
            name: "upstream timeout",
            key: Some(KEY),
            headers: &[("x-test-route", "slow")],
            body: chat("chat", json!({"stall": true})),
            status: 504,
            code: "upstream_timeout",
        },
        Case {
            name: "dropped before answering",
            key: Some(KEY),
            headers: &[],
            body: chat("chat", json!({"drop_after_chunks": 0})),
            status: 502,
            code: "upstream_connection_error",
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let r = gw
            .post_raw("/v1/chat/completions", c.key, c.headers, c.body.clone())
            .await;
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let shaped = body["error"]["message"].is_string()
            && body["error"]["type"].is_string()
            && body["error"].get("param").is_some();
        if r.status.as_u16() != c.status
            || body["error"]["code"] != c.code
            || !shaped
            || r.header("x-request-id").is_none()
        {
            failures.push(format!("{}: got {} {}", c.name, r.status, r.text()));
        }
        if r.text().contains(UPSTREAM_SECRET) || r.text().contains("wrong-credential-999") {
            failures.push(format!("{}: a credential leaked: {}", c.name, r.text()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Retry-After passes through; the SDK is told not to retry what retrying cannot fix.
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[],
            chat("chat", json!({"status": 429, "retry_after_s": 7})),
        )
        .await;
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = gw
        .post_raw("/v1/chat/completions", Some(KEY), &[], chat("badcred", json!({})))
        .await;
    assert_eq!(r.header("x-should-retry"), Some("false"));

    // Every request was logged, classified, and counted.
    let lines = gw.log_lines(cases.len() + 2).await;
    assert_eq!(lines.len(), cases.len() + 2);
    assert!(
        lines.iter().all(|l| l["error_class"].is_string()),
        "every line classified"
    );
    assert!(
        !gw.log_text().contains(UPSTREAM_SECRET) && !gw.log_text().contains(KEY),
        "no credential in logs"
    );
    let metrics = gw.metrics().await;
    for class in [
        "unauthenticated",
        "bad_request",
        "not_found",
        "forbidden",
        "payload_too_large",
        "upstream_timeout",
        "upstream_rejected",
    ] {
        assert!(
            metrics.contains(&format!("sluice_errors_total{{class=\"{class}\"}}")),
            "{class} counted:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn the_gateway_retries_and_then_tells_sdks_not_to() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-test-route", "retry")],
            chat("flaky", json!({"status": 500})),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert_eq!(mock_stats(&mock)["requests"], 2, "two attempts");
    let line = gw.log_lines(1).await.remove(0);
    assert_eq!(line["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(line["attempts"][0]["outcome"], "upstream_error");
    // A provider 400 is not retried.
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-test-route", "retry")],
            chat("flaky", json!({"status": 400})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(mock_stats(&mock)["requests"], 3);
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let mock = mock().await;
    let yaml = format!(
        "server: {{ listen: \"127.0.0.1:0\", max_body_bytes: 4096 }}\n{}",
        config(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    // Declared too large: refused from the header alone (the body is never sent).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: 10000000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request_too_large"));
    // Chunked, no length: cut off while reading.
    let big = chat("chat", json!({"pad": "y".repeat(10_000)}));
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("transfer-encoding", "chunked")],
            big,
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
}

#[tokio::test]
async fn models_list_shows_only_what_the_key_may_use() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let ids = |r: TestResponse| -> Vec<String> {
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(gw.get("/v1/models", Some(KEY)).await),
        vec!["chat", "other", "badcred", "dead", "flaky"]
    );
    assert_eq!(ids(gw.get("/v1/models", Some(LIMITED_KEY)).await), vec!["other"]);
    assert_eq!(gw.get("/v1/models/chat", Some(LIMITED_KEY)).await.status, 404);
    assert_eq!(
        gw.get("/v1/models/other", Some(LIMITED_KEY)).await.json()["id"],
        "other"
    );
    assert_eq!(gw.get("/v1/models", None).await.status, 401);
    let r = gw.get("/v1/nothing-here", Some(KEY)).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (404, "unknown_path".to_owned()));
    let r = gw
        .send(request(
            Method::DELETE,
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &[],
            bytes::Bytes::new(),
        ))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(gw.get("/healthz", None).await.status, 200);
    assert_eq!(gw.get("/readyz", None).await.status, 200);
}
