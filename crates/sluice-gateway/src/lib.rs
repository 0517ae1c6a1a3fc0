//! Sluice's data path: the edge (listeners, TLS, HTTP/1.1 + HTTP/2), the spine every request
//! walks, its stages, dispatch to upstreams, the stream relay, finish, virtual keys, metrics and
//! hot reload. The admin API (`sluice-admin`) is served on the admin listener through
//! [`StartOptions::admin`].
//!
//! This crate never parses provider formats itself (that is `sluice-providers`), never touches a
//! database on the request path, and never logs prompt or response text or any credential.

pub mod alerts;
pub mod edge;
pub mod error;
pub mod finish;
pub mod flow;
pub mod guard;
pub mod keys;
pub mod meter;
pub mod payload_log;

pub mod response;
pub mod shutdown;
pub mod spine;
pub mod stages;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod timing;
pub mod trace;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_config::Config;
use sluice_store::ledger::LedgerDb;
use sluice_store::{KeyStore, PgStore, SqliteStore, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::edge::Connections;
use crate::keys::KeyTable;
use crate::stages::Plans;
use crate::state::{LiveState, Snapshot};
use crate::telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] edge::TlsError),
    #[error("cannot open the key store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Build(#[from] state::BuildError),
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error(transparent)]
    Ledger(#[from] sluice_ledger::LedgerError),
    #[error("a route has a semantic cache, but {0}")]
    Embedder(#[from] sluice_embed::EmbedError),
    #[error("cannot start the embedder's threads: {0}")]
    EmbedderThreads(std::io::Error),
}

/// What serves requests now: a config snapshot and the key table built with its keys. Swapped
/// together, so a request never sees a config with another config's keys (a key removed from
/// the file stops working with the reload that removes it).
#[derive(Debug)]
pub struct Serving {
    pub snapshot: Arc<Snapshot>,
    /// The routes' stage plans, built with the snapshot.
    pub plans: Arc<Plans>,
    pub keys: KeyTable,
}

/// The run-time keys last read from the store, and the number of the listing they came from.
#[derive(Debug, Default)]
struct RuntimeKeys {
    listing: u64,
    keys: Vec<sluice_store::StoredKey>,
}

/// Everything the request path shares.
pub struct Gateway {
    serving: ArcSwap<Serving>,
    pub live: LiveState,
    pub store: Arc<dyn KeyStore>,
    pub telemetry: Arc<Telemetry>,
    pub config_path: Option<PathBuf>,
    env: EnvFn,
    ready: AtomicBool,
    /// Set at shutdown: HTTP/1.1 responses carry `connection: close` from then on.
    draining: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
    /// The run-time keys last read from the store (control plane only), and which listing
    /// they came from. Never held across a store call: a stalled store cannot hold up a reload.
    runtime_keys: std::sync::Mutex<RuntimeKeys>,
    /// Numbers store listings in the order they start, so a slow one never overwrites a newer.
    listings: std::sync::atomic::AtomicU64,
    /// Limits set through the admin API (replace a key's or team's configured ones).
    pub runtime_limits: ArcSwap<sluice_limits::RuntimeLimits>,
    /// Budget alert webhooks, sent off the request path.
    pub alerts: alerts::AlertSender,
    /// The spend ledger (none when disabled).
    pub ledger: Option<Arc<sluice_ledger::Ledger>>,
    /// The response cache's in-process tier and its flights: live state, kept across reloads (a key holds its
    /// route's policy version, so a config change that shapes answers starts new entries).
    pub cache: sluice_cache::Tiers,
    /// The in-process embedding model's threads, loaded at start when a route has a semantic
    /// cache (a reload that adds the first such route needs a restart; until then its semantic
    /// lookups are skipped and counted).
    pub embedder: Option<sluice_embed::Pool>,
    /// The payload log's writer (routes with `log_payloads`; needs the ledger's database).
    pub payloads: Option<Arc<payload_log::PayloadLog>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("version", &self.snapshot().version)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The snapshot current now; a request keeps the one it started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.serving.load().snapshot.clone()
    }

    /// The snapshot and key table serving now, loaded together (once per request).
    pub fn serving(&self) -> Arc<Serving> {
        self.serving.load_full()
    }

    /// Active keys now.
    pub fn key_count(&self) -> usize {
        self.serving.load().keys.len()
    }

    /// Whether shutdown has begun (connections are being closed as their requests end).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Swaps in a new snapshot together with a key table of its YAML keys (and the run-time
    /// keys last read), then re-reads the run-time keys from the store.
    pub async fn install(&self, snapshot: Arc<Snapshot>) {
        if snapshot.config.counts_tokens() {
            // A reload may bring the first token limit: load the tokenizer now, off the workers.
            tokio::task::spawn_blocking(stream::tokens::preload_tokenizer);
        }
        self.live.limits.configure(snapshot.config.store.redis.as_ref()).await;
        self.telemetry.traces.configure(snapshot.config.telemetry.otlp.as_ref());
        self.telemetry
            .alert_feed
            .set_active(!snapshot.config.alerts.rules.is_empty());
        {
            // Held while swapping, so a key refresh cannot interleave with an older snapshot.
            let runtime = self.runtime_keys();
            let plans = Plans::build(&snapshot);
            self.swap(snapshot, plans, &runtime.keys);
        }
        if let Err(e) = self.refresh_keys().await {
            tracing::error!(error = %e, "cannot read run-time keys; using the last ones read with the new config keys");
        }
    }

    fn runtime_keys(&self) -> std::sync::MutexGuard<'_, RuntimeKeys> {
        self.runtime_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads the run-time keys and rebuilds the key table with the current snapshot. The
    /// listing that started last wins, so two admin changes cannot race each other into a
    /// stale table. If the store cannot be read, the table is still rebuilt — with the current
    /// config keys and the last run-time keys read — and the error is returned.
    pub async fn refresh_keys(&self) -> Result<(), StoreError> {
        let listing = self.listings.fetch_add(1, Ordering::Relaxed) + 1;
        let listed = self.store.list().await;
        let mut runtime = self.runtime_keys();
        let result = match listed {
            Ok(list) if listing > runtime.listing => {
                runtime.listing = listing;
                runtime.keys = list;
                Ok(())
            }
            Ok(_) => Ok(()), // a listing that started later is in already
            Err(e) => Err(e),
        };
        let current = self.serving();
        let shadowed = self.swap(current.snapshot.clone(), current.plans.clone(), &runtime.keys);
        drop(runtime);
        for id in shadowed {
            tracing::warn!(key_id = %id, "run-time key ignored: a config-file key uses the same id or key");
        }
        result
    }

    /// Serves `snapshot` with a key table of its keys and `runtime`; returns the run-time keys
    /// the config's shadow. Callers hold `runtime_keys`.
    fn swap(&self, snapshot: Arc<Snapshot>, plans: Arc<Plans>, runtime: &[sluice_store::StoredKey]) -> Vec<String> {
        let (keys, shadowed) = KeyTable::build(&snapshot.config.keys, runtime);
        self.telemetry.metrics.keys.set(keys.len() as i64);
        self.serving.store(Arc::new(Serving { snapshot, plans, keys }));
        shadowed
    }
}

