//! The adapter conformance suite: every provider adapter passes the same checks over real HTTP,
//! through the gateway, against the mock speaking that provider's format. One line per adapter
//! (`conformance!`), with the capabilities it lacks skipped by name.
//!
//! Checks: a whole answer, a stream (text in order, finish, usage), tools in both directions
//! (the call comes back whole and streamed; its result goes back and text follows), images, the
//! same through the Anthropic and Responses front doors, each upstream error class mapped to the
//! right status, and usage recorded on streams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::{Value, json};
use sluice_mock::{MockConfig, MockServer};
use sluice_testkit::*;

const EIGHT: &str = "Sluice is a fast gateway for models; this ";

fn config(mock: &MockServer) -> String {
    let v1 = mock.base_url();
    let root = v1.trim_end_matches("/v1");
    format!(
        r#"
deployments:
  - {{ name: openai, provider: openai, base_url: "{v1}", model: up-openai, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: anthropic, provider: anthropic, base_url: "{v1}", model: up-claude, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: azure, provider: azure, base_url: "{root}", model: up-azure, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: gemini, provider: gemini, base_url: "{root}/v1beta", model: up-gemini, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: bedrock, provider: bedrock, region: us-east-1, base_url: "{root}", model: "up.bedrock-v1:0" }}
models:
  - {{ name: openai, deployments: [openai] }}
  - {{ name: anthropic, deployments: [anthropic] }}
  - {{ name: azure, deployments: [azure] }}
  - {{ name: gemini, deployments: [gemini] }}
  - {{ name: bedrock, deployments: [bedrock] }}
routes:
  - name: default
    forward_params: [mock]
keys:
  - {{ id: {KEY_ID}, hash: "{}" }}
"#,
        key_hash(KEY)
    )
}

async fn setup() -> (MockServer, TestGateway) {
    let mock = mock_with(MockConfig {
        api_key: Some(UPSTREAM_SECRET.to_owned()),
        aws: Some((AWS_KEY_ID.to_owned(), AWS_SECRET.to_owned())),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&config(&mock)).await;
    (mock, gw)
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

/// The chunks of an OpenAI stream, parsed.
fn chunks(text: &str) -> Vec<Value> {
    sse_data(text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| panic!("not JSON: {d}")))
        .collect()
}

pub async fn whole_answer(model: &str) {
    let (_mock, gw) = setup().await;
    let r = gw
        .chat(KEY, &json!({"model": model, "max_tokens": 64, "messages": user("hi")}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap().trim(),
        EIGHT.trim()
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

pub async fn stream_with_usage(model: &str) {
    let (_mock, gw) = setup().await;
    let r = gw
        .chat(
            KEY,
            &json!({"model": model, "stream": true, "stream_options": {"include_usage": true}, "messages": user("hi")}),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let cs = chunks(&text);
    let content: String = cs
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str().map(str::to_owned))
        .collect();
    assert_eq!(content, EIGHT);
    let finishes: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason")?.as_str())
        .collect();
    assert_eq!(finishes, ["stop"]);
    assert_eq!(cs.last().unwrap()["usage"]["completion_tokens"], 8);
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["completion_tokens"], 8);
    assert_eq!(line["usage_estimated"], false, "{line}");
}

/// Tool call out (whole and streamed), result back, text answer.
pub async fn tools_round_trip(model: &str) {
    let (_mock, gw) = setup().await;
    let body = json!({"model": model, "messages": user("Weather?"), "tools": [weather_tool()]});
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "mock"}));
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = gw.chat(KEY, &streamed).await;
    let cs = chunks(&r.text());
    let args: String = cs
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "mock"}));
    let names: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/name")?.as_str())
        .collect();
    assert_eq!(names, ["get_weather"]);

    let follow = json!({"model": model, "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"mock\"}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "Sunny"}
    ]});
    let r = gw.chat(KEY, &follow).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    assert!(
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Sluice")
    );
}

pub async fn image_input(model: &str) {
    let (mock, gw) = setup().await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let body = json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]}]});
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = mock.stats().recent().last().unwrap().body.clone();
    assert!(sent.contains(png), "the image reached the upstream: {sent}");
}

/// The same model through the Anthropic and Responses front doors.
pub async fn other_front_doors(model: &str) {
    let (_mock, gw) = setup().await;
    let r = gw
        .post_raw(
            "/v1/messages",
            Some(KEY),
            &[("anthropic-version", "2023-06-01")],
            json!({"model": model, "max_tokens": 64, "messages": user("hi")}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"].as_str().unwrap().trim(), EIGHT.trim());
    assert_eq!(r.json()["usage"]["output_tokens"], 8);
    let r = gw
        .post(
            "/v1/responses",
            KEY,
            &json!({"model": model, "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("event: response.completed"), "{text}");
    let deltas: String = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "response.output_text.delta")
        .filter_map(|v| v["delta"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(deltas, EIGHT);
}

/// Each upstream error class reaches the caller with the right status and code.
pub async fn error_classes(model: &str) {
    let (_mock, gw) = setup().await;
    let ask =
        |status: u16| json!({"model": model, "messages": user("x"), "mock": {"status": status, "retry_after_s": 3}});
    let r = gw.chat(KEY, &ask(429)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_rate_limited");
    assert_eq!(r.header("retry-after"), Some("3"));
    let r = gw.chat(KEY, &ask(400)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "upstream_invalid_request");
    let r = gw.chat(KEY, &ask(500)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_error");
    let r = gw.chat(KEY, &ask(503)).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "upstream_overloaded");
    let r = gw.chat(KEY, &ask(404)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_not_found");
    let r = gw.chat(KEY, &ask(403)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_auth_failed");
}

macro_rules! conformance {
    ($name:ident, $model:literal, skip: [$($skip:ident),*]) => {
        mod $name {
            macro_rules! check {
                ($check:ident) => {
                    #[tokio::test]
                    async fn $check() {
                        let skipped: &[&str] = &[$(stringify!($skip)),*];
                        if skipped.contains(&stringify!($check)) {
                            eprintln!("{}: skipped, the adapter declares it cannot do this", stringify!($check));
                            return;
                        }
                        super::$check($model).await;
                    }
                };
            }
            check!(whole_answer);
            check!(stream_with_usage);
            check!(tools_round_trip);
            check!(image_input);
            check!(other_front_doors);
            check!(error_classes);
        }
    };
}

conformance!(openai_compatible, "openai", skip: []);
conformance!(anthropic, "anthropic", skip: []);
conformance!(azure_openai, "azure", skip: []);
conformance!(gemini, "gemini", skip: []);
conformance!(bedrock, "bedrock", skip: []);
