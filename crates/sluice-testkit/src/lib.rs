//! Test harness: gateways and upstreams on port 0, driven over real HTTP.
//!
//! ```text
//! let mock = testkit::mock().await;
//! let gw = TestGateway::start(&testkit::config_with(&mock, "")).await;
//! let r = gw.chat(KEY, json!({"model": "chat", "messages": [...]})).await;
//! ```
//! Tests only: panics on setup failure are the point.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod instances;
mod scripted;
pub mod services;
pub mod valve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sluice_gateway::{RunningGateway, StartOptions};
use sluice_mock::{MockConfig, MockServer};

pub use scripted::{ScriptedStream, ScriptedUpstream, chunk};

/// The test key every default config accepts, and its id.
pub const KEY: &str = "sk-sluice-test-key-0001";
pub const KEY_ID: &str = "tester";
/// A second key limited to the `other` model alias.
pub const LIMITED_KEY: &str = "sk-sluice-test-key-limited";
/// The credential the gateway sends to the mock; must never reach a client or a log.
pub const UPSTREAM_SECRET: &str = "upstream-secret-ABC123xyz";

pub fn key_hash(key: &str) -> String {
    sluice_config::key_hash_string(key)
}

/// A mock provider on a free loopback port.
pub async fn mock() -> MockServer {
    mock_with(MockConfig::default()).await
}

pub async fn mock_with(config: MockConfig) -> MockServer {
    MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .expect("mock starts")
}

/// A mock provider with these default knobs.
pub async fn mock_knobs(knobs: sluice_mock::Knobs) -> MockServer {
    mock_with(MockConfig {
        defaults: knobs,
        ..MockConfig::default()
    })
    .await
}

/// One `deployments:` list item: an OpenAI-format deployment `name` at `base`, with `extra`
/// settings (`", max_concurrency: 2"`) appended inside its braces.
pub fn deployment_yaml(name: &str, base: &str, extra: &str) -> String {
    format!(
        "  - {{ name: {name}, provider: openai, base_url: \"{base}\", model: upstream-{name}, api_key_env: SLUICE_TEST_UPSTREAM_KEY{extra} }}\n"
    )
}

/// A config serving alias `chat` (and `other`) from `base_url`, with the test keys.
/// `extra` is appended verbatim (more routes must come *before* the default route, so use
/// [`config_with_routes`] for those).
pub fn config_for(base_url: &str, routes: &str) -> String {
    format!(
        r#"
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{base_url}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
  - {{ name: other, deployments: [mock-a] }}
routes:
{routes}
  - name: default
keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme, team: search, tier: pro }}
  - {{ id: limited, hash: "{}", models: [other] }}
"#,
        key_hash(KEY),
        key_hash(LIMITED_KEY)
    )
}

/// [`config_for`] pointed at `mock`, with extra routes placed before the default one.
pub fn config_with_routes(mock: &MockServer, routes: &str) -> String {
    config_for(&mock.base_url(), routes)
}

pub fn config_with(mock: &MockServer) -> String {
    config_for(&mock.base_url(), "")
}

