//! The OTLP exporter against a receiver that accepts and never answers: requests are not
//! slowed or refused, spans past the queue are dropped and counted, and shutdown does not
//! wait for the stalled export. (What the spans hold is checked by the SDK lane's OTLP
//! receiver, `tests/sdk/test_otlp_traces.py`, which decodes them with the official classes.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_testkit::*;

/// Accepts connections, reads what comes, never answers. Returns its URL and how many bytes
/// it has read.
async fn stalled_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let read = Arc::new(AtomicUsize::new(0));
    let counter = read.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            held.push(tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::Relaxed);
                }
                // Hold the connection open without a word until the test ends.
                std::future::pending::<()>().await;
            }));
        }
    });
    (url, read)
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn a_stalled_receiver_costs_requests_nothing_and_does_not_hold_shutdown() {
    let mock = mock().await;
    let (url, read) = stalled_receiver().await;
    let yaml = format!(
        "telemetry:\n  otlp: {{ endpoint: \"{url}\", queue: 16, timeout_ms: 60000 }}\n{}",
        config_with(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});

    // The first request's spans go out within the exporter's second — into a receiver that
    // never answers, so the exporter waits on it (for up to a minute).
    assert_eq!(gw.chat(KEY, &body).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while read.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no export reached the receiver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile every request is answered; past 16 queued, their spans are dropped and counted.
    for _ in 0..40 {
        assert_eq!(gw.chat(KEY, &body).await.status, 200);
    }
    let m = gw.metrics().await;
    let dropped = metric(&m, "sluice_otlp_spans_dropped_total{reason=\"queue_full\"}");
    // 40 requests, 16 queued: 24 dropped, at least 5 spans each (request, auth, read, route,
    // upstream, respond…).
    assert!(dropped >= 24.0 * 5.0, "{dropped}\n{m}");
    assert_eq!(metric(&m, "sluice_otlp_spans_exported_total"), 0.0);

    // Shutdown flushes for a bounded time, not for the minute the export may take.
    let started = Instant::now();
    gw.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "shutdown took {took:?}");
}
