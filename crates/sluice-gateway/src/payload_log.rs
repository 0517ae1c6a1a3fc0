//! The payload log's writer: rows from the response stage that captures them
//! (`response/payload.rs`) go through a bounded queue — the request path never waits; a full
//! queue drops the row and counts it — to a task that stores them in batches in the ledger's
//! database, and deletes rows past their retention every hour.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sluice_store::ledger::{LedgerDb, PayloadRow};
use tokio::sync::mpsc;

/// Rows waiting for the writer before new ones are dropped.
const QUEUE: usize = 4096;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct PayloadLog {
    tx: mpsc::Sender<PayloadRow>,
    dropped: Counter,
}

impl PayloadLog {
    /// Starts the writer over `db`; `written` and `dropped` count rows.
    pub fn start(db: LedgerDb, written: Counter, dropped: Counter) -> Arc<PayloadLog> {
        let (tx, mut rx) = mpsc::channel::<PayloadRow>(QUEUE);
        let lost = dropped.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    n = rx.recv_many(&mut batch, 256) => {
                        if n == 0 {
                            return;
                        }
                        match db.insert_payloads(&batch).await {
                            Ok(()) => {
                                written.inc_by(batch.len() as u64);
                            }
                            Err(e) => {
                                lost.inc_by(batch.len() as u64);
                                tracing::error!(error = %e, rows = batch.len(), "payload rows not stored");
                            }
                        }
                        batch.clear();
                    }
                    _ = prune.tick() => {
                        match db.prune_payloads(chrono::Utc::now().timestamp_millis()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(rows = n, "payload rows past their retention deleted"),
                            Err(e) => tracing::warn!(error = %e, "payload rows not pruned"),
                        }
                    }
                }
            }
        });
        Arc::new(PayloadLog { tx, dropped })
    }

    /// Queues a row; never waits.
    pub fn send(&self, row: PayloadRow) {
        if self.tx.try_send(row).is_err() {
            self.dropped.inc();
        }
    }
}
