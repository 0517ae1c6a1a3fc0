//! Response stages over live answers: the `debug_rewrite` test stage holds back a window of
//! text and rewrites a word, on a stream driven chunk by chunk, on a paced stream, on a whole
//! answer and through the Anthropic front door.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use serde_json::{Value, json};
use sluice_testkit::*;

const HOLD: usize = 20;

fn rewrite_route(from: &str, to: &str) -> String {
    format!(
        "  - name: rewrite\n    match: {{ models: [chat] }}\n    forward_params: [mock]\n    debug_rewrite: {{ hold_chars: {HOLD}, replace: {{ from: \"{from}\", to: \"{to}\" }} }}\n"
    )
}

/// The text a client has from complete SSE events in `buf` (OpenAI chat chunks), and whether
/// the stream said `[DONE]`.
fn content_of(buf: &str) -> (String, bool) {
    let complete = buf.rfind("\n\n").map_or("", |end| &buf[..end + 2]);
    let mut text = String::new();
    let mut done = false;
    for data in sse_data(complete) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert!(v.get("error").is_none(), "the stream failed: {data}");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    (text, done)
}

#[tokio::test]
async fn a_held_window_releases_each_character_only_once_twenty_more_have_arrived() {
    let mut up = ScriptedUpstream::start().await;
    let gw = TestGateway::start(&config_for(&up.base_url(), &rewrite_route("secret", "XXXXXX"))).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let resp = gw.stream(KEY, &body).await;
    assert_eq!(resp.status(), 200);
    let mut client = resp.into_body();
    let s = up.next_stream().await;

    // 200 chunks; the word to rewrite is split across two of them.
    let pieces: Vec<String> = (0..200)
        .map(|i| match i {
            100 => "sec".to_owned(),
            101 => "ret ".to_owned(),
            _ => format!("w{i:03} "),
        })
        .collect();
    let mut buf = String::new();
    let mut sent = 0usize;
    for piece in &pieces {
        s.send(&chunk(piece)).await;
        sent += piece.chars().count();
        // A correct stage releases all but the window at once (a match across the release
        // point waits whole, up to five characters more): wait for that much, then check
        // nothing past the window came out.
        let due = sent.saturating_sub(HOLD + "secret".len() - 1);
        loop {
            let (text, _) = content_of(&buf);
            if text.chars().count() >= due {
                break;
            }
            let frame = next_frame(&mut client, Duration::from_secs(10))
                .await
                .expect("the stream goes on");
            buf.push_str(&String::from_utf8_lossy(&frame));
        }
        let (text, _) = content_of(&buf);
        assert!(
            text.chars().count() <= sent.saturating_sub(HOLD),
            "after {sent} characters upstream the client already has {}: {text:?}",
            text.chars().count()
        );
        assert!(!text.contains("secret"), "{text:?}");
    }
    s.send("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
        .await;
    s.send("data: [DONE]\n\n").await;
    drop(s);
    buf.push_str(&read_all(client).await);
    let (text, done) = content_of(&buf);
    assert!(done, "{buf}");
    let original: String = pieces.concat();
    assert_eq!(text, original.replace("secret", "XXXXXX"), "everything else, in order");
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["error_class"].is_null(), "{line}");
}

#[tokio::test]
async fn the_rewrite_gives_one_text_on_a_paced_stream_a_whole_answer_and_the_anthropic_door() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with_routes(&mock, &rewrite_route("gateway", "GATEWAY"))).await;
    let ask = |model: &str, stream: bool| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
               "mock": {"chunks": 200, "chunk_delay_ms": 1}})
    };

    // Untouched (alias `other` takes the default route): the mock's own words.
    let plain = gw.chat(KEY, &ask("other", false)).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let original = plain.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(original.contains("gateway"), "the word is there to rewrite: {original}");
    let expected = original.replace("gateway", "GATEWAY");

    let whole = gw.chat(KEY, &ask("chat", false)).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let v = whole.json();
    assert_eq!(v["choices"][0]["message"]["content"], expected.as_str());
    assert_eq!(v["object"], "chat.completion");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");

    let streamed = read_all(gw.stream(KEY, &ask("chat", true)).await.into_body()).await;
    let (text, done) = content_of(&streamed);
    assert!(done, "{streamed}");
    assert_eq!(text, expected, "the paced stream gives the same text");

    // The Anthropic front door: its own event sequence, the same text.
    let messages = json!({"model": "chat", "max_tokens": 300, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}],
                          "mock": {"chunks": 200, "chunk_delay_ms": 1}});
    let r = gw.post("/v1/messages", KEY, &messages).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut text = String::new();
    let mut kinds = Vec::new();
    for data in sse_data(&r.text()) {
        let v: Value = serde_json::from_str(&data).unwrap();
        kinds.push(v["type"].as_str().unwrap_or_default().to_owned());
        if let Some(t) = v["delta"]["text"].as_str() {
            text.push_str(t);
        }
    }
    assert_eq!(text, expected);
    assert_eq!(kinds.first().map(String::as_str), Some("message_start"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("message_stop"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "content_block_start").count(),
        1,
        "one text block: {kinds:?}"
    );
}

#[tokio::test]
async fn a_window_shorter_than_the_word_is_refused_at_load() {
    let yaml = config_for(
        "http://127.0.0.1:9/v1",
        "  - name: rewrite\n    debug_rewrite: { hold_chars: 3, replace: { from: secret, to: x } }\n",
    );
    let err = sluice_config::load_str(&yaml, &|_| Some("k".to_owned())).expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("routes[0].debug_rewrite"), "{text}");
    assert!(text.contains("hold_chars must be at least"), "{text}");
}
