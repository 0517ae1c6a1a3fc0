//! The proxy rig: the mock, nginx and Sluice started side by side, pinned, with the request
//! bodies every proxy section sends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::options::Options;
use crate::procs::{Pinned, free_port, wait_listening};
use crate::setup::{Dir, KEY, chat_body};
use crate::streams;

const NGINX_CONF: &str = include_str!("../../../bench/nginx.conf");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Direct,
    Nginx,
    Sluice,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Sluice => "sluice",
        }
    }
}

pub(crate) struct Rig {
    _mock: Pinned,
    nginx: Option<Pinned>,
    sluice: Pinned,
    ports: [u16; 3],
    pub(crate) bodies: Vec<(usize, PathBuf)>,
    /// A streamed request the mock keeps open after its first chunk.
    pub(crate) held_body: String,
    /// A streamed chat request the mock answers in 50 chunks.
    pub(crate) stream_body: PathBuf,
    /// The same, for a model served by an Anthropic-format deployment (translated both ways).
    pub(crate) translated_body: PathBuf,
    /// Declared last, so dropped last: the spinners stop after everything else.
    _spinners: Vec<Pinned>,
    _dir: Dir,
}

impl Rig {
    pub(crate) fn port(&self, t: Target) -> u16 {
        match t {
            Target::Direct => self.ports[0],
            Target::Nginx => self.ports[1],
            Target::Sluice => self.ports[2],
        }
    }
    pub(crate) fn url(&self, t: Target) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port(t))
    }
    pub(crate) fn proc(&self, t: Target) -> Option<&Pinned> {
        match t {
            Target::Direct => None,
            Target::Nginx => self.nginx.as_ref(),
            Target::Sluice => Some(&self.sluice),
        }
    }
    /// Direct first (the reference every "added" figure subtracts), then the proxies.
    pub(crate) fn targets(&self) -> Vec<Target> {
        let mut t = vec![Target::Direct];
        if self.nginx.is_some() {
            t.push(Target::Nginx);
        }
        t.push(Target::Sluice);
        t
    }
}

