//! What an alias's attempts loop hands back besides its answer: a record per attempt (for the
//! log line) and the time and price that applied. Values only; finish reads them.

use std::sync::Arc;
use std::time::Duration;

use sluice_config::Price;

/// One upstream attempt, for the log line.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub deployment: Arc<str>,
    /// `ok`, or an error class.
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub ms: f64,
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
}
