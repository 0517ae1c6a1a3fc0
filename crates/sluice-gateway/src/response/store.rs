//! The cache's store: a response stage that keeps a copy of the answer as it passes (up to the
//! route's largest entry) and stores it once the answer has ended with its usage. An answer
//! cut short, ended by an error, or stopped by a stage before this one never reaches
//! `finish`, so it is never stored. The client's events pass on unchanged and unheld.

use sluice_cache::{Answer, Body, Storing, TapeWriter, Whole};
use sluice_config::Price;
use sluice_providers::chat::{ChatResponse, Delta};
use sluice_providers::translate::FilterStop;
use sluice_providers::{Usage, Wire};

use super::ResponseStage;

/// One answer on its way into the cache.
pub struct Store {
    /// Dropped when the answer grows past the route's largest entry.
    storing: Option<Storing>,
    /// A streaming leader's tape: every event, for its streaming followers (kept whatever the
    /// answer's size; dropped unfinished, it tells them the answer broke off).
    tape: Option<TapeWriter>,
    seen: Vec<Delta>,
    bytes: u64,
    usage: bool,
    /// The answering deployment's price: what the answer cost, which a hit saves.
    price: Option<Price>,
}

impl Store {
    pub fn new(mut storing: Storing, price: Option<Price>) -> Store {
        Store {
            tape: storing.take_tape(),
            storing: Some(storing),
            seen: Vec::new(),
            bytes: 0,
            usage: false,
            price,
        }
    }
}

/// An event's size, in the measure entries are weighed in.
fn weight(d: &Delta) -> u64 {
    let n = match d {
        Delta::Start { id, model } => id.len() + model.len(),
        Delta::Text(t) => t.len(),
        Delta::ToolStart { id, name, .. } => id.len() + name.len(),
        Delta::ToolArgs { json, .. } => json.len(),
        Delta::Stop { stop_sequence, .. } => stop_sequence.as_ref().map_or(0, String::len),
        Delta::Usage(_) | Delta::End => 0,
    };
    n as u64
}

impl ResponseStage for Store {
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        if let Some(tape) = &self.tape {
            tape.push(&delta);
        }
        if let Some(storing) = &self.storing {
            self.bytes += weight(&delta);
            if self.bytes > storing.max_bytes() {
                self.storing = None;
                self.seen = Vec::new();
            } else {
                self.usage |= matches!(delta, Delta::Usage(_));
                self.seen.push(delta.clone());
            }
        }
        out.push(delta);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        let mut cost = 0;
        if let Some(storing) = self.storing.take()
            && self.usage
        {
            let answer = ChatResponse::from_deltas(&self.seen);
            cost = self.cost(&answer.usage);
            storing.commit(Answer::Chat(answer), cost);
        }
        // The followers' streams end with the leader's (after the entry is in place).
        if let Some(tape) = self.tape.take() {
            tape.finish(cost);
        }
        Ok(())
    }
}

impl Store {
    /// What the answer cost at the answering deployment's price (what a hit saves).
    fn cost(&self, u: &Usage) -> u64 {
        self.price.map_or(0, |p| {
            p.cost_micros(
                u.prompt_tokens,
                u.cached_tokens,
                u.cache_write_tokens,
                u.completion_tokens,
            )
        })
    }

    /// A streaming leader's store: its followers read every event as it passes.
    pub fn streaming(&self) -> bool {
        self.tape.is_some()
    }

    /// Stores a whole chat answer as the client got it, in its format (no stage before this
    /// one changed it): nothing is read until a replay needs another format or a stream.
    pub fn keep(mut self, wire: Wire, bytes: bytes::Bytes, usage: Usage) {
        let Some(storing) = self.storing.take() else { return };
        if bytes.len() as u64 > storing.max_bytes() {
            return;
        }
        let cost = self.cost(&usage);
        storing.commit(Answer::Whole(Whole { wire, bytes, usage }), cost);
    }

    /// Stores a whole answer of an endpoint that is not chat (completions, embeddings,
    /// predictions) as the client got it.
    pub fn commit_body(self, content_type: Option<&http::HeaderValue>, bytes: bytes::Bytes, usage: Usage) {
        let cost = self.cost(&usage);
        let Some(storing) = self.storing else { return };
        if bytes.len() as u64 > storing.max_bytes() {
            return;
        }
        let content_type = content_type.and_then(|v| v.to_str().ok()).map(str::to_owned);
        storing.commit(
            Answer::Body(Body {
                content_type,
                bytes,
                usage,
            }),
            cost,
        );
    }
}
