//! Hot reload: on SIGHUP, on a change to the config file, or on an admin request, read the file,
//! validate it fully, resolve it against live state, and swap the snapshot atomically. An invalid
//! file leaves the old snapshot serving and is reported. In-flight requests keep the snapshot
//! they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;
use tokio::sync::{mpsc, watch};

use crate::Gateway;
use crate::telemetry::ResultLabel;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file")]
    NoFile,
    #[error(transparent)]
    Load(#[from] sluice_config::LoadError),
    #[error(transparent)]
    Build(#[from] crate::state::BuildError),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    Swapped {
        version: String,
        restart_needed: Vec<&'static str>,
    },
    Unchanged {
        version: String,
    },
}

/// Reloads from the gateway's config file. Serialized: one reload at a time.
pub async fn reload(gw: &Gateway) -> Result<Reloaded, ReloadError> {
    let _one_at_a_time = gw.reload_lock.lock().await;
    let result = reload_inner(gw).await;
    let label = match &result {
        Ok(Reloaded::Swapped {
            version,
            restart_needed,
        }) => {
            tracing::info!(version, ?restart_needed, "config reloaded");
            "ok"
        }
        Ok(Reloaded::Unchanged { .. }) => "unchanged",
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; the previous config keeps serving");
            "error"
        }
    };
    gw.telemetry
        .metrics
        .reloads
        .get_or_create(&ResultLabel { result: label })
        .inc();
    result
}

async fn reload_inner(gw: &Gateway) -> Result<Reloaded, ReloadError> {
    let path = gw.config_path.as_ref().ok_or(ReloadError::NoFile)?;
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| sluice_config::LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
    let config = sluice_config::load_str(&text, &|name| (gw.env)(name))?;
    let old = gw.snapshot();
    if config.version == *old.version {
        return Ok(Reloaded::Unchanged {
            version: config.version,
        });
    }
    let mut restart_needed = Vec::new();
    let (a, b) = (&old.config, &config);
    if a.server.listen != b.server.listen {
        restart_needed.push("server.listen");
    }
    if a.server.tls != b.server.tls {
        restart_needed.push("server.tls");
    }
    if a.admin.listen != b.admin.listen {
        restart_needed.push("admin.listen");
    }
    if a.store != b.store {
        restart_needed.push("store");
    }
    if a.logging.access_log != b.logging.access_log {
        restart_needed.push("logging.access_log");
    }
    let snapshot = gw.live.build(config).await?;
    let version = snapshot.version.to_string();
    gw.install(Arc::new(snapshot)).await;
    Ok(Reloaded::Swapped {
        version,
        restart_needed,
    })
}

/// Reloads on SIGHUP and on changes to `path` until `shutdown` turns true.
pub fn spawn_watchers(gw: Arc<Gateway>, path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let debouncer = watch_file(&path, tx.clone());
    tokio::spawn(async move {
        let _debouncer = debouncer; // watching stops when this task ends
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup_fut = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup_fut = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = hup_fut => { let _ = reload(&gw).await; }
                Some(()) = rx.recv() => {
                    while rx.try_recv().is_ok() {}
                    let _ = reload(&gw).await;
                }
                _ = crate::edge::stopped(&mut shutdown) => break,
            }
        }
    });
}

type Debouncer = notify_debouncer_full::Debouncer<notify::RecommendedWatcher, notify_debouncer_full::RecommendedCache>;

/// Watches the file's directory (editors and ConfigMaps replace files by rename).
fn watch_file(path: &Path, tx: mpsc::UnboundedSender<()>) -> Option<Debouncer> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name()?.to_owned();
    let mut debouncer = new_debouncer(
        Duration::from_millis(150),
        None,
        move |res: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = res
                && events
                    .iter()
                    .any(|e| e.paths.iter().any(|p| p.file_name() == Some(name.as_os_str())))
            {
                let _ = tx.send(());
            }
        },
    )
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP instead"))
    .ok()?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(error = %e, "cannot watch the config directory; reload with SIGHUP instead"))
        .ok()?;
    Some(debouncer)
}
