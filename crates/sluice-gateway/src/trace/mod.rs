//! Traces: a request's W3C trace context (continued from the caller's `traceparent`, or begun
//! here), its sampling decision (parent-based, then the configured ratio of new traces), and
//! the hand-off of a finished, sampled request to the OTLP exporter (`export.rs`).
//!
//! Spans are not built while the request walks: the walk already times its stages and its
//! attempts for the log line, so finish turns that record into a compact [`Traced`] value
//! (`record.rs`), queues it without blocking (a full queue drops it and counts the drop), and
//! the exporter's task writes the spans straight into OTLP protobuf and POSTs them in batches.
//! Without `telemetry.otlp` nothing here runs but one pointer load per request.

mod export;
mod record;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sluice_config::OtlpConfig;
use tokio::sync::{mpsc, oneshot};

pub use record::{AttemptTrace, Traced};

/// Trace flags bit 0: the trace is recorded.
const SAMPLED: u8 = 1;

/// A request's place in a trace.
#[derive(Debug, Clone)]
pub struct TraceCtx {
    pub trace_id: [u8; 16],
    /// The request's own (server) span.
    pub span_id: [u8; 8],
    /// The caller's span, when it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// The caller's `tracestate`, passed on unchanged.
    pub state: Option<HeaderValue>,
}

impl TraceCtx {
    /// Continues the caller's trace (its `traceparent` decides sampling) or begins one, sampled
    /// at `ratio` by its trace id (the same id gets the same answer on every instance).
    pub fn begin(headers: &HeaderMap, ratio: f64) -> TraceCtx {
        let caller = headers
            .get(sluice_providers::names::TRACEPARENT)
            .and_then(|v| parse_traceparent(v.as_bytes()));
        match caller {
            Some((trace_id, parent, flags)) => TraceCtx {
                trace_id,
                span_id: span_id(),
                parent: Some(parent),
                sampled: flags & SAMPLED != 0,
                state: headers
                    .get(sluice_providers::names::TRACESTATE)
                    .filter(|v| v.len() <= 512)
                    .cloned(),
            },
            None => {
                let trace_id = loop {
                    let id: u128 = rand::random();
                    if id != 0 {
                        break id.to_be_bytes();
                    }
                };
                TraceCtx {
                    sampled: ratio_sampled(&trace_id, ratio),
                    trace_id,
                    span_id: span_id(),
                    parent: None,
                    state: None,
                }
            }
        }
    }

    /// The `traceparent` an upstream gets: this trace, with `span` (the attempt's) as parent.
    pub fn traceparent(&self, span: &[u8; 8]) -> HeaderValue {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        hex_into(&mut v[3..35], &self.trace_id);
        v[35] = b'-';
        hex_into(&mut v[36..52], span);
        v[52] = b'-';
        hex_into(&mut v[53..55], &[u8::from(self.sampled)]);
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A new span id (never all zeros).
pub fn span_id() -> [u8; 8] {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// The ratio sampler of OpenTelemetry's SDKs: the trace id's last 8 bytes, as a 63-bit number,
/// below `ratio × 2^63`.
fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 1;
    x < (ratio * (1u64 << 63) as f64) as u64
}

fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if !sluice_providers::adapter::is_traceparent(v) {
        return None;
    }
    let mut trace = [0u8; 16];
    let mut parent = [0u8; 8];
    let mut flags = [0u8; 1];
    hex_from(&v[3..35], &mut trace)?;
    hex_from(&v[36..52], &mut parent)?;
    hex_from(&v[53..55], &mut flags)?;
    Some((trace, parent, flags[0]))
}

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

fn hex_from(hex: &[u8], out: &mut [u8]) -> Option<()> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (pair, o) in hex.chunks_exact(2).zip(out.iter_mut()) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(())
}

/// The exporter's counters.
#[derive(Debug, Clone, Default)]
pub struct TraceMetrics {
    /// Spans the receiver accepted.
    pub exported: Counter,
    /// Spans given up, by reason: `queue_full` (the request path never waits), `export_failed`
    /// (the receiver refused or did not answer), `disabled` (tracing turned off by a reload).
    pub dropped: Family<crate::telemetry::ReasonLabel, Counter>,
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
        self.dropped
            .get_or_create(&crate::telemetry::ReasonLabel { reason })
            .inc_by(n as u64);
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
        let limit = self.target.load().as_ref().map_or(0, |t| t.queue);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_traceparent_is_continued_with_its_sampling_decision() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.insert("tracestate", HeaderValue::from_static("vendor=x"));
        let t = TraceCtx::begin(&h, 0.0);
        assert!(t.sampled, "the caller sampled it: the ratio does not apply");
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent.map(hex::encode).as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(t.state.as_ref().map(|v| v.as_bytes()), Some(&b"vendor=x"[..]));
        let forwarded = t.traceparent(&[0xab; 8]);
        assert_eq!(
            forwarded.to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01"
        );

        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let t = TraceCtx::begin(&h, 1.0);
        assert!(!t.sampled, "the caller did not sample it");
        assert!(t.traceparent(&[1; 8]).to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn new_traces_are_sampled_at_the_ratio() {
        let h = HeaderMap::new();
        let n = 20_000;
        let sampled = (0..n).filter(|_| TraceCtx::begin(&h, 0.25).sampled).count();
        // Binomial(20 000, 0.25): sd ≈ 61; ±1 000 is over 16 sd.
        assert!((4_000..6_000).contains(&sampled), "{sampled}");
        assert!((0..100).all(|_| TraceCtx::begin(&h, 1.0).sampled));
        assert!((0..100).all(|_| !TraceCtx::begin(&h, 0.0).sampled));
        let t = TraceCtx::begin(&h, 1.0);
        assert!(t.parent.is_none() && t.trace_id != [0; 16] && t.span_id != [0; 8]);
    }
}
