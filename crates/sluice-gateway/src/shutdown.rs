//! The shutdown signal every long-running task (listeners, connections, watchers) watches.

use tokio::sync::watch;

/// Resolves when the shutdown flag turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
