//! The stream relay: upstream SSE bytes in, client events out, one at a time as they arrive —
//! no buffering beyond the event being framed. It enforces the idle timeout between chunks and
//! ends every abnormal stream with a protocol-correct error event, never a clean-looking close.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use hyper::body::Incoming;
use sluice_providers::adapter::StreamFault;
use sluice_providers::eventstream::{Framing, StreamParser};
use sluice_providers::{StreamTranslator, Usage};
use tokio::time::Sleep;

use crate::finish::Finish;
use crate::upstream::failure::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// Upstream is done; flush what is queued, then end.
    Closing,
    Done,
}

pub struct Relay {
    upstream: Incoming,
    parser: StreamParser,
    translator: Box<dyn StreamTranslator>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    out: VecDeque<Bytes>,
    scratch: Vec<Bytes>,
    state: State,
    started: Instant,
    prompt_estimate: u64,
    /// Output tokens relayed, counted with the tokenizer (only when limits count tokens).
    counting: Option<Box<OutputCount>>,
    /// Keeps the stream counted in flight on its deployment until the relay is dropped.
    inflight: Option<crate::upstream::health::InFlight>,
    /// The first content token has come (and been reported).
    first_token: bool,
}

#[derive(Debug, Default)]
struct OutputCount {
    tokens: u64,
    text: String,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(
        upstream: Incoming,
        framing: Framing,
        translator: Box<dyn StreamTranslator>,
        idle_timeout: Duration,
        prompt_estimate: u64,
    ) -> Relay {
        Relay {
            upstream,
            parser: StreamParser::new(framing),
            translator,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            out: VecDeque::new(),
            scratch: Vec::with_capacity(2),
            state: State::Streaming,
            started: Instant::now(),
            prompt_estimate,
            counting: None,
            inflight: None,
            first_token: false,
        }
    }

    /// Holds the deployment's in-flight count for as long as the stream lasts.
    pub fn hold(&mut self, inflight: Option<crate::upstream::health::InFlight>) {
        self.inflight = inflight;
    }

    /// Counts the output relayed with the tokenizer as it passes, so a stream cut short
    /// without reported usage is charged what it produced.
    pub fn count_output(&mut self) {
        self.translator.collect_text();
        self.counting = Some(Box::default());
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn end_with_error(&mut self, finish: &mut Finish, class: &'static str, code: &'static str, message: &str) {
        self.out.push_back(self.translator.error_event(code, message));
        finish.fail(class, code);
        self.state = State::Closing;
    }

    fn drain_events(&mut self, finish: &mut Finish) {
        while let Some(next) = self.parser.next_event() {
            let result = match next {
                Ok(event) => self.translator.on_event(event, &mut self.scratch),
                Err(fault) => Err(fault),
            };
            self.out.extend(self.scratch.drain(..));
            if !self.first_token && self.translator.relayed_chunks() > 0 {
                self.first_token = true;
                finish.first_token();
            }
            if let Some(c) = &mut self.counting {
                self.translator.take_text(&mut c.text);
                if !c.text.is_empty() {
                    c.tokens += crate::stream::tokens::count_piece(&c.text);
                    c.text.clear();
                }
            }
            match result {
                Ok(()) => {}
                Err(StreamFault::Malformed) => {
                    self.end_with_error(
                        finish,
                        Failure::Malformed.stream_class(),
                        "upstream_malformed_stream",
                        "The upstream sent a malformed stream event.",
                    );
                    return;
                }
                Err(StreamFault::Ended) => {
                    // A response stage ended the answer well (a runaway cut): the client has
                    // its end; the upstream is not read further.
                    self.state = State::Closing;
                    return;
                }
                Err(fault) => {
                    // The provider's own error event (translated if need be), or a response
                    // stage's, already went to the client; end there.
                    let class = match fault {
                        StreamFault::UpstreamError { class, .. } => Failure::Upstream(class).stream_class(),
                        StreamFault::Stopped { class, .. } => class,
                        StreamFault::Malformed | StreamFault::Ended => Failure::Malformed.stream_class(),
                    };
                    finish.fail(class, fault.code());
                    self.state = State::Closing;
                    return;
                }
            }
        }
    }

    /// Records usage: what the upstream reported, else the prompt (as the upstream counted it
    /// early, else estimated) plus the output relayed (counted with the tokenizer when limits
    /// count tokens, else one per chunk).
    pub fn settle(&self, finish: &mut Finish) {
        finish.add_upstream_time(self.started.elapsed());
        finish.finish_reason(self.translator.finish_reason());
        match self.translator.reported_usage() {
            Some(u) => finish.set_usage(u, false),
            None => {
                let completion = self
                    .counting
                    .as_ref()
                    .map_or_else(|| self.translator.relayed_chunks(), |c| c.tokens);
                let prompt = self.translator.prompt_tokens().unwrap_or(self.prompt_estimate);
                finish.set_usage(
                    Usage {
                        prompt_tokens: prompt,
                        completion_tokens: completion,
                        total_tokens: prompt + completion,
                        ..Usage::default()
                    },
                    true,
                );
            }
        }
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>, finish: &mut Finish) -> Poll<Option<Bytes>> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Poll::Ready(Some(b));
            }
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Closing => {
                    self.state = State::Done;
                    self.settle(finish);
                    finish.complete();
                    return Poll::Ready(None);
                }
                State::Streaming => {}
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data);
                        self.drain_events(finish);
                        self.idle
                            .as_mut()
                            .reset(tokio::time::Instant::now() + self.idle_timeout);
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    self.end_with_error(
                        finish,
                        Failure::Dropped.stream_class(),
                        "upstream_dropped",
                        "The upstream connection was lost mid-stream.",
                    );
                }
                Poll::Ready(None) => {
                    self.parser.end_of_input();
                    self.drain_events(finish);
                    if self.state == State::Streaming {
                        if self.translator.saw_end() {
                            self.state = State::Closing;
                        } else {
                            self.end_with_error(
                                finish,
                                Failure::Dropped.stream_class(),
                                "upstream_incomplete_stream",
                                "The upstream ended the stream without finishing it.",
                            );
                        }
                    }
                }
                Poll::Pending => {
                    if self.idle.as_mut().poll(cx).is_ready() {
                        self.end_with_error(
                            finish,
                            Failure::BodyTimeout.stream_class(),
                            "stream_idle_timeout",
                            "The upstream stopped sending for longer than the stream idle timeout.",
                        );
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
