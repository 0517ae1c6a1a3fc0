//! What finish tells the alert rules about each request — its model, tenant, whether it was a
//! server error, its latency and cost — through a bounded queue the request path never waits
//! on (a full one drops the observation and counts it). Off while no rule exists: one atomic
//! load per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// Observations waiting for the evaluator.
const QUEUE: usize = 65_536;

/// One finished request, as the alert rules see it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub model: Option<Arc<str>>,
    pub tenant: Option<Arc<str>>,
    /// Answered with a 5xx.
    pub error: bool,
    pub latency_us: u64,
    pub cost_micros: u64,
}

#[derive(Debug)]
pub struct Feed {
    active: AtomicBool,
    tx: mpsc::Sender<Observation>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Observation>>>,
    pub dropped: Counter,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    pub fn new() -> Feed {
        let (tx, rx) = mpsc::channel(QUEUE);
        Feed {
            active: AtomicBool::new(false),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            dropped: Counter::default(),
        }
    }

    /// Whether observations are taken (while some rule exists).
    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }

    /// Queues what `observation` makes, when rules exist; never waits.
    pub fn observe(&self, observation: impl FnOnce() -> Observation) {
        if self.active.load(Ordering::Relaxed) && self.tx.try_send(observation()).is_err() {
            self.dropped.inc();
        }
    }

    /// The evaluator's end of the queue (once).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Observation>> {
        self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}
