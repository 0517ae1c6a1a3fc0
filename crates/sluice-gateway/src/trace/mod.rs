//! Traces: a request's W3C trace context (continued from the caller's `traceparent`, or begun
//! here), its sampling decision (parent-based, then the configured ratio of new traces), and
//! the hand-off of a finished, sampled request to the OTLP exporter (`export.rs`).
//!
//! Spans are not built while the request walks: the walk already times its stages and its
//! attempts for the log line, so finish turns that record into a compact [`Traced`] value
//! (`record.rs`), queues it without blocking (a full queue drops it and counts the drop), and
//! the exporter's task writes the spans straight into OTLP protobuf and POSTs them in batches.
//! Without `telemetry.otlp` nothing here runs but one pointer load per request.

mod context;
mod export;
mod record;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;
use http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sluice_config::OtlpConfig;
use tokio::sync::{mpsc, oneshot};

pub use context::{TraceCtx, span_id};
pub use record::{AttemptSpan, AttemptTrace, Traced, nanos};

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct DropLabel {
    pub reason: &'static str,
}

/// The exporter's counters.
#[derive(Debug, Clone, Default)]
pub struct TraceMetrics {
    /// Spans the receiver accepted.
    pub exported: Counter,
    /// Spans given up, by reason: `queue_full` (the request path never waits), `export_failed`
    /// (the receiver refused or did not answer), `disabled` (tracing turned off by a reload).
    pub dropped: Family<DropLabel, Counter>,
}

impl TraceMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sluice_otlp_spans_exported",
            "Spans the OTLP receiver accepted",
            self.exported.clone(),
        );
        registry.register(
            "sluice_otlp_spans_dropped",
            "Spans not exported, by reason (queue_full, export_failed, disabled)",
            self.dropped.clone(),
        );
    }

    fn drop_spans(&self, reason: &'static str, n: usize) {
        self.dropped.get_or_create(&DropLabel { reason }).inc_by(n as u64);
    }
}

/// The trace side of telemetry: whether (and where) traces go now, and the bounded queue from
/// finish to the exporter's task.
#[derive(Debug)]
pub struct Traces {
    target: ArcSwapOption<OtlpConfig>,
    tx: mpsc::UnboundedSender<Box<Traced>>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Box<Traced>>>>,
    /// Requests queued and not yet taken by the exporter (bounded by `telemetry.otlp.queue`).
    queued: AtomicUsize,
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    flush_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<oneshot::Sender<()>>>>,
    pub metrics: TraceMetrics,
}

impl Default for Traces {
    fn default() -> Traces {
        Traces::new()
    }
}

impl Traces {
    pub fn new() -> Traces {
        let (tx, rx) = mpsc::unbounded_channel();
        let (flush, flush_rx) = mpsc::unbounded_channel();
        Traces {
            target: ArcSwapOption::empty(),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            queued: AtomicUsize::new(0),
            flush,
            flush_rx: std::sync::Mutex::new(Some(flush_rx)),
            metrics: TraceMetrics::default(),
        }
    }

    /// Where traces go from now on (at start and on every reload); `None` turns them off.
    pub fn configure(&self, otlp: Option<&OtlpConfig>) {
        self.target.store(otlp.map(|o| Arc::new(o.clone())));
    }

    /// Starts the exporter's task (once; later calls do nothing).
    pub fn start_exporter(self: &Arc<Self>, client: Arc<crate::upstream::client::HttpClient>) {
        let rx = self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let flush = self
            .flush_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let (Some(rx), Some(flush)) = (rx, flush) {
            tokio::spawn(export::run(Arc::downgrade(self), rx, flush, client));
        }
    }

    /// The request's trace context, when traces are on.
    pub fn begin(&self, headers: &HeaderMap) -> Option<TraceCtx> {
        let target = self.target.load();
        target.as_ref().map(|t| TraceCtx::begin(headers, t.sample_ratio))
    }

    /// Queues a finished request's spans; never waits. A full queue drops them, counted.
    pub fn send(&self, traced: Box<Traced>) {
        let Some(limit) = self.target.load().as_ref().map(|t| t.queue) else {
            // Turned off by a reload while the request was in flight.
            self.metrics.drop_spans("disabled", traced.span_count());
            return;
        };
        if self.queued.fetch_add(1, Ordering::Relaxed) >= limit {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.metrics.drop_spans("queue_full", traced.span_count());
            return;
        }
        if let Err(e) = self.tx.send(traced) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.metrics.drop_spans("queue_full", e.0.span_count());
        }
    }

    /// The exporter took `n` requests off the queue.
    fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    fn target(&self) -> Option<Arc<OtlpConfig>> {
        self.target.load_full()
    }

    /// Exports what is queued, waiting at most `within` (shutdown: after the drain, before the
    /// process exits; what is still queued then is dropped).
    pub async fn flush(&self, within: std::time::Duration) {
        let (done, wait) = oneshot::channel();
        if self.flush.send(done).is_ok() {
            let _ = tokio::time::timeout(within, wait).await;
        }
    }
}
