//! The background sweeps, off the async workers: the limiter's in-process cells back at rest,
//! the response cache's expired entries, and the ledger's and audit log's retention.

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

/// How often the cache's sweep runs, and how many slots of each shard it looks at each time
/// (an expired entry is never served; the sweep gives its room back).
const CACHE_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const CACHE_SWEEP_SLOTS: usize = 4096;

/// Removes expired entries from the cache's in-process tier every [`CACHE_SWEEP_EVERY`], a
/// bounded part of each shard at a time, on a blocking thread. Ends when the gateway is dropped.
pub(crate) async fn cache_sweep_every(gw: std::sync::Weak<crate::Gateway>) {
    loop {
        tokio::time::sleep(CACHE_SWEEP_EVERY).await;
        let Some(gateway) = gw.upgrade() else { return };
        if gateway.cache.memory.entries() == 0 {
            continue;
        }
        let swept = tokio::task::spawn_blocking(move || gateway.cache.memory.sweep(CACHE_SWEEP_SLOTS));
        if swept.await.is_err() {
            return; // the runtime is shutting down
        }
    }
}

/// How often retention runs (and once a minute after the start).
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes ledger rows past `ledger.retention_days`, audit entries past
/// `admin.audit_retention_days` (the audit chain anchored at the last one deleted) and expired
/// console sessions, every
/// [`RETENTION_EVERY`]. Instances sharing a database may all run it: a second deletion finds
/// nothing. Ends when the gateway is dropped.
pub(crate) async fn retention_every(gw: std::sync::Weak<crate::Gateway>) {
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::time::sleep(wait).await;
        wait = RETENTION_EVERY;
        let Some(gateway) = gw.upgrade() else { return };
        prune(&gateway).await;
    }
}

/// One retention pass (what the periodic task runs).
pub async fn prune(gw: &crate::Gateway) {
    let snap = gw.snapshot();
    let now = chrono::Utc::now().timestamp_millis();
    let before = |keep: std::time::Duration| now - keep.as_millis() as i64;
    if let (Some(keep), Some(ledger)) = (snap.config.ledger.retention, &gw.ledger) {
        match ledger.db().prune_ledger(before(keep)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "ledger rows past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "ledger rows not pruned"),
        }
    }
    if let Some(keep) = snap.config.admin.audit_retention {
        match gw.store.prune_audit(before(keep)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "audit entries past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "audit entries not pruned"),
        }
    }
    // Expired console sessions are refused when read; this only keeps the table small.
    if let Err(e) = gw.store.prune_sessions(now).await {
        tracing::warn!(error = %e, "expired console sessions not pruned");
    }
}