pub(crate) fn start(opts: &Options) -> anyhow::Result<Rig> {
    // Room for the open-streams run: client, proxy and mock each hold one socket per stream.
    streams::raise_fd_limit(1 << 17);
    let dir = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
    let d = dir.path();
    eprintln!(
        "bench files and process logs: {} (kept with SLUICE_BENCH_KEEP=1)",
        d.display()
    );
    let (mock_port, nginx_port, sluice_port, admin_port) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let mut bodies = Vec::new();
    for &size in &opts.bodies {
        let path = d.join(format!("body-{size}.json"));
        std::fs::write(&path, chat_body(size))?;
        bodies.push((size, path));
    }
    let stream_body = d.join("stream.json");
    std::fs::write(
        &stream_body,
        serde_json::json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "x".repeat(900)}],
                           "mock": {"chunks": 50}})
        .to_string(),
    )?;
    let translated_body = d.join("stream-translated.json");
    std::fs::write(
        &translated_body,
        serde_json::json!({"model": "chat-anthropic", "stream": true, "messages": [{"role": "user", "content": "x".repeat(900)}],
                           "mock": {"chunks": 50}})
        .to_string(),
    )?;
    let held_body =
        serde_json::json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hold"}],
                                       "mock": {"chunks": 2, "chunk_delay_ms": 3_600_000}})
        .to_string();
    let mock = Pinned::spawn(
        "mock",
        opts.client_core,
        &opts.sluice,
        &["mock", "--listen", &format!("127.0.0.1:{mock_port}"), "--chunks", "8"],
        &d.join("mock.log"),
    )?;
    let redis_port = free_port()?;
    let _redis = if opts.redis {
        let port = redis_port.to_string();
        let r = Pinned::spawn(
            "redis-server",
            opts.client_core,
            Path::new("redis-server"),
            &[
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            &d.join("redis.log"),
        )?;
        wait_listening(
            std::net::SocketAddr::from(([127, 0, 0, 1], redis_port)),
            Duration::from_secs(10),
        )?;
        Some(r)
    } else {
        None
    };
    let conf = NGINX_CONF
        .replace("{{DIR}}", &d.display().to_string())
        .replace("{{PORT}}", &nginx_port.to_string())
        .replace("{{UPSTREAM}}", &format!("127.0.0.1:{mock_port}"));
    std::fs::write(d.join("nginx.conf"), conf)?;
    let nginx_conf = d.join("nginx.conf");
    let nginx = match &opts.nginx {
        Some(program) => Some(Pinned::spawn(
            "nginx",
            opts.proxy_core,
            program,
            &[
                "-c",
                &nginx_conf.display().to_string(),
                "-e",
                &d.join("nginx-error.log").display().to_string(),
            ],
            &d.join("nginx.log"),
        )?),
        None => None,
    };
    let config = format!(
        r#"server: {{ listen: "127.0.0.1:{sluice_port}", max_body_bytes: 67108864 }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{store}"{redis} }}
logging: {{ access_log: "{log}" }}
ledger: {{ enabled: {ledger} }}
deployments:
  - {{ name: mock, provider: openai, base_url: "http://127.0.0.1:{mock_port}/v1", model: bench-model }}
  - {{ name: mock-anthropic, provider: anthropic, base_url: "http://127.0.0.1:{mock_port}/v1", model: bench-model, api_key_env: SLUICE_BENCH_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock] }}
  - {{ name: chat-anthropic, deployments: [mock-anthropic] }}
routes:
  - name: bench
    match: {{ paths: ["/v1/chat/completions"] }}
    stream_idle_timeout_ms: 3600000
    forward_params: [mock]
keys:
  - {{ id: bench, hash: "{hash}", tenant: bench, team: bench{key_limits} }}
{extra}"#,
        redis = if opts.redis {
            format!(", redis: {{ url: \"redis://127.0.0.1:{redis_port}\" }}")
        } else {
            String::new()
        },
        ledger = !opts.no_ledger,
        key_limits = if opts.with_limits || opts.redis {
            ", limits: { requests_per_second: 1000000000, tokens_per_minute: 1000000000000, cost_per_day: 1000000000 }"
        } else {
            ""
        },
        extra = if opts.with_limits || opts.redis {
            "teams:\n  - { name: bench, limits: { requests_per_day: 1000000000000 } }\nprices:\n  models:\n    - { model: bench-model, input: 1, output: 2 }\n"
        } else {
            ""
        },
        store = d.join("keys.db").display(),
        log = d.join("access.log").display(),
        hash = sluice_config::key_hash_string(KEY),
    );
    std::fs::write(d.join("sluice.yaml"), config)?;
    let sluice_conf = d.join("sluice.yaml");
    let sluice = Pinned::spawn(
        "sluice",
        opts.proxy_core,
        &opts.sluice,
        &["serve", "--config", &sluice_conf.display().to_string()],
        &d.join("sluice.log"),
    )?;
    let listening = [Some(mock_port), nginx.as_ref().map(|_| nginx_port), Some(sluice_port)];
    for port in listening.into_iter().flatten() {
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20))
            .with_context(|| format!("see the logs in {}", d.display()))?;
    }
    let mut spinners = Vec::new();
    if opts.keep_awake {
        for core in [opts.proxy_core, opts.client_core] {
            spinners.push(Pinned::spawn(
                "spinner",
                core,
                Path::new("chrt"),
                &["--idle", "0", "sh", "-c", "while :; do :; done"],
                &d.join(format!("spinner-{core}.log")),
            )?);
        }
        eprintln!(
            "keeping cores {} and {} awake with idle-priority spinners",
            opts.proxy_core, opts.client_core
        );
    }
    let dir = if std::env::var_os("SLUICE_BENCH_KEEP").is_some() {
        Dir::Kept(dir.keep())
    } else {
        Dir::Temp(dir)
    };
    Ok(Rig {
        _spinners: spinners,
        _dir: dir,
        _mock: mock,
        nginx,
        sluice,
        ports: [mock_port, nginx_port, sluice_port],
        bodies,
        held_body,
        stream_body,
        translated_body,
    })
}
