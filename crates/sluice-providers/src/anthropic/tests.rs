use http::StatusCode;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::adapter::{ProviderAdapter, StreamTranslator};
use crate::chat::{ChatResponse, Delta};
use crate::error::ErrorClass;
use crate::openai_chat;
use crate::sse::SseParser;
use crate::translate::{ParamPolicy, Source, Translating, Wire};

/// An OpenAI request using everything both formats can express.
fn rich_openai_request() -> Value {
    json!({
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "user", "content": "Thanks"}
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
        "user": "u-42"
    })
}

#[test]
fn openai_request_becomes_the_anthropic_request() {
    let chat = openai_chat::request_to_chat(rich_openai_request().to_string().as_bytes()).unwrap();
    assert!(chat.extra.is_empty(), "{:?}", chat.extra);
    let body: Value = serde_json::from_slice(&chat_to_request(&chat, "claude-x")).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-x",
            "max_tokens": 100,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "stream": true,
            "tools": [{"name": "weather", "description": "Weather",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "u-42"}
        })
    );
}

#[test]
fn openai_to_anthropic_to_openai_keeps_the_conversation() {
    let first = openai_chat::request_to_chat(rich_openai_request().to_string().as_bytes()).unwrap();
    let anthropic = chat_to_request(&first, "gpt-x");
    let back = request_to_chat(&anthropic).unwrap();
    let openai = openai_chat::chat_to_request(&back, "gpt-x");
    let again = openai_chat::request_to_chat(&openai).unwrap();
    assert_eq!(again.messages, first.messages);
    assert_eq!(again.system, first.system);
    assert_eq!(again.tools, first.tools);
    assert_eq!(again.tool_choice, first.tool_choice);
    assert_eq!(again.stop, first.stop);
    assert_eq!(again.max_tokens, first.max_tokens);
    assert_eq!(again.user, first.user);
}

#[test]
fn what_anthropic_cannot_express_is_refused_or_dropped_never_lost() {
    let mut req = rich_openai_request();
    req["n"] = json!(2);
    req["logprobs"] = json!(true);
    req["n_ok"] = json!(null);
    let mut chat = openai_chat::request_to_chat(req.to_string().as_bytes()).unwrap();
    let err = ParamPolicy::default().apply(&mut chat.clone()).unwrap_err();
    assert_eq!(err.code(), "unsupported_parameter");
    assert!(
        err.to_string().contains("'n'") || err.to_string().contains("'logprobs'"),
        "{err}"
    );
    // Dropped only when the route says so; forwarded ones survive.
    let forward = ["logprobs".to_owned()];
    ParamPolicy {
        drop_unsupported: true,
        forward: &forward,
    }
    .apply(&mut chat)
    .unwrap();
    assert_eq!(chat.extra, vec![("logprobs".to_owned(), json!(true))]);
    // Defaults that ask for nothing are not "unsupported".
    let mut plain = rich_openai_request();
    plain["n"] = json!(1);
    plain["presence_penalty"] = json!(0);
    let chat = openai_chat::request_to_chat(plain.to_string().as_bytes()).unwrap();
    assert!(chat.extra.is_empty());
}

#[test]
fn anthropic_response_with_cache_usage_becomes_openai() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Hi"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7}
    });
    let chat = response_to_chat(body.to_string().as_bytes()).unwrap();
    assert_eq!(chat.usage.prompt_tokens, 20);
    assert_eq!(chat.usage.cached_tokens, 7);
    assert_eq!(chat.usage.cache_write_tokens, 3);
    let out: Value = serde_json::from_slice(&openai_chat::chat_to_response(&chat)).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "Hi");
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(out["usage"]["prompt_tokens"], 20);
    assert_eq!(out["usage"]["completion_tokens"], 5);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 7);
    // And back: Anthropic's input_tokens excludes the cache again.
    let anthropic: Value = serde_json::from_slice(&chat_to_response(&chat)).unwrap();
    assert_eq!(anthropic["usage"]["input_tokens"], 10);
    assert_eq!(anthropic["stop_reason"], "tool_use");
}

#[test]
fn errors_are_classified() {
    let cases = [
        (529, "overloaded_error", "Overloaded", ErrorClass::Overloaded),
        (429, "rate_limit_error", "", ErrorClass::RateLimited),
        (401, "authentication_error", "", ErrorClass::Auth),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 300000 tokens",
            ErrorClass::ContextLength,
        ),
        (
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            ErrorClass::InvalidRequest,
        ),
        (500, "api_error", "", ErrorClass::Server),
        (200, "overloaded_error", "", ErrorClass::Overloaded),
    ];
    for (status, kind, msg, class) in cases {
        assert_eq!(classify(status, kind, msg), class, "{status} {kind}");
    }
    let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded sk-ant-secret"}});
    let a = AnthropicAdapter;
    assert_eq!(
        a.classify_error(StatusCode::from_u16(529).unwrap(), body.to_string().as_bytes()),
        ErrorClass::Overloaded
    );
    let msg = a
        .error_message(body.to_string().as_bytes(), &["sk-ant-secret"])
        .unwrap();
    assert!(!msg.contains("sk-ant-secret"), "{msg}");
}