impl Gateway {
    /// Appends an audit entry and writes the log's new head to the log (so a log line holds
    /// every head hash); a failure is logged and counted — the change itself was made.
    pub async fn audit(&self, entry: sluice_store::audit::NewAudit) -> Option<sluice_store::audit::AuditEntry> {
        match self.store.append_audit(&entry).await {
            Ok(e) => {
                tracing::info!(
                    audit_seq = e.seq,
                    audit_hash = %e.hash,
                    action = %e.action,
                    actor = %e.actor,
                    target = e.target.as_deref().unwrap_or(""),
                    "audit entry appended"
                );
                Some(e)
            }
            Err(err) => {
                self.telemetry.metrics.audit_errors.inc();
                tracing::error!(error = %err, action = %entry.action, actor = %entry.actor, "audit entry not appended");
                None
            }
        }
    }
}

/// How often the store is asked whether keys or run-time limits changed (another instance may
/// have changed them): a revoked key stops working everywhere within this time plus a query.
pub const STORE_POLL: Duration = Duration::from_secs(1);

/// Follows the store: when its version changes, reloads keys and run-time limits.
async fn follow_store(gw: std::sync::Weak<Gateway>) {
    let mut seen = None;
    loop {
        tokio::time::sleep(STORE_POLL).await;
        let Some(gw) = gw.upgrade() else { return };
        match gw.store.version().await {
            Ok(v) if seen.as_ref() != Some(&v) => {
                // The first round re-reads too: a change may have come after the start's read.
                if let Err(e) = gw.refresh_keys().await {
                    tracing::warn!(error = %e, "cannot re-read keys after a change in the store");
                    continue;
                }
                if let Err(e) = gw.load_runtime_limits().await {
                    tracing::warn!(error = %e, "cannot re-read run-time limits after a change in the store");
                    continue;
                }
                seen = Some(v);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "key store version not read"),
        }
    }
}

