//! Micro-benchmarks of the pass-through codec: the envelope check, the in-place rewrite, and the
//! SSE relay (framing + translation) of a 50-chunk stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_providers::openai::{OpenAiAdapter, RequestView};
use sluice_providers::sse::SseParser;
use sluice_providers::translate::Translating;
use sluice_providers::{Endpoint, InboundRequest, ProviderAdapter, Source, StreamTranslator, Wire};

fn body(size: usize) -> Vec<u8> {
    let pad = "lorem ipsum ".repeat(size / 12);
    serde_json::json!({"model": "chat", "stream": true, "temperature": 0.2,
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": pad}]})
    .to_string()
    .into_bytes()
}

fn stream(chunks: usize) -> Vec<u8> {
    let mut s = String::new();
    s.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n");
    for i in 0..chunks {
        s.push_str(&format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"));
    }
    s.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":50,\"total_tokens\":59}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    for size in [1024usize, 32 * 1024] {
        let b = body(size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", size), &b, |bench, b| {
            bench.iter(|| RequestView::parse(Endpoint::ChatCompletions, b).unwrap())
        });
        let view = RequestView::parse(Endpoint::ChatCompletions, &b).unwrap();
        g.bench_with_input(BenchmarkId::new("rewrite", size), &b, |bench, b| {
            bench.iter(|| view.upstream_body(b, "upstream-model"))
        });
    }
    g.finish();
}

fn relay(c: &mut Criterion) {
    let bytes = stream(50);
    let req = InboundRequest::parse(Endpoint::ChatCompletions, Bytes::from(body(256))).unwrap();
    let mut g = c.benchmark_group("sse_relay");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    for split in [64usize, 1500] {
        g.bench_with_input(BenchmarkId::new("50_chunks_split", split), &bytes, |bench, bytes| {
            bench.iter(|| {
                let mut parser = SseParser::new();
                let mut t = OpenAiAdapter.stream_translator(&req);
                let mut out = Vec::with_capacity(4);
                let mut n = 0usize;
                for piece in bytes.chunks(split) {
                    parser.push(piece);
                    while let Some(ev) = parser.next_event() {
                        t.on_event(ev, &mut out).unwrap();
                        n += out.len();
                        out.clear();
                    }
                }
                assert!(t.saw_end());
                n
            })
        });
    }
    g.finish();
}

/// The cost of translation next to pass-through: an OpenAI request to Anthropic's format, and a
/// 50-chunk OpenAI stream re-encoded as Anthropic events.
fn translation(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    let b = body(1024);
    g.bench_function("request_openai_to_anthropic_1024", |bench| {
        bench.iter(|| {
            let chat = sluice_providers::openai_chat::request_to_chat(&b).unwrap();
            sluice_providers::anthropic::chat_to_request(&chat, "claude")
        })
    });
    let bytes = stream(50);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("stream_openai_to_anthropic_50_chunks", |bench| {
        bench.iter(|| {
            let mut parser = SseParser::new();
            let mut t = Translating::new(Source::OpenAi, Wire::Anthropic, false);
            let mut out = Vec::with_capacity(4);
            let mut n = 0usize;
            for piece in bytes.chunks(1500) {
                parser.push(piece);
                while let Some(ev) = parser.next_event() {
                    t.on_event(ev, &mut out).unwrap();
                    n += out.len();
                    out.clear();
                }
            }
            assert!(t.saw_end());
            n
        })
    });
    g.finish();
}

/// A whole OpenAI answer passed through: what reading it costs (its usage and its choices'
/// finish reasons, the rest skipped), next to reading its usage alone — the difference is what
/// reporting `finish_reason` added.
fn whole_answer(c: &mut Criterion) {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // read, as the adapter reads it
    struct Usage {
        #[serde(default)]
        prompt_tokens: u64,
        #[serde(default)]
        completion_tokens: u64,
        #[serde(default)]
        total_tokens: u64,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // read, as the adapter reads it
    struct UsageOnly {
        #[serde(default)]
        usage: Option<Usage>,
    }
    let req = InboundRequest::parse(Endpoint::ChatCompletions, Bytes::from(body(256))).unwrap();
    let mut g = c.benchmark_group("whole_answer");
    for size in [1024usize, 32 * 1024] {
        let text = "lorem ipsum ".repeat(size / 12);
        let answer = Bytes::from(
            serde_json::json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 50, "total_tokens": 59}})
            .to_string(),
        );
        g.throughput(Throughput::Bytes(answer.len() as u64));
        g.bench_with_input(BenchmarkId::new("read_response", size), &answer, |bench, a| {
            bench.iter(|| OpenAiAdapter.read_response(&req, a.clone()).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("usage_only", size), &answer, |bench, a| {
            bench.iter(|| serde_json::from_slice::<UsageOnly>(a).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, envelope, relay, translation, whole_answer);
criterion_main!(benches);
