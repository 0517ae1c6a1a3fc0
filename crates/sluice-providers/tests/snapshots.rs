//! Each provider's wire format, from fixtures in `fixtures/recorded/` (written from each
//! vendor's documented request, response and stream formats), checked with snapshot
//! assertions in `fixtures/snapshots/`:
//! - the upstream request each adapter builds from one rich OpenAI request;
//! - what each provider's response and stream mean, in the canonical form;
//! - a stream translated to each client format.
//!
//! A changed output fails the test with both versions; `UPDATE_SNAPSHOTS=1` rewrites them
//! (review the diff before committing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::PathBuf;

use serde_json::{Value, json};
use sluice_providers::chat::{ChatResponse, Delta, Part};
use sluice_providers::eventstream::{StreamParser, encode};
use sluice_providers::translate::{Source, Translating, Wire};
use sluice_providers::{StreamTranslator, anthropic, bedrock, gemini, openai_chat};

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn recorded(name: &str) -> Vec<u8> {
    std::fs::read(dir("recorded").join(name)).unwrap()
}

fn snapshot(name: &str, actual: &Value) {
    let path = dir("snapshots").join(format!("{name}.json"));
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {} — run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        &expected, actual,
        "snapshot {name} changed:\n--- stored\n{stored}\n--- now\n{pretty}"
    );
}

/// The canonical answer as plain JSON, for snapshots.
fn describe(r: &ChatResponse) -> Value {
    let content: Vec<Value> = r
        .content
        .iter()
        .map(|p| match p {
            Part::Text(t) => json!({"text": t}),
            Part::ToolUse { id, name, input } => json!({"tool_use": {"id": id, "name": name, "input": input}}),
            other => json!({"other": format!("{other:?}")}),
        })
        .collect();
    json!({
        "id": r.id, "model": r.model, "content": content,
        "stop_reason": r.stop_reason.map(|s| format!("{s:?}")),
        "usage": serde_json::to_value(r.usage).unwrap(),
    })
}

fn rich_request() -> Vec<u8> {
    json!({
        "model": "alias",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 12}"},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "max_tokens": 256, "temperature": 0.3, "top_p": 0.9, "stop": ["###"], "stream": true,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "auto", "user": "user-42"
    })
    .to_string()
    .into_bytes()
}

#[test]
fn upstream_requests_built_from_one_openai_request() {
    let chat = openai_chat::request_to_chat(&rich_request()).unwrap();
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
    snapshot(
        "request.anthropic",
        &parse(&anthropic::chat_to_request(&chat, "claude-x")),
    );
    snapshot("request.gemini", &parse(&gemini::chat_to_request(&chat).unwrap()));
    snapshot("request.bedrock", &parse(&bedrock::chat_to_request(&chat).unwrap()));
    // And the other way: the Anthropic request that results, read back and sent to OpenAI.
    let back = anthropic::request_to_chat(&anthropic::chat_to_request(&chat, "claude-x")).unwrap();
    snapshot(
        "request.openai_from_anthropic",
        &parse(&openai_chat::chat_to_request(&back, "gpt-x")),
    );
}

#[test]
fn provider_responses_in_canonical_form() {
    snapshot(
        "response.anthropic",
        &describe(&anthropic::response_to_chat(&recorded("anthropic.response.json")).unwrap()),
    );
    snapshot(
        "response.openai",
        &describe(&openai_chat::response_to_chat(&recorded("openai.response.json")).unwrap()),
    );
    snapshot(
        "response.gemini",
        &describe(&gemini::response_to_chat(&recorded("gemini.response.json")).unwrap()),
    );
    snapshot(
        "response.bedrock",
        &describe(&bedrock::response_to_chat(&recorded("bedrock.converse.json"), "anthropic.claude-x").unwrap()),
    );
}

fn bedrock_stream() -> Vec<u8> {
    let events: Vec<(String, Value)> = serde_json::from_slice(&recorded("bedrock.stream.json")).unwrap();
    events
        .iter()
        .flat_map(|(kind, payload)| {
            encode(
                &[
                    (":event-type", kind),
                    (":content-type", "application/json"),
                    (":message-type", "event"),
                ],
                payload.to_string().as_bytes(),
            )
            .to_vec()
        })
        .collect()
}

/// Runs a recorded stream through a translator to `client`; returns the client's bytes.
fn run(
    source: Source,
    framing: sluice_providers::eventstream::Framing,
    bytes: &[u8],
    client: Wire,
) -> (String, Translating) {
    let mut t = Translating::new(source, client, true);
    let mut p = StreamParser::new(framing);
    p.push(bytes);
    p.end_of_input();
    let mut out = Vec::new();
    while let Some(e) = p.next_event() {
        t.on_event(e.unwrap(), &mut out).unwrap();
    }
    assert!(t.saw_end(), "{source:?} stream did not end");
    (String::from_utf8(out.concat()).unwrap(), t)
}

fn fold_openai(text: &str) -> ChatResponse {
    let mut p = sluice_providers::sse::SseParser::new();
    p.push(text.as_bytes());
    p.end_of_input();
    let mut d = openai_chat::ChunkDecoder::default();
    let mut deltas: Vec<Delta> = Vec::new();
    while let Some(e) = p.next_event() {
        d.decode(&e, &mut deltas).unwrap();
    }
    ChatResponse::from_deltas(&deltas)
}

#[test]
fn provider_streams_translated_for_each_client() {
    use sluice_providers::eventstream::Framing;
    let streams = [
        (
            "anthropic",
            Source::Anthropic,
            Framing::Sse,
            recorded("anthropic.stream.sse"),
        ),
        ("openai", Source::OpenAi, Framing::Sse, recorded("openai.stream.sse")),
        ("gemini", Source::Gemini, Framing::Sse, recorded("gemini.stream.sse")),
        ("bedrock", Source::Bedrock, Framing::EventStream, bedrock_stream()),
    ];
    for (name, source, framing, bytes) in streams {
        // To an OpenAI client: the folded answer.
        let (openai, t) = run(source, framing, &bytes, Wire::OpenAi);
        let mut folded = describe(&fold_openai(&openai));
        folded["reported_usage"] = serde_json::to_value(t.reported_usage()).unwrap();
        folded["relayed_chunks"] = json!(t.relayed_chunks());
        snapshot(&format!("stream.{name}.to_openai"), &folded);
        // To Anthropic and Responses clients: the event sequence.
        for (client, wire) in [("anthropic", Wire::Anthropic), ("responses", Wire::Responses)] {
            let (text, _) = run(source, framing, &bytes, wire);
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| {
                    let mut v: Value = serde_json::from_str(d).unwrap();
                    // Timestamps are the gateway's clock.
                    strip(&mut v, "created_at");
                    v
                })
                .collect();
            snapshot(&format!("stream.{name}.to_{client}"), &Value::Array(events));
        }
    }
}

fn strip(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            m.remove(key);
            m.values_mut().for_each(|x| strip(x, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, key)),
        _ => {}
    }
}
