//! Hot reload: on SIGHUP, on a change to the config file, or on an admin request, read the file,
//! validate it fully, resolve it against live state, and swap the snapshot atomically. An invalid
//! file leaves the old snapshot serving and is reported. In-flight requests keep the snapshot
//! they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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

/// Who asked for a reload: an admin principal, `signal` (SIGHUP) or `file` (the file changed).
#[derive(Debug, Clone, Copy)]
pub struct ReloadBy<'a> {
    pub actor: &'a str,
    pub role: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

impl ReloadBy<'static> {
    pub const SIGNAL: ReloadBy<'static> = ReloadBy {
        actor: "signal",
        role: None,
        tenant: None,
    };
    pub const FILE: ReloadBy<'static> = ReloadBy {
        actor: "file",
        role: None,
        tenant: None,
    };
}

/// Reloads from the gateway's config file. Serialized: one reload at a time. A reload that
/// swaps the config is an audit entry (the versions before and after).
pub async fn reload(gw: &Gateway, by: ReloadBy<'_>) -> Result<Reloaded, ReloadError> {
    let _one_at_a_time = gw.reload_lock.lock().await;
    let before = gw.snapshot().version.to_string();
    let result = reload_inner(gw).await;
    let label = match &result {
        Ok(Reloaded::Swapped {
            version,
            restart_needed,
        }) => {
            tracing::info!(version, ?restart_needed, "config reloaded");
            gw.audit(sluice_store::audit::NewAudit {
                actor: by.actor.to_owned(),
                role: by.role.map(str::to_owned),
                actor_tenant: by.tenant.map(str::to_owned),
                action: "config.reload".to_owned(),
                target: Some(version.clone()),
                tenant: None,
                before: Some(serde_json::json!({ "version": before }).to_string()),
                after: Some(serde_json::json!({ "version": version, "restart_needed": restart_needed }).to_string()),
            })
            .await;
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

/// How often the config file's metadata is checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Reloads on SIGHUP and on changes to `path` until `shutdown` turns true.
///
/// The file is watched by polling its metadata (modification time, size, inode — following
/// symlinks, so editors' rename-replace and Kubernetes ConfigMap symlink swaps are seen) twice a
/// second. A directory watch (inotify) was used first, but it woke the gateway for every write
/// to *any* file in that directory — an access log next to the config costs a wake-up per
/// request.
pub fn spawn_watchers(gw: Arc<Gateway>, path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = fingerprint(&path);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                _ = hup_fut => {
                    seen = fingerprint(&path);
                    let _ = reload(&gw, ReloadBy::SIGNAL).await;
                }
                _ = tick.tick() => {
                    let now = fingerprint(&path);
                    if now != seen {
                        seen = now;
                        let _ = reload(&gw, ReloadBy::FILE).await;
                    }
                }
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            }
        }
    });
}

/// What changes when a file is edited or replaced.
fn fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some((m.modified().ok()?, m.len(), inode))
}
