use http::Uri;

use super::*;
use crate::error::RequestError;

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

fn view(endpoint: Endpoint, body: &str) -> Result<RequestView, RequestError> {
    RequestView::parse(endpoint, body.as_bytes())
}

#[test]
fn request_errors() {
    let chat = Endpoint::ChatCompletions;
    let cases: &[(Endpoint, &str, &str)] = &[
        (chat, "", "invalid_json"),
        (chat, "{\"model\": ", "invalid_json"),
        (chat, "[1,2]", "invalid_json"),
        (chat, "{\"messages\": [{}]}", "missing_required_parameter"),
        (chat, "{\"model\": 5, \"messages\": [{}]}", "invalid_type"),
        (chat, "{\"model\": \"\", \"messages\": [{}]}", "invalid_value"),
        (chat, "{\"model\": \"m\"}", "missing_required_parameter"),
        (chat, "{\"model\": \"m\", \"messages\": {}}", "invalid_type"),
        (chat, "{\"model\": \"m\", \"messages\": [ ]}", "invalid_value"),
        (
            chat,
            "{\"model\": \"m\", \"messages\": [{}], \"stream\": \"yes\"}",
            "invalid_type",
        ),
        (
            chat,
            "{\"model\": \"m\", \"messages\": [{}], \"stream_options\": 3}",
            "invalid_type",
        ),
        (
            chat,
            "{\"model\": \"m\", \"model\": \"n\", \"messages\": [{}]}",
            "invalid_json",
        ),
        (
            Endpoint::Completions,
            "{\"model\": \"m\"}",
            "missing_required_parameter",
        ),
        (Endpoint::Embeddings, "{\"model\": \"m\", \"input\": 4}", "invalid_type"),
        (
            Endpoint::Embeddings,
            "{\"model\": \"m\", \"input\": \"x\", \"stream\": true}",
            "invalid_value",
        ),
    ];
    for (endpoint, body, code) in cases {
        let err = view(*endpoint, body).expect_err(body);
        assert_eq!(err.code(), *code, "{body}: {err}");
    }
    assert_eq!(RequestView::parse(chat, b"[1]").unwrap_err(), RequestError::NotAnObject);
}