/// A recorded Anthropic stream: text, then a tool call, with cache usage.
const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":4,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Oslo\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn translate(upstream: Source, client: Wire, bytes: &[u8], splits: &[usize]) -> (Vec<u8>, Translating) {
    let mut t = Translating::new(upstream, client, true);
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let mut frames = Vec::new();
    let mut at = 0;
    for &s in splits.iter().chain(std::iter::once(&bytes.len())) {
        let s = s.clamp(at, bytes.len());
        p.push(&bytes[at..s]);
        at = s;
        while let Some(e) = p.next_event() {
            t.on_event(e, &mut frames).unwrap();
        }
    }
    p.end_of_input();
    while let Some(e) = p.next_event() {
        t.on_event(e, &mut frames).unwrap();
    }
    for f in frames {
        out.extend_from_slice(&f);
    }
    (out, t)
}

/// Decodes a whole stream in `wire` into the deltas it carries.
fn deltas(wire: Wire, bytes: &[u8]) -> Vec<Delta> {
    let mut p = SseParser::new();
    p.push(bytes);
    p.end_of_input();
    let mut out = Vec::new();
    let mut a = EventDecoder::default();
    let mut o = openai_chat::ChunkDecoder::default();
    while let Some(e) = p.next_event() {
        match wire {
            Wire::Anthropic => a.decode(&e, &mut out).unwrap(),
            _ => o.decode(&e, &mut out).unwrap(),
        }
    }
    out
}

#[test]
fn anthropic_stream_becomes_openai_chunks() {
    let (out, t) = translate(Source::Anthropic, Wire::OpenAi, ANTHROPIC_STREAM.as_bytes(), &[]);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains(r#""tool_calls":[{"function":{"arguments":"","name":"weather"},"id":"toolu_1","index":0,"type":"function"}]"#), "{text}");
    assert!(text.contains(r#""finish_reason":"tool_calls""#));
    let u = t.reported_usage().unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_tokens), (16, 20, 4));
    assert!(t.saw_end());
    // The client folds it into the same answer the non-streamed translation gives.
    let folded = ChatResponse::from_deltas(&deltas(Wire::OpenAi, &out));
    let direct = ChatResponse::from_deltas(&deltas(Wire::Anthropic, ANTHROPIC_STREAM.as_bytes()));
    assert_eq!(folded.content, direct.content);
    assert_eq!(folded.stop_reason, direct.stop_reason);
    assert_eq!(folded.usage, direct.usage);
}

#[test]
fn openai_stream_becomes_anthropic_events() {
    // First make an OpenAI stream of the same answer, then translate that to Anthropic.
    let (openai, _) = translate(Source::Anthropic, Wire::OpenAi, ANTHROPIC_STREAM.as_bytes(), &[]);
    let (anthropic, t) = translate(Source::OpenAi, Wire::Anthropic, &openai, &[]);
    let text = String::from_utf8(anthropic.clone()).unwrap();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(t.saw_end());
    let back = ChatResponse::from_deltas(&deltas(Wire::Anthropic, &anthropic));
    let original = ChatResponse::from_deltas(&deltas(Wire::Anthropic, ANTHROPIC_STREAM.as_bytes()));
    assert_eq!(back.content, original.content);
    assert_eq!(back.stop_reason, original.stop_reason);
    assert_eq!(back.usage.completion_tokens, 20);
    assert_eq!(back.usage.prompt_tokens, 16);
}

#[test]
fn an_overloaded_event_inside_a_200_stream_reaches_an_openai_client_as_an_error() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let mut t = Translating::new(Source::Anthropic, Wire::OpenAi, false);
    let mut p = SseParser::new();
    p.push(stream.as_bytes());
    let mut out = Vec::new();
    let mut fault = None;
    while let Some(e) = p.next_event() {
        if let Err(f) = t.on_event(e, &mut out) {
            fault = Some(f);
        }
    }
    let fault = fault.unwrap();
    assert_eq!(fault.code(), "upstream_overloaded");
    let last = String::from_utf8(out.last().unwrap().to_vec()).unwrap();
    assert!(
        last.contains(r#""code":"upstream_overloaded""#) && last.contains("Overloaded"),
        "{last}"
    );
}

proptest! {
    /// However the upstream's bytes are split, the translated stream is the same.
    #[test]
    fn translation_does_not_depend_on_how_bytes_arrive(splits in proptest::collection::vec(0usize..ANTHROPIC_STREAM.len(), 0..12)) {
        let mut splits = splits;
        splits.sort_unstable();
        let (whole, _) = translate(Source::Anthropic, Wire::OpenAi, ANTHROPIC_STREAM.as_bytes(), &[]);
        let (split, _) = translate(Source::Anthropic, Wire::OpenAi, ANTHROPIC_STREAM.as_bytes(), &splits);
        // Chunk ids and timestamps are the same within one second; compare the deltas.
        prop_assert_eq!(deltas(Wire::OpenAi, &whole), deltas(Wire::OpenAi, &split));
    }

    /// Arbitrary bytes never panic the Anthropic codec.
    #[test]
    fn anthropic_codec_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = request_to_chat(&bytes);
        let _ = response_to_chat(&bytes);
        let mut p = SseParser::new();
        p.push(&bytes);
        p.end_of_input();
        let mut d = EventDecoder::default();
        let mut out = Vec::new();
        while let Some(e) = p.next_event() {
            let _ = d.decode(&e, &mut out);
        }
    }
}
