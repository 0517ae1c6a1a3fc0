//! The proxy rig: the mock, nginx and Sluice started side by side, pinned, with the request
//! bodies every proxy section sends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::options::{Options, Upstream};
use crate::procs::{Pinned, free_port, wait_listening};
use crate::setup::{Dir, KEY, chat_body};
use crate::streams;

const NGINX_CONF: &str = include_str!("../../../bench/nginx.conf");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Direct,
    Nginx,
    /// hyper's server and pooled client forwarding as-is: a Rust proxy hop with no gateway work.
    Bare,
    Sluice,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Bare => "bare",
            Target::Sluice => "sluice",
        }
    }
}

pub(crate) struct Rig {
    _mock: Pinned,
    _canned: Option<Pinned>,
    nginx: Option<Pinned>,
    bare: Pinned,
    sluice: Pinned,
    ports: [u16; 4],
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
            Target::Bare => self.ports[2],
            Target::Sluice => self.ports[3],
        }
    }
    pub(crate) fn url(&self, t: Target) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port(t))
    }
    pub(crate) fn proc(&self, t: Target) -> Option<&Pinned> {
        match t {
            Target::Direct => None,
            Target::Nginx => self.nginx.as_ref(),
            Target::Bare => Some(&self.bare),
            Target::Sluice => Some(&self.sluice),
        }
    }
    /// Direct first (the reference every "added" figure subtracts), then the proxies.
    pub(crate) fn targets(&self) -> Vec<Target> {
        let mut t = vec![Target::Direct];
        if self.nginx.is_some() {
            t.push(Target::Nginx);
        }
        t.push(Target::Bare);
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
    let (bare_port, canned_port) = (free_port()?, free_port()?);
    let mut bodies = Vec::new();
    for &size in &opts.bodies {
        let path = d.join(format!("body-{size}.json"));
        std::fs::write(&path, chat_body(size, &opts.model))?;
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
        &opts.tools,
        &["mock", "--listen", &format!("127.0.0.1:{mock_port}"), "--chunks", "8"],
        &d.join("mock.log"),
    )?;
    let canned = match opts.upstream {
        Upstream::Mock => None,
        Upstream::Canned => Some(Pinned::spawn(
            "canned upstream",
            opts.client_core,
            &opts.tools,
            &[
                "bench-reference",
                "upstream",
                "--listen",
                &format!("127.0.0.1:{canned_port}"),
            ],
            &d.join("canned.log"),
        )?),
    };
    // What answers behind every proxy (and is measured directly as the reference).
    let upstream_port = if canned.is_some() { canned_port } else { mock_port };
    let bare = Pinned::spawn(
        "bare proxy",
        opts.proxy_core,
        &opts.tools,
        &[
            "bench-reference",
            "proxy",
            "--listen",
            &format!("127.0.0.1:{bare_port}"),
            "--upstream",
            &format!("127.0.0.1:{upstream_port}"),
        ],
        &d.join("bare.log"),
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
        .replace("{{UPSTREAM}}", &format!("127.0.0.1:{upstream_port}"));
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
    let builtin = || {
        format!(
            r#"server: {{ listen: "127.0.0.1:{sluice_port}", max_body_bytes: 67108864 }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{store}"{redis} }}
logging: {{ access_log: "{log}" }}
ledger: {{ enabled: {ledger} }}
deployments:
  - {{ name: mock, provider: openai, base_url: "http://127.0.0.1:{upstream_port}/v1", model: bench-model }}
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
        )
    };
    let config = match &opts.config {
        None => builtin(),
        Some(path) => fill(
            &std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
            sluice_port,
            admin_port,
            d,
            upstream_port,
        ),
    };
    std::fs::write(d.join("sluice.yaml"), config)?;
    let sluice_conf = d.join("sluice.yaml");
    let sluice = Pinned::spawn(
        "sluice",
        opts.proxy_core,
        &opts.sluice,
        &["serve", "--config", &sluice_conf.display().to_string()],
        &d.join("sluice.log"),
    )?;
    let listening = [
        Some(mock_port),
        canned.as_ref().map(|_| canned_port),
        nginx.as_ref().map(|_| nginx_port),
        Some(bare_port),
        Some(sluice_port),
    ];
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
        _canned: canned,
        nginx,
        bare,
        sluice,
        ports: [upstream_port, nginx_port, bare_port, sluice_port],
        bodies,
        held_body,
        stream_body,
        translated_body,
    })
}

/// A `--config` template with the run's ports, directory, upstream and key hash filled in.
fn fill(template: &str, port: u16, admin_port: u16, dir: &Path, upstream_port: u16) -> String {
    template
        .replace("{{PORT}}", &port.to_string())
        .replace("{{ADMIN_PORT}}", &admin_port.to_string())
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{UPSTREAM}}", &format!("http://127.0.0.1:{upstream_port}/v1"))
        .replace("{{KEY_HASH}}", &sluice_config::key_hash_string(KEY))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The configs the benchmark rows name load once filled in (a template that stopped
    /// validating would only show when someone ran the benchmark).
    #[test]
    fn the_shipped_bench_configs_load_once_filled_in() {
        for (name, template) in [
            ("default", include_str!("../../../bench/default.yaml")),
            ("every-stage", include_str!("../../../bench/every-stage.yaml")),
        ] {
            let text = fill(template, 18080, 18081, Path::new("/tmp/sluice-bench-test"), 18090);
            assert!(!text.contains("{{"), "{name}: {text}");
            let config = sluice_config::load_str(&text, &|_| None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(config.models.iter().any(|m| m.name == "mock-gpt"), "{name}");
        }
    }
}
