//! The built-in mock provider. It speaks OpenAI's wire format (chat, completions, embeddings,
//! models; streaming and not) and Anthropic's Messages, and injects the faults real providers produce: any status, 429
//! with `Retry-After`, stalls, connections dropped mid-stream, malformed JSON. It counts what it
//! sees — requests, completions, and requests the client cancelled — so tests can assert that
//! a cancel reached the upstream.
//!
//! It is a test and demo tool: never a place for gateway logic.

mod anthropic;
mod bedrock;
mod body;
mod gemini;
mod generate;
mod knobs;
mod kserve;
mod responses;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use knobs::Knobs;

pub type MockBody = BoxBody<Bytes, std::io::Error>;

/// How a mock server behaves when a request does not say otherwise.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    pub defaults: Knobs,
    /// When set, requests must carry `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// When set, Bedrock requests must carry a valid SigV4 signature by this
    /// (access key id, secret access key).
    pub aws: Option<(String, String)>,
}

/// A request as the mock received it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Counters, readable while the mock runs.
#[derive(Debug, Default)]
pub struct MockStats {
    pub requests: AtomicU64,
    pub completed: AtomicU64,
    /// Requests whose client went away before the mock finished answering.
    pub cancelled: AtomicU64,
    /// Connections the mock dropped on purpose (`drop_after_chunks`).
    pub dropped: AtomicU64,
    pub in_flight: AtomicI64,
    /// The most requests ever in flight at once.
    pub peak_in_flight: AtomicI64,
    /// Requests waiting for a slot (`slots`).
    pub waiting: AtomicI64,
    recent: Mutex<VecDeque<RecordedRequest>>,
    /// The `x-request-id` of every request answered in full.
    completed_ids: Mutex<Vec<String>>,
}

const RECENT: usize = 256;

impl MockStats {
    /// Request ids (`x-request-id`) of the requests answered in full.
    pub fn completed_ids(&self) -> Vec<String> {
        self.completed_ids.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn record(&self, r: RecordedRequest) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut q) = self.recent.lock() {
            if q.len() == RECENT {
                q.pop_front();
            }
            q.push_back(r);
        }
    }
    /// The most recent requests, oldest first.
    pub fn recent(&self) -> Vec<RecordedRequest> {
        self.recent
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
    pub fn snapshot(&self) -> serde_json::Value {
        json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "completed": self.completed.load(Ordering::Relaxed),
            "cancelled": self.cancelled.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "peak_in_flight": self.peak_in_flight.load(Ordering::Relaxed),
        })
    }
}

/// Counts a request in flight; if dropped before `complete`, the client cancelled it.
pub(crate) struct Attempt {
    stats: Arc<MockStats>,
    done: bool,
    request_id: Option<String>,
}