impl Gateway {
    /// Loads the limits set at run time (admin API) from the store; entries that no longer
    /// parse are skipped with a warning.
    pub async fn load_runtime_limits(&self) -> Result<(), StoreError> {
        let mut next = sluice_limits::RuntimeLimits::default();
        for stored in self.store.list_limits().await? {
            let raw = serde_json::to_value(&stored.limits)
                .and_then(serde_json::from_value::<sluice_config::RawLimits>)
                .map_err(|e| vec![e.to_string()]);
            match raw.and_then(|raw| sluice_config::parse_limits(&raw)) {
                Ok(specs) => next.set(&stored.scope, &stored.name, specs),
                Err(e) => {
                    tracing::warn!(scope = %stored.scope, name = %stored.name, errors = ?e, "stored run-time limits ignored")
                }
            }
        }
        self.runtime_limits.store(Arc::new(next));
        Ok(())
    }
}

/// How to start a gateway.
#[derive(Default)]
pub struct StartOptions {
    /// The file the config came from; enables reload (SIGHUP, file watch, admin endpoint).
    pub config_path: Option<PathBuf>,
    /// Watch the config file and SIGHUP. Off in tests that run many gateways in one process.
    pub watch: bool,
    /// Resolves `*_env` references on reload; the process environment when `None`.
    pub env: Option<EnvFn>,
    /// The admin API served on the admin listener (`sluice-admin`'s router); none answers 404.
    pub admin: Option<AdminRouter>,
}

/// Builds the admin listener's routes for a running gateway.
pub type AdminRouter = fn(Arc<Gateway>) -> axum::Router;