#[test]
fn pass_through_changes_only_model_and_stream_options() {
    let body = r#"{ "model" : "alias",  "messages":[{"role":"user","content":"hi \u00e9"}],
        "stream": true, "x_vendor": {"a": [1, 2.50, null]}, "temperature": 0.70 }"#;
    let v = view(Endpoint::ChatCompletions, body).unwrap();
    assert_eq!(v.model, "alias");
    assert!(v.stream && !v.include_usage);
    let out = v.upstream_body(body.as_bytes(), "real-model");
    let expected = body
        .replace(r#""model" : "alias""#, r#""model" : "real-model""#)
        .replace(r#"0.70 }"#, r#"0.70 ,"stream_options":{"include_usage":true}}"#);
    assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
}

#[test]
fn a_token_cap_is_spliced_into_the_bytes() {
    let check = |endpoint: Endpoint, body: &str, field: &str, expected: Option<&str>| {
        let v = view(endpoint, body).unwrap();
        let out = v.with_token_cap(body.as_bytes(), field, 64);
        assert_eq!(
            out.as_deref().map(|b| std::str::from_utf8(b).unwrap()),
            expected,
            "{body}"
        );
    };
    let chat = Endpoint::ChatCompletions;
    // Key order, spacing and number forms stay the client's; only the cap changes.
    check(
        chat,
        r#"{"model":"m", "zeta": 1.50, "messages":[1], "max_tokens" : 900 }"#,
        "max_tokens",
        Some(r#"{"model":"m", "zeta": 1.50, "messages":[1], "max_tokens" : 64 }"#),
    );
    check(
        chat,
        r#"{"model":"m","messages":[1],"max_completion_tokens":900,"max_tokens":10}"#,
        "max_tokens",
        Some(r#"{"model":"m","messages":[1],"max_completion_tokens":64,"max_tokens":10}"#),
    );
    check(
        chat,
        r#"{"model":"m","messages":[1],"max_tokens":null}"#,
        "max_tokens",
        Some(r#"{"model":"m","messages":[1],"max_tokens":64}"#),
    );
    check(
        chat,
        r#"{"model":"m","messages":[1],"max_tokens":64}"#,
        "max_tokens",
        None,
    );
    check(
        chat,
        "{\"model\":\"m\",\"messages\":[1]\n}\n",
        "max_tokens",
        Some("{\"model\":\"m\",\"messages\":[1],\"max_tokens\":64\n}\n"),
    );
    check(
        Endpoint::Responses,
        r#"{"model":"m","input":"x"}"#,
        "max_output_tokens",
        Some(r#"{"model":"m","input":"x","max_output_tokens":64}"#),
    );
}

#[test]
fn stream_options_are_merged_not_replaced() {
    let body = r#"{"model":"a","messages":[1],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
    let v = view(Endpoint::ChatCompletions, body).unwrap();
    let out = v.upstream_body(body.as_bytes(), "a");
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        json["stream_options"],
        serde_json::json!({"include_usage": true, "x": 1})
    );

    let asked = r#"{"model":"a","messages":[1],"stream":true,"stream_options":{"include_usage":true}}"#;
    let v = view(Endpoint::ChatCompletions, asked).unwrap();
    assert!(v.include_usage);
    assert_eq!(
        &v.upstream_body(asked.as_bytes(), "a")[..],
        asked.as_bytes(),
        "nothing to change"
    );
}

#[test]
fn model_with_escapes_is_replaced_and_metadata_read() {
    let body = r#"{"model":"a\"b","prompt":"x","metadata":{"task":"summarize","n":1}}"#;
    let v = view(Endpoint::Completions, body).unwrap();
    assert_eq!(v.model, "a\"b");
    assert_eq!(v.metadata, vec![("task".to_owned(), "summarize".to_owned())]);
    let out = v.upstream_body(body.as_bytes(), "up\"stream");
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        body.replace(r#""a\"b""#, r#""up\"stream""#)
    );
}

#[test]
fn classifies_errors() {
    let a = OpenAiAdapter;
    let ctx = br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    let quota = br#"{"error":{"message":"pay","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    let cases: &[(u16, &[u8], ErrorClass)] = &[
        (400, b"{}", ErrorClass::InvalidRequest),
        (400, ctx, ErrorClass::ContextLength),
        (401, b"", ErrorClass::Auth),
        (403, b"", ErrorClass::Auth),
        (404, b"", ErrorClass::NotFound),
        (429, b"", ErrorClass::RateLimited),
        (429, quota, ErrorClass::QuotaExceeded),
        (500, b"oops", ErrorClass::Server),
        (503, b"", ErrorClass::Overloaded),
    ];
    for (status, body, class) in cases {
        assert_eq!(
            a.classify_error(StatusCode::from_u16(*status).unwrap(), body),
            *class,
            "{status}"
        );
    }
    let msg = a.error_message(
        br#"{"error":{"message":"Incorrect API key provided: sk-abc123xyz"}}"#,
        &[],
    );
    assert_eq!(msg.as_deref(), Some("Incorrect API key provided: [redacted]"));
}

fn event(data: &str) -> SseEvent {
    let mut p = crate::sse::SseParser::new();
    p.push(format!("data: {data}\n\n").as_bytes());
    p.next_event().unwrap()
}

#[test]
fn stream_hides_the_usage_chunk_it_asked_for() {
    let req = InboundRequest::parse(
        Endpoint::ChatCompletions,
        Bytes::from_static(br#"{"model":"m","messages":[1],"stream":true}"#),
    )
    .unwrap();
    let mut t = OpenAiAdapter.stream_translator(&req);
    let mut out = Vec::new();
    t.on_event(
        event(r#"{"choices":[{"delta":{"content":"a"}}],"usage":null}"#),
        &mut out,
    )
    .unwrap();
    t.on_event(
        event(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#),
        &mut out,
    )
    .unwrap();
    t.on_event(event("[DONE]"), &mut out).unwrap();
    assert_eq!(out.len(), 2, "usage chunk hidden");
    assert_eq!(t.reported_usage().map(|u| u.total_tokens), Some(4));
    assert_eq!(t.relayed_chunks(), 1);
    assert!(t.saw_end());
    assert_eq!(t.on_event(event("{not json"), &mut out), Err(StreamFault::Malformed));
}

#[test]
fn reads_response_usage() {
    let a = OpenAiAdapter;
    let body =
        br#"{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":2}}}"#;
    let req = InboundRequest::parse(Endpoint::ChatCompletions, Bytes::from_static(CHAT)).unwrap();
    let u = a
        .read_response(&req, Bytes::copy_from_slice(body))
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens),
        (5, 7, 12, 2)
    );
    assert!(a.read_response(&req, Bytes::from_static(b"{\"id\": ")).is_err());
    assert!(a.read_response(&req, Bytes::from_static(b"[]")).is_err());
}

#[test]
fn joins_urls() {
    let cases = [
        ("http://h:1/v1", "http://h:1/v1/chat/completions"),
        ("http://h/v1/", "http://h/v1/chat/completions"),
        ("https://h", "https://h/chat/completions"),
    ];
    for (base, want) in cases {
        let uri: Uri = base.parse().unwrap();
        assert_eq!(join_url(&uri, "/chat/completions").unwrap().to_string(), want);
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// JSON-ish text: objects with the fields the envelope reads, in any type, plus noise.
    fn jsonish() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            Just("\"m\"".to_owned()),
            Just("[]".to_owned()),
            Just("[{}]".to_owned()),
            Just("{}".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            "-?[0-9]{1,4}".prop_map(|s| s),
            "\"[a-z\\\\\"]{0,6}\"".prop_map(|s| s),
        ];
        let key = prop_oneof![
            Just("model"),
            Just("messages"),
            Just("stream"),
            Just("stream_options"),
            Just("prompt"),
            Just("input"),
            Just("metadata"),
            Just("x")
        ];
        proptest::collection::vec((key, value), 0..6).prop_map(|fields| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        })
    }

    proptest! {
        #[test]
        fn envelope_parsing_never_panics_and_rewrites_stay_json(text in jsonish(), model in "[a-z\"\\\\]{1,8}") {
            for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings] {
                if let Ok(view) = RequestView::parse(endpoint, text.as_bytes()) {
                    let out = view.upstream_body(text.as_bytes(), &model);
                    let v: serde_json::Value = serde_json::from_slice(&out).expect("rewritten body is JSON");
                    prop_assert_eq!(v["model"].as_str(), Some(model.as_str()));
                    if view.stream {
                        prop_assert_eq!(&v["stream_options"]["include_usage"], &serde_json::Value::Bool(true));
                    }
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RequestView::parse(Endpoint::ChatCompletions, &bytes);
            let mut t = OpenAiAdapter.stream_translator(&InboundRequest {
                endpoint: Endpoint::ChatCompletions,
                body: Bytes::new(),
                view: RequestView::default(),
                headers: Default::default(),
            });
            let mut p = crate::sse::SseParser::new();
            p.push(&bytes);
            p.end_of_input();
            let mut out = Vec::new();
            while let Some(e) = p.next_event() {
                let _ = t.on_event(e, &mut out);
            }
            let req = InboundRequest::parse(Endpoint::ChatCompletions, Bytes::from_static(CHAT)).unwrap();
            let _ = OpenAiAdapter.read_response(&req, Bytes::from(bytes.clone()));
            let _ = OpenAiAdapter.classify_error(StatusCode::BAD_REQUEST, &bytes);
            let _ = OpenAiAdapter.error_message(&bytes, &["secret"]);
        }
    }
}

#[test]
fn finish_reasons_are_read_from_whole_answers_and_streams_in_any_format() {
    let a = OpenAiAdapter;
    let whole = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    // Native (OpenAI to OpenAI) and translated (an OpenAI upstream, an Anthropic client).
    let chat = InboundRequest::parse(Endpoint::ChatCompletions, Bytes::from_static(CHAT)).unwrap();
    let out = a.read_response(&chat, Bytes::copy_from_slice(whole)).unwrap();
    assert_eq!(out.finish_reason, Some("length"));
    let messages = InboundRequest::parse(
        Endpoint::Messages,
        Bytes::from_static(br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#),
    )
    .unwrap();
    let out = a.read_response(&messages, Bytes::copy_from_slice(whole)).unwrap();
    assert_eq!(
        out.finish_reason,
        Some("length"),
        "reported in OpenAI's words whatever the client"
    );
    let none = a
        .read_response(&chat, Bytes::from_static(br#"{"id":"x","choices":[]}"#))
        .unwrap();
    assert_eq!(none.finish_reason, None);

    let streamed = InboundRequest::parse(
        Endpoint::ChatCompletions,
        Bytes::from_static(br#"{"model":"m","messages":[1],"stream":true}"#),
    )
    .unwrap();
    for req in [&streamed, &messages] {
        let mut t = a.stream_translator(req);
        let mut out = Vec::new();
        let chunks = [
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"a"}}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ];
        assert_eq!(t.finish_reason(), None);
        for c in chunks {
            t.on_event(event(c), &mut out).unwrap();
        }
        assert_eq!(t.finish_reason(), Some("tool_calls"), "{:?}", req.endpoint);
    }
}
