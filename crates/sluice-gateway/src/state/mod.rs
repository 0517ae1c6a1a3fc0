//! The two kinds of state. A [`Snapshot`] is one validated config with its references resolved,
//! swapped whole on reload; in-flight requests keep the snapshot they started with. [`LiveState`]
//! (connection pools, round-robin cursors, embedded mocks) lives outside snapshots, keyed by
//! stable names, so a reload never resets it.

pub mod queue;
pub mod reload;
pub mod sweep;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sluice_config::{Config, MockKnobs, Price, ProviderKind, RouteConfig, Secret};
use sluice_mock::{Knobs, MockConfig, MockServer};
use sluice_providers::ProviderAdapter;
use sluice_providers::anthropic::AnthropicAdapter;
use sluice_providers::azure::AzureAdapter;
use sluice_providers::bedrock::{AwsAuth, BedrockAdapter};
use sluice_providers::gemini::GeminiAdapter;
use sluice_providers::openai::OpenAiAdapter;
use sluice_providers::prediction::PredictionAdapter;

pub use crate::upstream::client::HttpClient;

static OPENAI: OpenAiAdapter = OpenAiAdapter;
static ANTHROPIC: AnthropicAdapter = AnthropicAdapter;
static AZURE: AzureAdapter = AzureAdapter;
static GEMINI: GeminiAdapter = GeminiAdapter;
static BEDROCK: BedrockAdapter = BedrockAdapter;
static PREDICTION: PredictionAdapter = PredictionAdapter;

fn adapter_for(kind: ProviderKind) -> &'static dyn ProviderAdapter {
    match kind {
        ProviderKind::OpenAi | ProviderKind::Mock => &OPENAI,
        ProviderKind::Anthropic => &ANTHROPIC,
        ProviderKind::Azure => &AZURE,
        ProviderKind::Gemini => &GEMINI,
        ProviderKind::Bedrock => &BEDROCK,
        ProviderKind::Prediction => &PREDICTION,
    }
}

/// The credential a deployment on an embedded mock sends when it has none of its own.
const EMBEDDED_MOCK_KEY: &str = "sluice-embedded-mock";

/// `base` (`http://host:port/v1`) with its path replaced by `path`.
fn with_path(base: &Uri, path: &str) -> Uri {
    let authority = base.authority().map_or("127.0.0.1", |a| a.as_str());
    format!("http://{authority}{path}")
        .parse()
        .unwrap_or_else(|_| base.clone())
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot start the embedded mock for deployment {deployment}: {source}")]
    Mock { deployment: String, source: std::io::Error },
    #[error("embedded mock address is not a valid URL: {0}")]
    MockUrl(String),
}

pub struct DeploymentRuntime {
    pub name: Arc<str>,
    pub adapter: &'static dyn ProviderAdapter,
    pub base_url: Uri,
    pub upstream_model: Arc<str>,
    pub api_key: Option<Secret>,
    pub http2_prior_knowledge: bool,
    pub api_version: Option<String>,
    pub price: Option<Price>,
    pub aws: Option<AwsAuth>,
    /// In flight, latency, breaker: live state, kept across reloads by name.
    pub health: Arc<crate::upstream::health::DeploymentHealth>,
    /// The region it serves from (geographic routing).
    pub geo: Option<Arc<str>>,
    /// The response header reporting the server's queue depth.
    pub load_header: Option<http::HeaderName>,
    /// The request id and the caller's trace context go upstream.
    pub forward_trace: bool,
    /// `sluice_upstream_attempts{deployment, outcome="ok"}`, resolved on first use.
    pub answered: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
}

impl std::fmt::Debug for DeploymentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentRuntime")
            .field("name", &self.name)
            .field("adapter", &self.adapter.name())
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct ModelRuntime {
    pub name: Arc<str>,
    pub deployments: Vec<usize>,
    pub weights: Vec<u32>,
    pub balance: sluice_config::Balance,
    pub limits: Vec<sluice_config::LimitSpec>,
    /// Round-robin position; shared with the previous snapshot's alias of the same name.
    pub(crate) cursor: Arc<AtomicUsize>,
    /// Requests waiting for a place on a deployment at its concurrency limit, and how many may
    /// (four times the pool's limits; 0 when no deployment has one).
    pub(crate) capacity_waiting: AtomicUsize,
    pub(crate) capacity_queue: usize,
}

