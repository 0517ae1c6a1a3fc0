//! Sluice as separate processes (the built binary), for tests of what several instances share
//! and of what survives a crash. Each instance has its own directory and ports; it is killed
//! by PID when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::TestResponse;
use crate::services::free_port;

/// One `sluice serve` process.
pub struct Instance {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    bin: PathBuf,
    config: PathBuf,
    yaml: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The `server`, `admin` and `logging` sections for an instance in `dir`; the rest of the
/// config is the caller's.
fn sections(port: u16, admin: u16, dir: &Path) -> String {
    format!(
        "server: {{ listen: \"127.0.0.1:{port}\", drain_timeout_ms: 2000 }}\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nlogging: {{ access_log: \"{}\" }}\n",
        dir.join("access.log").display()
    )
}

impl Instance {
    /// Starts `bin serve` with `yaml` (which must not have `server`, `admin` or `logging`
    /// sections) in `dir`, and waits until it is ready.
    pub fn spawn(bin: &str, yaml: &str, dir: &Path) -> Instance {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (port, admin) = (free_port(), free_port());
        let config = dir.join("sluice.yaml");
        std::fs::write(&config, format!("{}{yaml}", sections(port, admin, dir)))
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let mut i = Instance {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            dir: dir.to_owned(),
            bin: PathBuf::from(bin),
            config,
            yaml: yaml.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        i.start();
        i
    }

    /// A hand-over: starts a second process with the same config on the same ports (with its
    /// own directory for stderr and the access log) while this one runs, and returns once the
    /// new one says it is listening.
    pub fn successor(&self, dir: &Path) -> Instance {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let config = dir.join("sluice.yaml");
        let text = format!("{}{}", sections(self.addr.port(), self.admin.port(), dir), self.yaml);
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let mut next = Instance {
            child: None,
            addr: self.addr,
            admin: self.admin,
            dir: dir.to_owned(),
            bin: self.bin.clone(),
            config,
            yaml: self.yaml.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        next.launch();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !next.stderr().contains("sluice listening on") {
            assert!(Instant::now() < deadline, "successor never listened: {}", next.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        next
    }

    /// SIGTERM: the graceful shutdown.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot signal {}", self.pid());
    }

    /// Waits up to `within` for the process to exit; its status, or `None` if it is still
    /// running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn start(&mut self) {
        self.launch();
        self.wait_ready();
    }

    fn launch(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .unwrap_or_else(|e| panic!("stderr log: {e}"));
        let child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("SLUICE_TEST_UPSTREAM_KEY", crate::UPSTREAM_SECRET)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(self.addr) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "instance at {} never became ready: {}",
                self.addr,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same config again (after [`Instance::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn send(&self, method: Method, url: String, key: Option<&str>, body: Bytes) -> TestResponse {
        self.try_send(method, url, key, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Instance::send`], but a connection error (the instance was killed) is an `Err`.
    pub async fn try_send(
        &self,
        method: Method,
        url: String,
        key: Option<&str>,
        body: Bytes,
    ) -> Result<TestResponse, String> {
        let req = crate::request(method, &url, key, &[], body);
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| format!("no answer from {url} within 30 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok(TestResponse { status, headers, body })
    }

    pub async fn try_chat(&self, key: &str, body: &Value) -> Option<TestResponse> {
        self.try_send(
            Method::POST,
            format!("http://{}/v1/chat/completions", self.addr),
            Some(key),
            Bytes::from(body.to_string()),
        )
        .await
        .ok()
    }

    /// A call to the admin API.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.send(method, format!("http://{}{path}", self.admin), None, body)
            .await
    }

    pub async fn chat(&self, key: &str, body: &Value) -> TestResponse {
        self.send(
            Method::POST,
            format!("http://{}/v1/chat/completions", self.addr),
            Some(key),
            Bytes::from(body.to_string()),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        self.send(
            Method::GET,
            format!("http://{}/metrics", self.admin),
            None,
            Bytes::new(),
        )
        .await
        .text()
    }

    /// The value of one metric series (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
