//! The mock's knobs: defaults from the command line or config, overridden per request by a
//! `"mock": {...}` object in the request body (the gateway forwards unknown fields untouched).

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    /// Delay before the response headers.
    pub latency_ms: Option<u64>,
    /// Delay before the first streamed chunk (added to latency when not streaming).
    pub ttft_ms: Option<u64>,
    /// Delay between streamed chunks (and per token of generation when not streaming).
    pub chunk_delay_ms: Option<u64>,
    /// Number of content chunks (≈ completion tokens).
    pub chunks: Option<u64>,
    /// Answer with this text (OpenAI chat and completions), streamed five characters a chunk,
    /// instead of the mock's own words.
    pub reply: Option<String>,
    /// Answer with the request's system prompt (a model that leaks its instructions).
    pub echo_system: Option<bool>,
    /// Answer with this HTTP status and an OpenAI-shaped error body.
    pub status: Option<u16>,
    /// With a status: the `Retry-After` header, in seconds.
    pub retry_after_s: Option<u64>,
    /// Never answer (non-streaming), or stop sending after this many chunks (streaming).
    pub stall: Option<bool>,
    pub stall_after_chunks: Option<u64>,
    /// Drop the connection after this many chunks (streaming) or before answering.
    pub drop_after_chunks: Option<u64>,
    /// Send malformed JSON (a whole body, or one stream chunk).
    pub malformed: Option<bool>,
    /// Embedding dimensions.
    pub dimensions: Option<u64>,
    /// Embeddings as hashed bags of words: texts with the same words, in any order or case,
    /// get the same vector and texts sharing most words similar ones (a stand-in for an
    /// embedding model, for the semantic cache's tests).
    pub embed_words: Option<bool>,
    /// Streaming: send an error event (in the stream's format) instead of this content chunk,
    /// then end, as providers do when they run out of capacity mid-answer.
    pub error_after_chunks: Option<u64>,
    /// The error type of that event (Anthropic: `overloaded_error` by default).
    pub error_type: Option<String>,
    /// Prompt tokens to report as read from the prompt cache.
    pub cached_tokens: Option<u64>,
    /// Prompt tokens to report as written to the prompt cache (Anthropic).
    pub cache_write_tokens: Option<u64>,
    /// Gemini: block the `prompt` (promptFeedback) or the `answer` (a SAFETY finish).
    pub safety_block: Option<String>,
    /// Answer this share of requests (percent, at random) with `status` (default 500).
    pub fail_percent: Option<u8>,
    /// Requests `GET /metrics` reports as waiting (vLLM's `num_requests_waiting`), on top of
    /// those in flight.
    pub report_waiting: Option<u64>,
    /// A model server's slots: at most this many requests are answered at once, the rest wait
    /// (and count as waiting in `GET /metrics` and the `x-queue-depth` response header).
    /// Server-wide: only the mock's default counts.
    pub slots: Option<u64>,
}

impl Knobs {
    /// `self` with every unset knob taken from `defaults`.
    pub fn over(self, defaults: &Knobs) -> Knobs {
        Knobs {
            latency_ms: self.latency_ms.or(defaults.latency_ms),
            ttft_ms: self.ttft_ms.or(defaults.ttft_ms),
            chunk_delay_ms: self.chunk_delay_ms.or(defaults.chunk_delay_ms),
            chunks: self.chunks.or(defaults.chunks),
            reply: self.reply.or_else(|| defaults.reply.clone()),
            echo_system: self.echo_system.or(defaults.echo_system),
            status: self.status.or(defaults.status),
            retry_after_s: self.retry_after_s.or(defaults.retry_after_s),
            stall: self.stall.or(defaults.stall),
            stall_after_chunks: self.stall_after_chunks.or(defaults.stall_after_chunks),
            drop_after_chunks: self.drop_after_chunks.or(defaults.drop_after_chunks),
            malformed: self.malformed.or(defaults.malformed),
            dimensions: self.dimensions.or(defaults.dimensions),
            embed_words: self.embed_words.or(defaults.embed_words),
            error_after_chunks: self.error_after_chunks.or(defaults.error_after_chunks),
            error_type: self.error_type.or_else(|| defaults.error_type.clone()),
            cached_tokens: self.cached_tokens.or(defaults.cached_tokens),
            cache_write_tokens: self.cache_write_tokens.or(defaults.cache_write_tokens),
            safety_block: self.safety_block.or_else(|| defaults.safety_block.clone()),
            fail_percent: self.fail_percent.or(defaults.fail_percent),
            report_waiting: self.report_waiting.or(defaults.report_waiting),
            slots: defaults.slots,
        }
    }
    pub fn chunks(&self) -> u64 {
        self.chunks.unwrap_or(8).min(100_000)
    }
    /// The answer's text, whole.
    pub fn text(&self) -> String {
        match &self.reply {
            Some(r) => r.clone(),
            None => crate::responses::text(self.chunks()),
        }
    }
    /// The answer's text as streamed, piece by piece.
    pub fn pieces(&self) -> Vec<String> {
        match &self.reply {
            Some(r) => {
                let chars: Vec<char> = r.chars().collect();
                chars.chunks(5).map(|c| c.iter().collect()).collect()
            }
            None => (0..self.chunks()).map(crate::responses::token).collect(),
        }
    }
    pub fn ms(v: Option<u64>) -> std::time::Duration {
        std::time::Duration::from_millis(v.unwrap_or(0))
    }
}