#[derive(Debug)]
pub struct RouteRuntime {
    pub name: Arc<str>,
    pub config: RouteConfig,
    /// Pools for this route's connect timeout: `[auto (ALPN), HTTP/2 prior knowledge]`.
    pub clients: [Arc<HttpClient>; 2],
    /// Its place in the snapshot's routes (and in the plans built with it).
    pub index: usize,
    /// Live, kept across reloads by route name.
    pub retry_budget: Arc<crate::upstream::budget::RetryBudget>,
    pub queue: Arc<crate::state::queue::RouteQueue>,
}

impl RouteRuntime {
    pub fn client(&self, h2_prior_knowledge: bool) -> &HttpClient {
        &self.clients[usize::from(h2_prior_knowledge)]
    }
}

/// One validated config, resolved against live state.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub version: Arc<str>,
    /// The price table's currency (costs are logged in micro-units of it).
    pub currency: Arc<str>,
    pub deployments: Vec<DeploymentRuntime>,
    pub models: Vec<ModelRuntime>,
    pub model_index: HashMap<String, usize>,
    pub routes: Vec<RouteRuntime>,
}

impl Snapshot {
    pub fn model(&self, name: &str) -> Option<(usize, &ModelRuntime)> {
        self.model_index.get(name).map(|&i| (i, &self.models[i]))
    }
}

type ClientKey = (Duration, bool);

/// A running metrics scraper: the URL and interval it reads, and its task.
type Scraper = ((Uri, Duration), tokio::task::JoinHandle<()>);

/// A running health check: its URL, interval and breaker settings, and its task.
type Checker = (
    (Uri, Duration, sluice_config::BreakerConfig),
    tokio::task::JoinHandle<()>,
);

/// State that outlives config snapshots.
pub struct LiveState {
    tls: rustls::ClientConfig,
    clients: Mutex<HashMap<ClientKey, Arc<HttpClient>>>,
    cursors: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    health: Mutex<HashMap<String, Arc<crate::upstream::health::DeploymentHealth>>>,
    budgets: Mutex<HashMap<String, Arc<crate::upstream::budget::RetryBudget>>>,
    queues: Mutex<HashMap<String, Arc<crate::state::queue::RouteQueue>>>,
    /// Metrics scrapers by deployment: what they read, and the task.
    scrapers: Mutex<HashMap<String, Scraper>>,
    /// Active health checks by deployment: what they check, and the task.
    checkers: Mutex<HashMap<String, Checker>>,
    /// Where breaker transitions seen by health checks are reported.
    telemetry: std::sync::OnceLock<std::sync::Weak<crate::telemetry::Telemetry>>,
    mocks: tokio::sync::Mutex<HashMap<String, (MockKnobs, Arc<MockServer>)>>,
    /// Limit counters: keyed by scope and name, so a reload never resets them.
    pub limits: sluice_limits::Limits,
}

impl std::fmt::Debug for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveState").finish_non_exhaustive()
    }
}

impl Default for LiveState {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveState {
    pub fn new() -> LiveState {
        let tls = native_tls_config().unwrap_or_else(webpki_tls_config);
        LiveState {
            tls,
            clients: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            scrapers: Mutex::new(HashMap::new()),
            checkers: Mutex::new(HashMap::new()),
            telemetry: std::sync::OnceLock::new(),
            mocks: tokio::sync::Mutex::new(HashMap::new()),
            limits: sluice_limits::Limits::default(),
        }
    }

    /// The client budget alerts are sent with (TLS, pooled).
    pub fn webhook_client(&self) -> Arc<HttpClient> {
        self.client(Duration::from_secs(5), false)
    }

