//! The OTLP/HTTP exporter: one task that takes finished requests off the queue, writes their
//! spans into an export request (protobuf), and POSTs it when the batch is full or a second
//! has passed — one export in flight at a time, each within the configured timeout. A batch
//! the receiver refuses or does not answer is dropped and counted, never retried into a
//! growing backlog. A flush (shutdown) exports what is queued and answers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use sluice_config::OtlpConfig;
use sluice_telemetry::otlp::TraceBatch;
use tokio::sync::{mpsc, oneshot};

use super::{Traced, Traces};
use crate::upstream::client::HttpClient;

/// The longest a span waits in a partial batch.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn run(
    traces: Weak<Traces>,
    mut rx: mpsc::UnboundedReceiver<Box<Traced>>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    client: Arc<HttpClient>,
) {
    let mut pending = TraceBatch::new();
    let mut took = Vec::with_capacity(64);
    let mut tick = tokio::time::interval(EXPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (flush, ticked) = tokio::select! {
            n = rx.recv_many(&mut took, 64) => {
                if n == 0 {
                    return; // the gateway is gone
                }
                (None, false)
            }
            _ = tick.tick() => (None, true),
            f = flushes.recv() => (f, false),
        };
        let Some(traces) = traces.upgrade() else { return };
        if flush.is_some() {
            while let Ok(t) = rx.try_recv() {
                took.push(t);
            }
        }
        traces.taken(took.len());
        let target = traces.target();
        for t in took.drain(..) {
            match &target {
                Some(_) => t.write(&mut pending),
                None => traces.metrics.drop_spans("disabled", t.span_count()),
            }
        }
        if target.is_none() && !pending.is_empty() {
            // Turned off by a reload with spans waiting: they go nowhere, counted.
            traces.metrics.drop_spans("disabled", pending.len());
            pending = TraceBatch::new();
        }
        let batch = target.as_ref().map_or(usize::MAX, |t| t.batch);
        let due = !pending.is_empty() && (flush.is_some() || ticked || pending.len() >= batch);
        if due && let Some(target) = &target {
            let full = std::mem::take(&mut pending);
            export(&traces, &client, target, full).await;
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

async fn export(traces: &Traces, client: &HttpClient, target: &OtlpConfig, batch: TraceBatch) {
    let spans = batch.len();
    let body = batch.finish(
        |a| {
            a.str("service.name", &target.service_name);
            a.str("service.version", env!("CARGO_PKG_VERSION"));
            a.str("telemetry.sdk.name", "sluice");
            a.str("telemetry.sdk.language", "rust");
        },
        ("sluice", env!("CARGO_PKG_VERSION")),
    );
    let mut req =
        http::Request::post(target.endpoint.clone()).header(http::header::CONTENT_TYPE, "application/x-protobuf");
    for (name, value) in &target.headers {
        req = req.header(name, value);
    }
    let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
        traces.metrics.drop_spans("export_failed", spans);
        return;
    };
    match tokio::time::timeout(target.timeout, client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => {
            traces.metrics.exported.inc_by(spans as u64);
        }
        outcome => {
            let status = outcome
                .as_ref()
                .ok()
                .and_then(|r| r.as_ref().ok())
                .map(|r| r.status().as_u16());
            tracing::warn!(endpoint = %target.endpoint, ?status, spans, "OTLP export failed; spans dropped");
            traces.metrics.drop_spans("export_failed", spans);
        }
    }
}
