//! Properties of translation over generated conversations and answers:
//! - OpenAI → Anthropic → OpenAI keeps everything both formats can express;
//! - a streamed answer, translated event by event however its bytes are split, folds into the
//!   same message as the non-streamed translation of the same answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_providers::anthropic;
use sluice_providers::chat::{
    ChatRequest, ChatResponse, Delta, Image, Message, Part, Role, StopReason, Tool, ToolChoice,
};
use sluice_providers::openai_chat;
use sluice_providers::sse::SseParser;
use sluice_providers::translate::{Source, Translating, Wire};
use sluice_providers::{StreamTranslator, Usage};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?éü\u{1F600}\"\\\\{}]{1,24}"
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z_]{0,10}"
}

fn args() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        ident(),
        prop_oneof![
            text().prop_map(Value::from),
            (0i64..1000).prop_map(Value::from),
            any::<bool>().prop_map(Value::from)
        ],
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn image() -> impl Strategy<Value = Part> {
    "[A-Za-z0-9+/]{4,16}".prop_map(|d| {
        Part::Image(Image::Base64 {
            media_type: "image/png".into(),
            data: format!("{d}=="),
        })
    })
}

/// One exchange: a user turn, then an assistant turn (text and/or tool calls), then — if
/// tools were called — a user turn with their results.
fn exchange(n: usize) -> impl Strategy<Value = Vec<Message>> {
    (
        proptest::collection::vec(prop_oneof![3 => text().prop_map(Part::Text), 1 => image()], 1..3),
        proptest::option::of(text()),
        proptest::collection::vec((ident(), args()), 0..3),
        proptest::collection::vec(text(), 0..2),
    )
        .prop_map(move |(user, said, calls, results)| {
            let mut out = vec![Message {
                role: Role::User,
                content: user,
            }];
            let mut assistant: Vec<Part> = said.map(Part::Text).into_iter().collect();
            for (i, (name, input)) in calls.iter().enumerate() {
                assistant.push(Part::ToolUse {
                    id: format!("call_{n}_{i}"),
                    name: name.clone(),
                    input: input.clone(),
                });
            }
            if assistant.is_empty() {
                assistant.push(Part::Text("ok".into()));
            }
            out.push(Message {
                role: Role::Assistant,
                content: assistant,
            });
            if !calls.is_empty() {
                let mut back: Vec<Part> = (0..calls.len())
                    .map(|i| Part::ToolResult {
                        tool_use_id: format!("call_{n}_{i}"),
                        content: vec![Part::Text(results.first().cloned().unwrap_or_else(|| "done".into()))],
                        is_error: false,
                    })
                    .collect();
                if let Some(t) = results.get(1) {
                    back.push(Part::Text(t.clone()));
                }
                out.push(Message {
                    role: Role::User,
                    content: back,
                });
            }
            out
        })
}

fn request() -> impl Strategy<Value = ChatRequest> {
    (
        proptest::collection::vec(text(), 0..2),
        exchange(0),
        exchange(1),
        proptest::collection::vec((ident(), proptest::option::of(text())), 0..3),
        (
            proptest::option::of(1u64..4096),
            proptest::option::of(0u8..=10),
            proptest::option::of(0u8..=10),
        ),
        proptest::collection::vec(text(), 0..3),
        (any::<bool>(), proptest::option::of(text()), 0u8..4, any::<bool>()),
    )
        .prop_map(
            |(system, a, b, tools, (max_tokens, temp, top_p), stop, (stream, user, choice, no_parallel))| {
                let mut messages = a;
                messages.extend(b);
                messages.push(Message {
                    role: Role::User,
                    content: vec![Part::Text("next?".into())],
                });
                let tools: Vec<Tool> = tools
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, description))| Tool {
                        name: format!("{name}{i}"),
                        description,
                        parameters: json!({"type": "object", "properties": {"x": {"type": "string"}}}),
                    })
                    .collect();
                let tool_choice = (!tools.is_empty()).then(|| match choice {
                    0 => ToolChoice::Auto,
                    1 => ToolChoice::None,
                    2 => ToolChoice::Required,
                    _ => ToolChoice::Tool(tools[0].name.clone()),
                });
                ChatRequest {
                    model: "m".into(),
                    system,
                    messages,
                    max_tokens,
                    temperature: temp.map(|t| f64::from(t) / 10.0),
                    top_p: top_p.map(|t| f64::from(t) / 10.0),
                    stop,
                    stream,
                    parallel_tool_calls: (no_parallel && !tools.is_empty()).then_some(false),
                    tools,
                    tool_choice,
                    user,
                    ..ChatRequest::default()
                }
            },
        )
}

