//! What the cache's end-to-end tests share: their config, keys in two tenants and one without,
//! the chat request, the mock's request count, and readers for answers and streams.

#![allow(dead_code)] // each test file uses some of it

use serde_json::{Value, json};
use sluice_testkit::*;

pub const ACME_2: &str = "sk-sluice-test-key-acme-2";
pub const GLOBEX: &str = "sk-sluice-test-key-globex";
pub const SOLO: &str = "sk-sluice-test-key-solo";

/// Alias `chat` through a route that caches for a minute (`extra` adds to its cache policy),
/// `short` through one that caches for 200 ms, `never` through one with `ttl_ms: 0`; keys in
/// two tenants and one without.
pub fn config(mock: &sluice_mock::MockServer, extra: &str) -> String {
    format!(
        r#"
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
  - {{ name: short, deployments: [mock-a] }}
  - {{ name: never, deployments: [mock-a] }}
prices:
  models: [{{ model: upstream-a, input: 1, output: 2 }}]
routes:
  - name: cached
    match: {{ models: [chat] }}
    forward_params: [mock]
    cache: {{ ttl_ms: 60000{extra} }}
  - name: brief
    match: {{ models: [short] }}
    cache: {{ ttl_ms: 200 }}
  - name: never
    match: {{ models: [never] }}
    cache: {{ ttl_ms: 0 }}
keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme, team: search }}
  - {{ id: acme-2, hash: "{}", tenant: acme, team: ads }}
  - {{ id: globex, hash: "{}", tenant: globex }}
  - {{ id: solo, hash: "{}" }}
"#,
        mock.base_url(),
        key_hash(KEY),
        key_hash(ACME_2),
        key_hash(GLOBEX),
        key_hash(SOLO),
    )
}

pub fn ask(model: &str, question: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0.2})
}

pub fn requests(mock: &sluice_mock::MockServer) -> u64 {
    mock_stats(mock)["requests"].as_u64().unwrap()
}

pub fn text(r: &TestResponse) -> String {
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The text and the usage chunk of an OpenAI chat stream, and whether it ended with `[DONE]`.
pub fn stream_text(sse: &str) -> (String, Option<Value>, bool) {
    let mut text = String::new();
    let (mut usage, mut done) = (None, false);
    for data in sse_data(sse) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, usage, done)
}

pub fn text_of(r: &TestResponse) -> String {
    text(r)
}

pub fn anthropic_text(sse: &str) -> String {
    sse_data(sse)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// The `sluice_cache_waiting` gauge.
pub async fn waiting(gw: &TestGateway) -> u64 {
    let m = gw.metrics().await;
    m.lines()
        .find_map(|l| l.strip_prefix("sluice_cache_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Ends a scripted stream as a provider does: the text, the finish, the usage, `[DONE]`.
pub async fn finish_stream(s: ScriptedStream, text: &str) {
    s.send(&chunk(text)).await;
    s.send(&format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
    ))
    .await;
}

/// Alias `chat` served by a test-driven upstream through one route, `name`, with `settings`
/// (indented route lines), and the test key in tenant `acme`.
pub fn scripted_config(up: &ScriptedUpstream, name: &str, settings: &str) -> String {
    format!(
        r#"
deployments:
  - {{ name: scripted, provider: openai, base_url: "{}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [scripted] }}
routes:
  - name: {name}
{settings}keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme }}
"#,
        up.base_url(),
        key_hash(KEY)
    )
}