/// A running gateway with its own temp dir (key store, access log, config file).
pub struct TestGateway {
    pub running: Option<RunningGateway>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The AWS credentials the test environment provides (Bedrock deployments sign with them).
pub const AWS_KEY_ID: &str = "AKIDSLUICETEST";
pub const AWS_SECRET: &str = "sluice-test-secret-access-key/EXAMPLE";

/// The bootstrap admin token of configs with `admin: { token_env: SLUICE_TEST_ADMIN_TOKEN }`.
pub const ADMIN_TOKEN: &str = "sluice-test-admin-token-0123456789";

/// The variables the default configs reference.
pub fn env(name: &str) -> Option<String> {
    match name {
        "SLUICE_TEST_UPSTREAM_KEY" => Some(UPSTREAM_SECRET.to_owned()),
        "SLUICE_TEST_WRONG_KEY" => Some("wrong-credential-999".to_owned()),
        "SLUICE_TEST_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
        "AWS_ACCESS_KEY_ID" => Some(AWS_KEY_ID.to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some(AWS_SECRET.to_owned()),
        "AWS_SESSION_TOKEN" => Some("test-session-token".to_owned()),
        "AWS_REGION" | "AWS_DEFAULT_REGION" => None,
        _ => std::env::var(name).ok(),
    }
}

/// The repository's prediction example (`examples/prediction.yaml`) pointed at `mock`, without
/// its keys, with `route_extra` (indented lines) added to its route after the model line.
pub fn prediction_example(mock: &MockServer, route_extra: &str) -> String {
    let root = mock.base_url().trim_end_matches("/v1").to_owned();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/prediction.yaml"))
        .expect("examples/prediction.yaml");
    let mut out = String::new();
    for line in example.lines() {
        if line.starts_with("server:")
            || line.starts_with("  listen:")
            || line.starts_with("store:")
            || line.starts_with("  sqlite_path:")
        {
            continue;
        }
        if line.starts_with("keys:") {
            break;
        }
        out.push_str(
            &line
                .replace("http://10.0.0.21:8000", &root)
                .replace("http://10.0.0.22:8000", &root)
                .replace("RECSYS_TOKEN", "SLUICE_TEST_UPSTREAM_KEY"),
        );
        out.push('\n');
        if line == "    model: recommender" {
            out.push_str(route_extra);
        }
    }
    out
}

/// Completes a config with test-local listeners, store and access log unless it sets them.
pub fn with_test_sections(yaml: &str, dir: &std::path::Path) -> String {
    let mut text = yaml.to_owned();
    let has = |section: &str| yaml.lines().any(|l| l.starts_with(section));
    if !has("server:") {
        text.push_str("\nserver: { listen: \"127.0.0.1:0\" }\n");
    }
    if !has("admin:") {
        text.push_str("\nadmin: { listen: \"127.0.0.1:0\" }\n");
    }
    if !has("store:") {
        text.push_str(&format!(
            "\nstore: {{ sqlite_path: \"{}\" }}\n",
            dir.join("keys.db").display()
        ));
    }
    if !has("logging:") {
        text.push_str(&format!(
            "\nlogging: {{ access_log: \"{}\" }}\n",
            dir.join("access.log").display()
        ));
    }
    text
}

impl TestGateway {
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_in(yaml, tempfile::tempdir().expect("tempdir")).await
    }

    /// Starts with the config-file watcher on.
    pub async fn start_watching(yaml: &str) -> TestGateway {
        Self::start_opts(yaml, tempfile::tempdir().expect("tempdir"), true).await
    }

    /// Starts in an existing directory (to restart over the same store).
    pub async fn start_in(yaml: &str, dir: tempfile::TempDir) -> TestGateway {
        Self::start_opts(yaml, dir, false).await
    }

    async fn start_opts(yaml: &str, dir: tempfile::TempDir, watch: bool) -> TestGateway {
        let text = with_test_sections(yaml, dir.path());
        let config_path = dir.path().join("sluice.yaml");
        std::fs::write(&config_path, &text).expect("write config");
        let config =
            sluice_config::load_str(&text, &env).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        let running = sluice_gateway::start(
            config,
            StartOptions {
                config_path: Some(config_path.clone()),
                watch,
                env: Some(std::sync::Arc::new(env)),
                admin: Some(sluice_admin::router),
            },
        )
        .await
        .expect("gateway starts");
        let client = Client::builder(TokioExecutor::new()).build_http();
        TestGateway {
            addr: running.addr,
            admin: running.admin_addr,
            running: Some(running),
            dir,
            config_path,
            client,
        }
    }

    /// Rewrites the config file (completed with this gateway's test sections).
    pub fn write_config(&self, yaml: &str) {
        let text = with_test_sections(yaml, self.dir.path());
        // Keep the listeners of the running gateway so the file stays truthful.
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// The version of the config serving now.
    pub async fn version(&self) -> String {
        self.admin(Method::GET, "/admin/config", None).await.json()["version"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> TestResponse {
        let resp = tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
            .await
            .expect("response within 20 s")
            .expect("request sent");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// POSTs raw bytes to `path` with `key` (if any) and extra headers.
    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let req = request(Method::POST, &self.url(path), key, headers, body.into());
        self.send(req).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> TestResponse {
        self.post_raw(path, Some(key), &[], body.to_string()).await
    }

    pub async fn chat(&self, key: &str, body: &Value) -> TestResponse {
        self.post("/v1/chat/completions", key, body).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> TestResponse {
        self.send(request(Method::GET, &self.url(path), key, &[], Bytes::new()))
            .await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.send(request(method, &self.admin_url(path), None, &[], body)).await
    }

    /// Starts a streamed request and returns the response with its body still arriving.
    pub async fn stream(&self, key: &str, body: &Value) -> hyper::Response<Incoming> {
        let req = request(
            Method::POST,
            &self.url("/v1/chat/completions"),
            Some(key),
            &[],
            Bytes::from(body.to_string()),
        );
        tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
            .await
            .expect("headers in time")
            .expect("sent")
    }

    /// The access log's lines, waiting until there are at least `n`.
    pub async fn log_lines(&self, n: usize) -> Vec<Value> {
        let path = self.dir.path().join("access.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Only whole lines: a read may catch the writer mid-line (a regular file's read is
            // not atomic against a concurrent write), and that line is read again next time.
            let lines: Vec<Value> = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && l.len() > 1)
                .map(|l| serde_json::from_str(l.trim_end()).expect("log line is JSON"))
                .collect();
            if lines.len() >= n || std::time::Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The raw access log text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        self.admin(Method::GET, "/metrics", None).await.text()
    }

    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir
    }
}

pub fn request(
    method: Method,
    url: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body)).expect("request builds")
}

/// Reads the next data frame of a streamed body, or `None` at its end.
pub async fn next_frame(body: &mut Incoming, within: Duration) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(within, body.frame())
            .await
            .expect("frame in time")?;
        if let Ok(data) = frame.expect("body frame").into_data() {
            return Some(data);
        }
    }
}

/// Reads the rest of a streamed body as text.
pub async fn read_all(body: Incoming) -> String {
    let bytes = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body in time")
        .expect("body");
    String::from_utf8_lossy(&bytes.to_bytes()).into_owned()
}

/// The `data:` payloads of an SSE text.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_owned))
        .collect()
}

/// Mock counters as JSON.
/// A chat completion request written on a connection of its own, with the test key; the
/// response is left unread. Dropping the stream is its client leaving.
pub async fn raw_chat(gw: &TestGateway, body: &Value) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

pub fn mock_stats(mock: &MockServer) -> Value {
    mock.stats().snapshot()
}

/// Waits until `check` holds or 5 s pass; returns whether it held.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// A webhook receiver on loopback that records what it is sent: its URL, and the requests.
pub async fn webhook_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(http::HeaderMap, bytes::Bytes)>>>,
) {
    use http_body_util::BodyExt;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/budget", listener.local_addr().unwrap());
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        store.lock().unwrap().push((parts.headers, bytes));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, got)
}