    fn client(&self, connect_timeout: Duration, h2_only: bool) -> Arc<HttpClient> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((connect_timeout, h2_only))
            .or_insert_with(|| {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(connect_timeout));
                http.set_keepalive(Some(Duration::from_secs(60)));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(self.tls.clone())
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http);
                let mut builder = Client::builder(TokioExecutor::new());
                builder
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .http1_read_buf_exact_size(4096)
                    .http2_only(h2_only);
                Arc::new(builder.build(https))
            })
            .clone()
    }

    /// Every deployment's health, by name (for the admin API and metrics).
    pub fn health(&self) -> Vec<(String, Arc<crate::upstream::health::DeploymentHealth>)> {
        let map = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, h)| (k.clone(), h.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn health_of(&self, deployment: &str) -> Arc<crate::upstream::health::DeploymentHealth> {
        let mut map = self.health.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(deployment.to_owned()).or_default().clone()
    }

    fn budget(&self, route: &str) -> Arc<crate::upstream::budget::RetryBudget> {
        let mut map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(route.to_owned()).or_default().clone()
    }

    /// Where health checks report breaker transitions.
    pub fn set_telemetry(&self, t: &Arc<crate::telemetry::Telemetry>) {
        let _ = self.telemetry.set(Arc::downgrade(t));
    }

    /// Starts (or restarts, when its settings changed) each deployment's active health check,
    /// and stops the ones no longer configured.
    fn follow_health_checks(&self, config: &Config, deployments: &[DeploymentRuntime]) {
        let wanted: HashMap<&str, (Uri, Duration)> = config
            .deployments
            .iter()
            .zip(deployments)
            .filter_map(|(d, rt)| {
                let (path, every) = d.health_check.as_ref()?;
                let scheme = rt.base_url.scheme_str().unwrap_or("http");
                let authority = rt.base_url.authority()?.as_str();
                let url: Uri = format!("{scheme}://{authority}{path}").parse().ok()?;
                Some((d.name.as_str(), (url, *every)))
            })
            .collect();
        let mut checkers = self.checkers.lock().unwrap_or_else(|p| p.into_inner());
        checkers.retain(|name, (what, task)| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|(u, e)| *u == what.0 && *e == what.1 && config.breaker == what.2);
            if !keep {
                task.abort();
            }
            keep
        });
        let telemetry = self.telemetry.get().cloned().unwrap_or_default();
        for (name, (url, every)) in wanted {
            if checkers.contains_key(name) {
                continue;
            }
            let health = Arc::downgrade(&self.health_of(name));
            let client = self.client(Duration::from_secs(1), false);
            let task = tokio::spawn(crate::upstream::scrape::check(
                client,
                url.clone(),
                every,
                config.breaker,
                health,
                telemetry.clone(),
                Arc::from(name),
            ));
            checkers.insert(name.to_owned(), ((url, every, config.breaker), task));
        }
    }

    /// Starts a scraper for each deployment's metrics URL, and stops the ones no longer
    /// configured.
    fn follow_metrics(&self, config: &Config) {
        let mut scrapers = self.scrapers.lock().unwrap_or_else(|p| p.into_inner());
        scrapers.retain(|name, (what, task)| {
            let keep = config
                .deployments
                .iter()
                .any(|d| &d.name == name && d.metrics.as_ref() == Some(what));
            if !keep {
                task.abort();
            }
            keep
        });
        for d in &config.deployments {
            let Some((url, every)) = &d.metrics else { continue };
            if scrapers.contains_key(&d.name) {
                continue;
            }
            let health = Arc::downgrade(&self.health_of(&d.name));
            let client = self.client(Duration::from_secs(1), false);
            let task = tokio::spawn(crate::upstream::scrape::run(client, url.clone(), *every, health));
            scrapers.insert(d.name.clone(), ((url.clone(), *every), task));
        }
    }

    fn queue(&self, route: &str) -> Arc<crate::state::queue::RouteQueue> {
        let mut map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(route.to_owned()).or_default().clone()
    }

    fn cursor(&self, alias: &str) -> Arc<AtomicUsize> {
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.entry(alias.to_owned()).or_default().clone()
    }

    async fn embedded_mock(&self, deployment: &str, knobs: &MockKnobs) -> Result<Uri, BuildError> {
        let mut mocks = self.mocks.lock().await;
        if let Some((k, server)) = mocks.get(deployment)
            && k == knobs
        {
            return server
                .base_url()
                .parse()
                .map_err(|_| BuildError::MockUrl(server.base_url()));
        }
        let config = MockConfig {
            defaults: Knobs {
                latency_ms: knobs.latency_ms,
                ttft_ms: knobs.ttft_ms,
                chunk_delay_ms: knobs.chunk_delay_ms,
                chunks: knobs.chunks,
                ..Knobs::default()
            },
            api_key: None, // any key; Anthropic's format still wants one sent
            aws: None,
        };
        let server = MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .map_err(|source| BuildError::Mock {
                deployment: deployment.to_owned(),
                source,
            })?;
        let url = server.base_url();
        mocks.insert(deployment.to_owned(), (knobs.clone(), Arc::new(server)));
        url.parse().map_err(|_| BuildError::MockUrl(url))
    }

    /// Resolves `config` against live state: pools, cursors and embedded mocks are reused by name.
    pub async fn build(&self, config: Config) -> Result<Snapshot, BuildError> {
        let mut deployments = Vec::with_capacity(config.deployments.len());
        for d in &config.deployments {
            let (base_url, embedded) = match &d.base_url {
                Some(u) => (u.clone(), false),
                None => (self.embedded_mock(&d.name, &d.mock).await?, true),
            };
            // An embedded mock in another provider's format: its address for that format, and
            // the credential it expects (Anthropic's API always wants a key).
            let base_url = match (embedded, d.provider) {
                (true, ProviderKind::Gemini) => with_path(&base_url, "/v1beta"),
                (true, ProviderKind::Azure) => with_path(&base_url, ""),
                _ => base_url,
            };
            let api_key = match (&d.api_key, embedded) {
                (None, true) => Some(Secret::new(EMBEDDED_MOCK_KEY)),
                (key, _) => key.clone(),
            };
            deployments.push(DeploymentRuntime {
                name: Arc::from(d.name.as_str()),
                adapter: adapter_for(d.provider),
                base_url,
                upstream_model: Arc::from(d.upstream_model.as_str()),
                api_key,
                http2_prior_knowledge: d.http2_prior_knowledge,
                api_version: d.api_version.clone(),
                price: d.price,
                aws: d.aws.as_ref().map(|a| AwsAuth {
                    access_key_id: a.access_key_id.clone(),
                    secret_access_key: a.secret_access_key.expose().to_owned(),
                    session_token: a.session_token.as_ref().map(|t| t.expose().to_owned()),
                    region: a.region.clone(),
                }),
                health: {
                    let h = self.health_of(&d.name);
                    h.set_limit(d.max_concurrency);
                    h
                },
                geo: d.geo.as_deref().map(Arc::from),
                load_header: d.load_header.clone(),
                answered: std::sync::OnceLock::new(),
                forward_trace: d.forward_trace,
            });
        }
        self.follow_metrics(&config);
        self.follow_health_checks(&config, &deployments);
        let models: Vec<ModelRuntime> = config
            .models
            .iter()
            .map(|m| ModelRuntime {
                name: Arc::from(m.name.as_str()),
                deployments: m.deployments.clone(),
                weights: m.weights.clone(),
                balance: m.balance,
                limits: m.limits.clone(),
                cursor: self.cursor(&m.name),
                capacity_waiting: AtomicUsize::new(0),
                capacity_queue: m
                    .deployments
                    .iter()
                    .filter_map(|&d| config.deployments[d].max_concurrency)
                    .map(|n| n as usize * 4)
                    .sum(),
            })
            .collect();
        let model_index = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.to_string(), i))
            .collect();
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let queue = self.queue(&r.name);
                RouteRuntime {
                    name: Arc::from(r.name.as_str()),
                    config: r.clone(),
                    clients: [
                        self.client(r.policy.connect_timeout, false),
                        self.client(r.policy.connect_timeout, true),
                    ],
                    retry_budget: self.budget(&r.name),
                    index,
                    queue,
                }
            })
            .collect();
        Ok(Snapshot {
            version: Arc::from(config.version.as_str()),
            currency: Arc::from(config.currency.as_str()),
            config: Arc::new(config),
            deployments,
            models,
            model_index,
            routes,
        })
    }
}

fn native_tls_config() -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return None;
    }
    Some(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn webpki_tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}