impl Attempt {
    fn new(stats: Arc<MockStats>, headers: &http::HeaderMap) -> Attempt {
        let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Attempt {
            stats,
            done: false,
            request_id,
        }
    }
    pub(crate) fn complete(mut self) {
        self.done = true;
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = self.request_id.take()
            && let Ok(mut ids) = self.stats.completed_ids.lock()
        {
            ids.push(id);
        }
    }
    pub(crate) fn dropped_on_purpose(mut self) {
        self.done = true;
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: MockConfig,
    stats: Arc<MockStats>,
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// A running mock server; dropped or `shutdown`, it stops accepting.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    stats: Arc<MockStats>,
    accept: JoinHandle<()>,
}

impl MockServer {
    /// Binds `addr` (port 0 for any) and serves until shut down.
    pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, config))
    }

    pub fn serve(listener: TcpListener, config: MockConfig) -> MockServer {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let stats = Arc::new(MockStats::default());
        let slots = config
            .defaults
            .slots
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.clamp(1, 1 << 20) as usize)));
        let shared = Arc::new(Shared {
            config,
            stats: stats.clone(),
            slots,
        });
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, shared.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockServer { addr, stats, accept }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The base URL a deployment should use: `http://addr/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn stats(&self) -> &Arc<MockStats> {
        &self.stats
    }
    pub fn shutdown(&self) {
        self.accept.abort();
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub(crate) fn full(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<MockBody> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<MockBody> {
    full(status, v.to_string(), "application/json")
}

fn recorded(parts: &http::request::Parts, path: &str, body: &[u8]) -> RecordedRequest {
    let path = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    RecordedRequest {
        method: parts.method.to_string(),
        path,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// Serves one request: with `slots`, a POST waits for a slot and holds it until its body ends;
/// every answer says how many are waiting (`x-queue-depth`).
async fn serve(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<MockBody>, std::io::Error> {
    let permit = match &shared.slots {
        Some(slots) if req.method() == Method::POST => {
            // Counted as waiting until a slot is free or the client has gone.
            struct Waiting<'a>(&'a AtomicI64);
            impl Drop for Waiting<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::Relaxed);
                }
            }
            shared.stats.waiting.fetch_add(1, Ordering::Relaxed);
            let _waiting = Waiting(&shared.stats.waiting);
            slots.clone().acquire_owned().await.ok()
        }
        _ => None,
    };
    let mut resp = handle(req, shared.clone()).await?;
    resp.headers_mut()
        .insert("x-queue-depth", http::HeaderValue::from(waiting(&shared)));
    Ok(match permit {
        Some(permit) => resp.map(|b| {
            b.map_err(move |e| {
                let _held = &permit;
                e
            })
            .boxed()
        }),
        None => resp,
    })
}

/// Requests waiting for a slot, plus the `report_waiting` knob.
fn waiting(shared: &Shared) -> u64 {
    shared.stats.waiting.load(Ordering::Relaxed).max(0) as u64 + shared.config.defaults.report_waiting.unwrap_or(0)
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<MockBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    match (&parts.method, path.as_str()) {
        (&Method::GET, "/v1/models") => Ok(json_response(
            StatusCode::OK,
            &json!({ "object": "list", "data": [{ "id": "mock", "object": "model", "created": 0, "owned_by": "sluice-mock" }] }),
        )),
        (&Method::GET, "/mock/stats") => Ok(json_response(StatusCode::OK, &shared.stats.snapshot())),
        (&Method::GET, "/mock/requests") => Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(shared.stats.recent()).unwrap_or_default(),
        )),
        (&Method::GET, "/health") => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        (&Method::GET, "/metrics") => {
            // A model server's load, as vLLM publishes it.
            let running = shared.stats.in_flight.load(Ordering::Relaxed).max(0);
            let waiting = waiting(&shared);
            let text = format!(
                "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"mock\"}} {running}\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{model_name=\"mock\"}} {waiting}\n# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{{model_name=\"mock\"}} 0.1\n"
            );
            Ok(full(StatusCode::OK, text, "text/plain; version=0.0.4"))
        }
        // An OTLP/HTTP sink (benchmarks of the trace exporter): read and accepted, not kept.
        (&Method::POST, "/v1/traces") => {
            body.collect().await.map_err(std::io::Error::other)?;
            Ok(full(StatusCode::OK, Bytes::new(), "application/x-protobuf"))
        }
        (&Method::POST, "/v1/messages") => {
            let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            shared.stats.record(recorded(&parts, &path, &bytes));
            anthropic::respond(
                &parts.headers,
                shared.config.api_key.as_deref(),
                &bytes,
                &shared.config.defaults,
                Attempt::new(shared.stats.clone(), &parts.headers),
            )
            .await
        }
        (&Method::POST, p) if kserve::route(p).is_some() => {
            let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            shared.stats.record(recorded(&parts, &path, &bytes));
            if let Some(expected) = &shared.config.api_key {
                let got = parts
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if got != Some(format!("Bearer {expected}").as_str()) {
                    return Ok(json_response(
                        StatusCode::UNAUTHORIZED,
                        &json!({"error": "unauthorized"}),
                    ));
                }
            }
            let model = kserve::route(p).unwrap_or_default();
            Ok(kserve::respond(
                model,
                &bytes,
                &shared.config.defaults,
                Attempt::new(shared.stats.clone(), &parts.headers),
            )
            .await)
        }
        (&Method::POST, p) if bedrock::route(p).is_some() => {
            let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            shared.stats.record(recorded(&parts, &path, &bytes));
            let (_, op) = bedrock::route(p).unwrap_or_default();
            let pq = parts.uri.path_and_query().map_or(p, |pq| pq.as_str());
            bedrock::respond(
                parts.method.as_str(),
                pq,
                &parts.headers,
                shared.config.aws.as_ref(),
                op,
                &bytes,
                &shared.config.defaults,
                Attempt::new(shared.stats.clone(), &parts.headers),
            )
            .await
        }
        (&Method::POST, p) if gemini::route(p).is_some() => {
            let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            shared.stats.record(recorded(&parts, &path, &bytes));
            let (model, method) = gemini::route(p).unwrap_or_default();
            gemini::respond(
                &parts.headers,
                parts.uri.query(),
                shared.config.api_key.as_deref(),
                model,
                method,
                &bytes,
                &shared.config.defaults,
                Attempt::new(shared.stats.clone(), &parts.headers),
            )
            .await
        }
        (&Method::POST, p) if p.starts_with("/openai/deployments/") => {
            let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            shared.stats.record(recorded(&parts, &path, &bytes));
            let op = p.splitn(5, '/').nth(4).unwrap_or("");
            let Some(op_path) = (match op {
                "chat/completions" => Some("/v1/chat/completions"),
                "completions" => Some("/v1/completions"),
                "embeddings" => Some("/v1/embeddings"),
                _ => None,
            }) else {
                return Ok(json_response(
                    StatusCode::NOT_FOUND,
                    &responses::error_body(404, "Resource not found"),
                ));
            };
            let has_version = parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=") && kv.len() > 12));
            if !has_version {
                return Ok(json_response(
                    StatusCode::NOT_FOUND,
                    &responses::error_body(404, "Resource not found"),
                ));
            }
            if let Some(expected) = &shared.config.api_key {
                let got = parts.headers.get("api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
                if got != expected {
                    return Ok(json_response(
                        StatusCode::UNAUTHORIZED,
                        &responses::error_body(
                            401,
                            "Access denied due to invalid subscription key or wrong API endpoint.",
                        ),
                    ));
                }
            }
            generate::respond(
                op_path,
                &bytes,
                &shared.config.defaults,
                Attempt::new(shared.stats.clone(), &parts.headers),
            )
            .await
        }
        (&Method::POST, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings") => {
            let bytes = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            shared.stats.record(recorded(&parts, &path, &bytes));
            if let Some(expected) = &shared.config.api_key {
                let got = parts
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if got != format!("Bearer {expected}") {
                    let shown = got.strip_prefix("Bearer ").unwrap_or(got);
                    let tail: String = shown
                        .chars()
                        .rev()
                        .take(4)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    let msg = format!(
                        "Incorrect API key provided: {}****{tail}.",
                        shown.chars().take(8).collect::<String>()
                    );
                    return Ok(json_response(
                        StatusCode::UNAUTHORIZED,
                        &responses::error_body(401, &msg),
                    ));
                }
            }
            generate::respond(
                &path,
                &bytes,
                &shared.config.defaults,
                Attempt::new(shared.stats.clone(), &parts.headers),
            )
            .await
        }
        _ => Ok(json_response(
            StatusCode::NOT_FOUND,
            &responses::error_body(404, &format!("no such mock endpoint: {} {path}", parts.method)),
        )),
    }
}
