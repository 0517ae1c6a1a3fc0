//! The payload log over the wire: a route with `log_payloads` stores each prompt and answer
//! after its redaction rules ran — whole and streamed answers, never an address the guardrails
//! redacted, never input put back for the client — and a route without it stores nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sluice_testkit::*;

const SETS: &str = r#"
guardrail_sets:
  emails-back:
    - name: emails
      pii: [email]
      action: redact
      restore: true
"#;

fn config(mock: &sluice_mock::MockServer) -> String {
    let routes = "  - name: logged\n    match: { headers: { x-route: logged } }\n    guardrails: [pii-redact]\n    log_payloads: true\n    payload_retention_days: 7\n  - name: restoring\n    match: { headers: { x-route: restoring } }\n    guardrails: [emails-back]\n    log_payloads: true\n";
    format!("{}{SETS}", config_with_routes(mock, routes))
}

fn ask(text: &str, reply: &str, stream: bool) -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": text}], "stream": stream, "mock": {"reply": reply}})
}

/// The stored row of `request_id`, once the writer has stored it (bounded wait).
async fn row(gw: &TestGateway, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = gw.admin(Method::GET, "/admin/payloads?limit=500", None).await.json();
        if let Some(r) = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request_id"] == request_id)
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no payload row for {request_id}: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn prompts_and_answers_are_stored_redacted_whole_and_streamed() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let prompt = "Mail alice@example.com about the invoice";
    let reply = "I wrote to bob@example.org about it.";

    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-route", "logged"), ("x-request-id", "whole-1")],
            ask(prompt, reply, false).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = row(&gw, "whole-1").await;
    let (req, resp) = (
        stored["request"].as_str().unwrap(),
        stored["response"].as_str().unwrap(),
    );
    assert!(!req.contains("alice@example.com") && req.contains("[EMAIL_1]"), "{req}");
    assert!(
        !resp.contains("bob@example.org") && resp.contains("I wrote to"),
        "{resp}"
    );
    assert_eq!(
        (stored["route"].as_str(), stored["redacted"].as_bool()),
        (Some("logged"), Some(true))
    );
    assert_eq!(stored["tenant"], "acme");
    let days = (stored["expires_at"].as_i64().unwrap() - stored["at"].as_i64().unwrap()) / 86_400_000;
    assert_eq!(days, 7);

    // Streamed: the answer's text is kept as it left the output guardrails.
    let resp = gw
        .send(request(
            Method::POST,
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &[("x-route", "logged"), ("x-request-id", "stream-1")],
            ask(prompt, reply, true).to_string().into(),
        ))
        .await;
    assert_eq!(resp.status, 200);
    let stored = row(&gw, "stream-1").await;
    let text = stored["response"].as_str().unwrap();
    assert!(
        !text.contains("bob@example.org") && text.contains("I wrote to"),
        "{text}"
    );

    // Input put back for the client is not put back in the row.
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-route", "restoring"), ("x-request-id", "restore-1")],
            ask("My address is dan@example.com", "Noted: [EMAIL_1] it is.", false).to_string(),
        )
        .await;
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Noted: dan@example.com it is."
    );
    let stored = row(&gw, "restore-1").await;
    assert_eq!(stored["response"], "Noted: [EMAIL_1] it is.");
    assert!(!stored["request"].as_str().unwrap().contains("dan@example.com"));

    // A route without log_payloads stores nothing.
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-request-id", "plain-1")],
            ask("hello", "hi", false).to_string(),
        )
        .await;
    assert_eq!(r.status, 200);
    // The writer keeps order: once a later logged row is in, the plain one would be too.
    let r = gw
        .post_raw(
            "/v1/chat/completions",
            Some(KEY),
            &[("x-route", "logged"), ("x-request-id", "whole-2")],
            ask("again", "ok", false).to_string(),
        )
        .await;
    assert_eq!(r.status, 200);
    row(&gw, "whole-2").await;
    let list = gw.admin(Method::GET, "/admin/payloads?limit=500", None).await.json();
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["request_id"] != "plain-1")
    );
    // Four logged requests, four rows (the counter moves as each batch is stored).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw.metrics().await.contains("sluice_payload_rows_written_total 4\n") {
        assert!(Instant::now() < deadline, "{}", gw.metrics().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.metrics().await.contains("sluice_payload_rows_dropped_total 0\n"));
}