fn response() -> impl Strategy<Value = ChatResponse> {
    (
        proptest::option::of(text()),
        proptest::collection::vec((ident(), args()), 0..3),
        (0u64..5000, 0u64..5000, 0u64..100, 0u64..100),
    )
        .prop_map(|(said, calls, (p, c, cached, write))| {
            let mut content: Vec<Part> = said.map(Part::Text).into_iter().collect();
            for (i, (name, input)) in calls.iter().enumerate() {
                content.push(Part::ToolUse {
                    id: format!("toolu_{i}"),
                    name: name.clone(),
                    input: input.clone(),
                });
            }
            let prompt = p + cached + write;
            ChatResponse {
                id: "msg_1".into(),
                model: "m".into(),
                stop_reason: Some(if calls.is_empty() {
                    StopReason::EndTurn
                } else {
                    StopReason::ToolUse
                }),
                content,
                stop_sequence: None,
                usage: Usage {
                    prompt_tokens: prompt,
                    completion_tokens: c,
                    total_tokens: prompt + c,
                    cached_tokens: cached,
                    cache_write_tokens: write,
                    reasoning_tokens: 0,
                },
            }
        })
}

/// Feeds `bytes` split at `splits` through a translator; returns what the client received.
fn translate(t: &mut Translating, bytes: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut p = SseParser::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for s in cuts.into_iter().chain(std::iter::once(bytes.len())) {
        let s = s.max(at);
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
    frames.concat()
}

fn openai_deltas(bytes: &[u8]) -> Vec<Delta> {
    let mut p = SseParser::new();
    p.push(bytes);
    p.end_of_input();
    let mut d = openai_chat::ChunkDecoder::default();
    let mut out = Vec::new();
    while let Some(e) = p.next_event() {
        d.decode(&e, &mut out).unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn openai_to_anthropic_to_openai_keeps_the_conversation(req in request()) {
        let first = openai_chat::request_to_chat(&openai_chat::chat_to_request(&req, "m")).unwrap();
        prop_assert!(first.extra.is_empty(), "{:?}", first.extra);
        let via = anthropic::request_to_chat(&anthropic::chat_to_request(&first, "m")).unwrap();
        prop_assert!(via.extra.is_empty(), "{:?}", via.extra);
        let back = openai_chat::request_to_chat(&openai_chat::chat_to_request(&via, "m")).unwrap();
        prop_assert_eq!(&back.messages, &first.messages);
        prop_assert_eq!(&back.system, &first.system);
        prop_assert_eq!(&back.tools, &first.tools);
        prop_assert_eq!(&back.tool_choice, &first.tool_choice);
        prop_assert_eq!(&back.stop, &first.stop);
        prop_assert_eq!(back.max_tokens.or(Some(anthropic::DEFAULT_MAX_TOKENS)), first.max_tokens.or(Some(anthropic::DEFAULT_MAX_TOKENS)));
        prop_assert_eq!(back.temperature, first.temperature);
        prop_assert_eq!(back.top_p, first.top_p);
        prop_assert_eq!(back.stream, first.stream);
        prop_assert_eq!(&back.user, &first.user);
        prop_assert_eq!(back.parallel_tool_calls, first.parallel_tool_calls);
    }

    #[test]
    fn a_streamed_answer_folds_into_the_non_streamed_translation(
        answer in response(),
        piece in 1usize..12,
        splits in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        // Non-streamed: Anthropic's JSON → the OpenAI client's JSON → read back.
        let whole = anthropic::response_to_chat(&anthropic::chat_to_response(&answer)).unwrap();
        let whole = openai_chat::response_to_chat(&openai_chat::chat_to_response(&whole)).unwrap();
        // Streamed: the same answer as Anthropic events, bytes split anywhere, translated.
        let mut encoder = anthropic::EventEncoder::default();
        let mut upstream = Vec::new();
        for d in answer.to_deltas(piece) {
            encoder.encode(&d, &mut upstream);
        }
        let upstream = upstream.concat();
        let mut t = Translating::new(Source::Anthropic, Wire::OpenAi, true);
        let client = translate(&mut t, &upstream, &splits);
        prop_assert!(t.saw_end());
        let folded = ChatResponse::from_deltas(&openai_deltas(&client));
        prop_assert_eq!(&folded.content, &whole.content);
        prop_assert_eq!(folded.stop_reason, whole.stop_reason);
        prop_assert_eq!(folded.usage, whole.usage);
        prop_assert_eq!(t.reported_usage(), Some(answer.usage));
    }
}
