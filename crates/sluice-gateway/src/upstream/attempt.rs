//! What an alias's attempts loop hands back besides its answer: a record per attempt (for the
//! log line) and the time and price that applied. Values only; finish reads them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_config::Price;

/// One upstream attempt, for the log line.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub deployment: Arc<str>,
    /// `ok`, or an error class.
    pub outcome: &'static str,
    pub status: Option<u16>,
    /// When it began, and how long it took.
    pub at: Instant,
    pub ms: f64,
    /// Its span (when the request is traced).
    pub trace: Option<crate::trace::AttemptTrace>,
    /// The deployment's `ok` attempts counter, resolved once (an answered attempt carries it;
    /// a failed one is counted by its outcome's label).
    pub counter: Option<prometheus_client::metrics::counter::Counter>,
}

/// What one alias's attempts loop did, however it ended: its answer or error, each attempt,
/// and the time spent. The spine hands it to finish; nothing here writes into the request's
/// record.
#[derive(Default)]
pub struct Dispatched {
    pub attempts: Vec<AttemptRecord>,
    /// Time spent in attempts (waiting on upstreams).
    pub upstream_time: Duration,
    /// Time spent waiting for a place on a deployment at its concurrency limit.
    pub capacity_wait: Duration,
    /// A deployment answered (with `price`).
    pub answered: bool,
    pub price: Option<Price>,
    /// Answers thrown away (they failed their JSON check): the tokens they used and what
    /// they cost, charged to the request with its answer.
    pub discarded: Discarded,
}

/// What answers the caller never got still used.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discarded {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
}

impl Discarded {
    pub fn add(&mut self, usage: &sluice_providers::Usage, price: Option<&Price>) {
        self.input_tokens += usage.prompt_tokens;
        self.output_tokens += usage.completion_tokens;
        self.cost_micros += price.map_or(0, |p| {
            p.cost_micros(
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.cache_write_tokens,
                usage.completion_tokens,
            )
        });
    }

    pub fn merge(&mut self, other: Discarded) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_micros += other.cost_micros;
    }
}
