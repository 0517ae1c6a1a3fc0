//! External guardrail hooks over the wire: a hook on a loopback port gives its verdict on the
//! texts its rule reads — block, flag, redactions — on the request and on the answer (held
//! until complete when streamed); a hook that errs or is late lets the request pass or refuses
//! it, as its rule says; every call is timed and counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;
use tokio::net::TcpListener;

/// A guardrail hook: its verdict from the texts it is sent — `forbidden` blocks, `suspicious`
/// flags, `Ann Lee` is redacted as a person, `slow` answers after 3 s, `broken` is a 500.
struct Hook {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    async fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let asked: Value = serde_json::from_slice(&body).unwrap();
                            log.lock().unwrap().push(asked.clone());
                            let all: String = asked["texts"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|t| t["text"].as_str().unwrap())
                                .collect();
                            if all.contains("slow") {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            let (status, answer) = if all.contains("broken") {
                                (500, json!({}))
                            } else if all.contains("forbidden") {
                                (200, json!({"verdict": "block", "reason": "forbidden word"}))
                            } else if all.contains("suspicious") {
                                (200, json!({"verdict": "flag"}))
                            } else if all.contains("Ann Lee") {
                                (
                                    200,
                                    json!({"verdict": "allow", "redactions": [{"text": "Ann Lee", "label": "person"}]}),
                                )
                            } else {
                                (200, json!({"verdict": "allow"}))
                            };
                            let mut r = http::Response::new(Full::new(Bytes::from(answer.to_string())));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Hook { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/verdict", self.addr)
    }

    fn calls(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

async fn gateway(mock: &MockServer, hook: &Hook, rules: &str) -> TestGateway {
    let route = "  - name: hooked\n    match: { models: [chat] }\n    guardrails: [hooks]\n";
    let sets = format!("guardrail_sets:\n  hooks:\n{}", rules.replace("URL", &hook.url()));
    TestGateway::start(&format!("{}{sets}", config_with_routes(mock, route))).await
}

fn ask(text: &str, reply: &str, stream: bool) -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": text}], "stream": stream,
           "mock": {"reply": reply}})
}

fn upstream_saw(mock: &MockServer) -> String {
    let last = mock.stats().recent().pop().expect("the upstream was called");
    let v: Value = serde_json::from_str(&last.body).unwrap();
    v["messages"][0]["content"].as_str().unwrap_or_default().to_owned()
}

