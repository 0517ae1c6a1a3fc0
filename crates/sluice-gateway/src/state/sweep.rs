//! The limiter's sweep: evicts the in-process cells back at rest, off the async workers.

/// Sweeps the gateway's in-process cells every [`sluice_limits::SWEEP_EVERY`] (or less often, see
/// [`sluice_limits::SWEEP_BACKOFF`]) on a blocking thread, never on an async worker, and sets the
/// `sluice_limits_cells` gauge. Ends when the gateway is dropped.
pub(crate) async fn sweep_every(gw: std::sync::Weak<crate::Gateway>) {
    let mut wait = sluice_limits::SWEEP_EVERY;
    loop {
        tokio::time::sleep(wait).await;
        let Some(gateway) = gw.upgrade() else { return };
        if gateway.live.limits.cells() == 0 {
            continue;
        }
        let swept = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let before = gateway.live.limits.cells();
            let left = gateway.live.limits.sweep(sluice_limits::now_ns());
            gateway.telemetry.metrics.limits_cells.set(left as i64);
            let took = started.elapsed();
            tracing::debug!(
                evicted = before.saturating_sub(left),
                left,
                took_us = took.as_micros() as u64,
                "limiter cells swept"
            );
            took
        });
        match swept.await {
            Ok(took) => wait = sluice_limits::SWEEP_EVERY.max(took.saturating_mul(sluice_limits::SWEEP_BACKOFF)),
            Err(_) => return, // the runtime is shutting down
        }
    }
}