/// Looks up an environment variable.
pub type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A running gateway.
#[derive(Debug)]
pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    connections: Arc<Connections>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds the listeners and starts serving.
pub async fn start(config: Config, options: StartOptions) -> Result<RunningGateway, StartError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if config.counts_tokens() {
        // The tokenizer takes ~0.1 s to load; load it now, off the async threads.
        tokio::task::spawn_blocking(stream::tokens::preload_tokenizer);
    }
    let telemetry = Arc::new(
        Telemetry::new(&config.logging.access_log, config.logging.access_log_queue).map_err(StartError::AccessLog)?,
    );
    telemetry.traces.configure(config.telemetry.otlp.as_ref());
    telemetry.alert_feed.set_active(!config.alerts.rules.is_empty());
    let alert_redis = config.store.redis.as_ref().map(|r| {
        let target = sluice_store::redis::RedisTarget {
            nodes: r.nodes.clone(),
            cluster: r.cluster,
            timeout: r.timeout,
        };
        (sluice_store::redis::RedisLink::new(target), r.prefix.clone())
    });
    let (store, ledger_db): (Arc<dyn KeyStore>, _) = match &config.store.postgres_url {
        Some(url) => (
            Arc::new(PgStore::open(url.expose()).await?),
            LedgerDb::postgres(url.expose()).await?,
        ),
        None => {
            let sqlite = SqliteStore::open(&config.store.sqlite_path).await?;
            let db = LedgerDb::sqlite_pool(sqlite.pool().clone()).await?;
            (Arc::new(sqlite), db)
        }
    };
    let ledger = if config.ledger.enabled {
        Some(sluice_ledger::Ledger::open(&config.ledger, ledger_db).await?)
    } else {
        None
    };
    let tls = config.server.tls.as_ref().map(edge::tls_acceptor).transpose()?;
    let listen = config.server.listen;
    let admin_listen = config.admin.listen;
    let reuse_port = config.server.reuse_port;
    let listener = edge::listen::bind(listen, reuse_port).map_err(|source| StartError::Bind {
        what: "the API listener",
        addr: listen,
        source,
    })?;
    let admin_listener = edge::listen::bind(admin_listen, reuse_port).map_err(|source| StartError::Bind {
        what: "the admin listener",
        addr: admin_listen,
        source,
    })?;
    let (addr, admin_addr) = (listener.addr, admin_listener.addr);

    let mut live = LiveState::new();
    live.limits = sluice_limits::Limits::new(telemetry.metrics.limits_store.clone());
    live.set_telemetry(&telemetry);
    live.limits.configure(config.store.redis.as_ref()).await;
    let live_webhook_client = live.webhook_client();
    telemetry.traces.start_exporter(live_webhook_client.clone());
    let cache = stages::cache::tiers(&config, telemetry.metrics.cache_redis.clone());
    let embedder = stages::cache::embedder(&config).await?;
    let snapshot = live.build(config).await?;
    let plans = Plans::build(&snapshot);
    let telemetry_for_payloads = telemetry.clone();
    let gateway = Arc::new(Gateway {
        serving: ArcSwap::from_pointee(Serving {
            snapshot: Arc::new(snapshot),
            plans,
            keys: KeyTable::default(),
        }),
        live,
        store,
        telemetry,
        config_path: options.config_path.clone(),
        env: options
            .env
            .clone()
            .unwrap_or_else(|| Arc::new(|name: &str| std::env::var(name).ok())),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        reload_lock: tokio::sync::Mutex::new(()),
        runtime_keys: std::sync::Mutex::new(RuntimeKeys::default()),
        listings: std::sync::atomic::AtomicU64::new(0),
        runtime_limits: ArcSwap::from_pointee(sluice_limits::RuntimeLimits::default()),
        alerts: alerts::AlertSender::start(live_webhook_client),
        payloads: ledger.as_ref().map(|l| {
            let m = &telemetry_for_payloads.metrics;
            payload_log::PayloadLog::start(l.db().clone(), m.payload_written.clone(), m.payload_dropped.clone())
        }),
        ledger,
        cache,
        embedder,
    });
    gateway.refresh_keys().await?;
    gateway.load_runtime_limits().await?;
    tokio::spawn(follow_store(Arc::downgrade(&gateway)));
    if let Some(rx) = gateway.telemetry.alert_feed.take_receiver() {
        alerts::rules::start(Arc::downgrade(&gateway), rx, alert_redis);
    }
    tokio::spawn(state::sweep::sweep_every(Arc::downgrade(&gateway)));
    tokio::spawn(state::sweep::cache_sweep_every(Arc::downgrade(&gateway)));
    tokio::spawn(state::sweep::retention_every(Arc::downgrade(&gateway)));

    // Listening starts only now: from here on, new connections to these ports come to us.
    let listener = listener.listen().map_err(|source| StartError::Bind {
        what: "the API listener",
        addr,
        source,
    })?;
    let admin_listener = admin_listener.listen().map_err(|source| StartError::Bind {
        what: "the admin listener",
        addr: admin_addr,
        source,
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let connections = Arc::new(Connections::default());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(edge::serve(
        listener,
        tls,
        gateway.clone(),
        shutdown_rx.clone(),
        connections.clone(),
    )));
    let admin = options
        .admin
        .map_or_else(axum::Router::new, |router| router(gateway.clone()));
    let mut admin_stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let admin = admin.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(admin_listener, admin).with_graceful_shutdown(async move {
            shutdown::stopped(&mut admin_stop).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }));
    if options.watch
        && let Some(path) = &options.config_path
    {
        state::reload::spawn_watchers(gateway.clone(), path.clone(), shutdown_rx.clone());
    }
    gateway.ready.store(true, Ordering::Release);
    tracing::info!(%addr, %admin_addr, version = %gateway.snapshot().version, "sluice is serving");
    Ok(RunningGateway {
        gateway,
        addr,
        admin_addr,
        shutdown,
        connections,
        tasks,
    })
}

impl RunningGateway {
    /// Stops being ready, stops accepting, lets in-flight requests finish within the drain time,
    /// then stops. Returns the number of connections still open when the drain time ran out.
    pub async fn shutdown(self) -> usize {
        self.gateway.ready.store(false, Ordering::Release);
        self.gateway.draining.store(true, Ordering::Release);
        let _ = self.shutdown.send(true);
        let drain = self.gateway.snapshot().config.server.drain_timeout;
        let left = match tokio::time::timeout(drain, self.connections.drained()).await {
            Ok(()) => 0,
            Err(_) => self.connections.open(),
        };
        for t in &self.tasks {
            t.abort();
        }
        // Every request has finished or was cut off: let the log writer catch up, and ship
        // the ledger (what does not make it is shipped by the next start).
        self.gateway.telemetry.flush(Duration::from_secs(2)).await;
        self.gateway.telemetry.traces.flush(Duration::from_secs(2)).await;
        if let Some(l) = &self.gateway.ledger {
            let _ = tokio::time::timeout(Duration::from_secs(5), l.ship()).await;
        }
        left
    }

    /// Readiness turns off; the listener keeps serving (load balancers move traffic away first).
    pub fn stop_ready(&self) {
        self.gateway.ready.store(false, Ordering::Release);
    }
}