fn streamed_text(text: &str) -> String {
    sse_data(text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn an_input_hook_blocks_flags_and_redacts_before_the_upstream_sees_the_request() {
    let (mock, hook) = (mock().await, Hook::start().await);
    let rules = "    - { name: moderation, webhook: { url: \"URL\", timeout_ms: 500 }, where: [user, system] }\n";
    let gw = gateway(&mock, &hook, rules).await;

    let r = gw.chat(KEY, &ask("Tell Ann Lee the plan.", "ok", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream_saw(&mock), "Tell [PERSON_1] the plan.");
    let asked = &hook.calls()[0];
    assert_eq!(asked["rule"], "hooks/moderation");
    assert_eq!(asked["side"], "input");
    assert_eq!(asked["route"], "hooked");
    assert_eq!(asked["tenant"], "acme");
    assert_eq!(
        asked["texts"],
        json!([{"channel": "user", "text": "Tell Ann Lee the plan."}])
    );

    let calls = requests_of(&mock);
    let r = gw.chat(KEY, &ask("a forbidden question", "ok", false)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "guardrail_blocked");
    assert!(r.text().contains("hooks/moderation") && !r.text().contains("forbidden word"));
    assert_eq!(requests_of(&mock), calls, "not sent upstream");

    let r = gw.chat(KEY, &ask("a suspicious question", "ok", false)).await;
    assert_eq!(r.status, 200);
    let lines = gw.log_lines(3).await;
    assert_eq!(
        lines[2]["guardrails"],
        json!(["hooks/moderation:flag:input"]),
        "{}",
        lines[2]
    );
    assert!(
        lines[2]["guard_hooks"][0].as_str().unwrap().ends_with(":ok"),
        "{}",
        lines[2]
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_guardrail_hook_duration_seconds_count{rule="hooks/moderation"} 3"#),
        "{metrics}"
    );
}

fn requests_of(mock: &MockServer) -> u64 {
    mock.stats().requests.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn a_hook_that_fails_lets_the_request_pass_or_refuses_it_as_its_rule_says() {
    let (mock, hook) = (mock().await, Hook::start().await);
    let rules = "    - { name: open, webhook: { url: \"URL\", timeout_ms: 300 } }\n";
    let gw = gateway(&mock, &hook, rules).await;
    for text in ["a slow question", "a broken question"] {
        let r = gw.chat(KEY, &ask(text, "ok", false)).await;
        assert_eq!(r.status, 200, "fail open: {}", r.text());
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"sluice_guardrail_hook_errors_total{rule="hooks/open"} 2"#),
        "{metrics}"
    );
    let line = &gw.log_lines(2).await[0];
    assert!(line["guard_hooks"][0].as_str().unwrap().ends_with(":error"), "{line}");
    drop(gw);

    let rules = "    - { name: closed, webhook: { url: \"URL\", timeout_ms: 300, on_error: block } }\n";
    let gw = gateway(&mock, &hook, rules).await;
    let started = std::time::Instant::now();
    let r = gw.chat(KEY, &ask("a slow question", "ok", false)).await;
    assert_eq!(r.status, 503, "fail closed: {}", r.text());
    assert_eq!(r.error_code(), "guardrail_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "the hook's timeout, not its answer"
    );
    // Nothing is sent to a hook whose channels hold no text.
    let empty = json!({"model": "chat", "messages": [{"role": "system", "content": "be brief"}]});
    let before = hook.calls().len();
    assert_eq!(gw.chat(KEY, &empty).await.status, 200);
    assert_eq!(hook.calls().len(), before);
}

#[tokio::test]
async fn an_output_hook_reads_the_whole_answer_and_a_stream_is_held_for_it() {
    let (mock, hook) = (mock().await, Hook::start().await);
    let rules = "    - { name: answers, on: output, webhook: { url: \"URL\" } }\n";
    let gw = gateway(&mock, &hook, rules).await;

    let r = gw.chat(KEY, &ask("who?", "Ask Ann Lee about it.", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Ask [PERSON_1] about it.");
    let asked = hook.calls().pop().unwrap();
    assert_eq!(asked["side"], "output");
    assert_eq!(
        asked["texts"],
        json!([{"channel": "output", "text": "Ask Ann Lee about it."}])
    );

    // Streamed: held until complete, then the redacted answer as a stream.
    let resp = gw.stream(KEY, &ask("who?", "Ask Ann Lee about it.", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        streamed_text(&read_all(resp.into_body()).await),
        "Ask [PERSON_1] about it."
    );
    let sent: Value = serde_json::from_str(&mock.stats().recent().pop().unwrap().body).unwrap();
    assert_eq!(sent["stream"], false, "the upstream was asked for the whole answer");

    // A blocked answer never reaches the client, streamed or not.
    for stream in [false, true] {
        let r = gw.chat(KEY, &ask("why?", "That is forbidden knowledge.", stream)).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.error_code(), "guardrail_blocked");
        assert!(!r.text().contains("forbidden knowledge"));
    }
    // A completion is not a chat answer: the hook does not read it, and it streams as it came.
    let body = json!({"model": "chat", "prompt": "hi", "stream": true}).to_string();
    let r = gw.post_raw("/v1/completions", Some(KEY), &[], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().trim_end().ends_with("data: [DONE]"), "{}", r.text());
    let lines = gw.log_lines(5).await;
    assert!(lines[4].get("guard_held_whole").is_none(), "{}", lines[4]);
    assert_eq!(lines[1]["guard_held_whole"], true, "{}", lines[1]);
    assert!(
        lines[3]["guardrails"]
            .to_string()
            .contains("hooks/answers:block:output")
    );
    assert!(
        lines[3]["completion_tokens"].as_u64().unwrap() > 0,
        "the blocked answer's tokens are still settled: {}",
        lines[3]
    );
}

#[tokio::test]
async fn a_hook_with_a_secret_gets_every_call_signed() {
    let mock = mock().await;
    let (url, got) = webhook_receiver().await;
    let route = "  - name: hooked\n    match: { models: [chat] }\n    guardrails: [hooks]\n";
    let sets = format!(
        "guardrail_sets:\n  hooks:\n    - {{ name: signed, webhook: {{ url: \"{url}\", timeout_ms: 2000, secret_env: SLUICE_TEST_ADMIN_TOKEN }} }}\n"
    );
    let gw = TestGateway::start(&format!("{}{sets}", config_with_routes(&mock, route))).await;
    // The receiver answers with an empty body (no verdict: the hook errs, and fails open).
    let r = gw.chat(KEY, &ask("hello there", "ok", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (headers, body) = &calls[0];
    let mac = sluice_gateway::alerts::hmac_sha256(ADMIN_TOKEN.as_bytes(), body);
    assert_eq!(
        headers.get("x-sluice-signature").and_then(|v| v.to_str().ok()),
        Some(format!("sha256={}", hex::encode(mac)).as_str()),
        "HMAC-SHA256 of the body with the rule's secret"
    );
    let asked: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(asked["rule"], "hooks/signed");
}
