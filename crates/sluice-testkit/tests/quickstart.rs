//! The README's quickstart config, as shipped, works offline: every model it lists answers, in
//! every client format, through embedded mocks speaking OpenAI's, Anthropic's and Gemini's
//! formats. (Only the listeners, store and log are moved to test-local ones.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::json;
use sluice_testkit::*;

const DEMO_KEY: &str = "sk-sluice-demo-key-change-me";

fn quickstart() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart.yaml")).unwrap();
    // Drop the top-level sections the test harness provides (listeners, store, log).
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let top = !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty();
        if top {
            skipping = ["server:", "admin:", "store:", "logging:"]
                .iter()
                .any(|s| line.starts_with(s));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn every_quickstart_model_answers_in_every_format() {
    let gw = TestGateway::start(&quickstart()).await;
    let fast = json!({"ttft_ms": 0, "chunk_delay_ms": 0, "chunks": 3});
    for model in ["small", "large", "claude", "gemini"] {
        let r = gw
            .chat(
                DEMO_KEY,
                &json!({"model": model, "messages": [{"role": "user", "content": "Hello"}], "mock": fast}),
            )
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(
            r.json()["choices"][0]["message"]["content"].as_str().unwrap().trim(),
            "Sluice is a",
            "{model}"
        );
        let r = gw
            .post_raw(
                "/v1/messages",
                Some(DEMO_KEY),
                &[("anthropic-version", "2023-06-01")],
                json!({"model": model, "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Hello"}],
                       "mock": fast})
                .to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert!(r.text().contains("event: message_stop"), "{model}: {}", r.text());
        let r = gw
            .post(
                "/v1/responses",
                DEMO_KEY,
                &json!({"model": model, "input": "Hello", "mock": fast}),
            )
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.json()["status"], "completed");
    }
    let r = gw
        .post(
            "/v1/embeddings",
            DEMO_KEY,
            &json!({"model": "text-embedding", "input": "hi"}),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn the_quickstarts_cached_model_answers_a_repeated_question_from_the_cache() {
    let gw = TestGateway::start(&quickstart()).await;
    // The README's request, twice.
    let body = json!({"model": "small-cached", "messages": [{"role": "user", "content": "Hello"}]});
    let first = gw.chat(DEMO_KEY, &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let second = gw.chat(DEMO_KEY, &body).await;
    assert_eq!(second.header("x-sluice-cache"), Some("hit"));
    assert_eq!(
        second.json()["choices"][0]["message"]["content"],
        first.json()["choices"][0]["message"]["content"]
    );
    // The other models do not cache.
    let plain = json!({"model": "small", "messages": [{"role": "user", "content": "Hello"}]});
    assert_eq!(gw.chat(DEMO_KEY, &plain).await.header("x-sluice-cache"), None);
}
