//! `sluice bench`: the reproducible benchmark. In one run, against the mock provider: direct to
//! the mock, through nginx as a bare reverse proxy (the price of one proxy hop), and through
//! Sluice with key auth, routing, the access log and metrics on. The proxy under test is pinned
//! to one core, mock and load generator to the other; load is open-loop with coordinated-
//! omission correction (`oha -q RATE --latency-correction`); every figure is the median of
//! several runs with min–max, and every run records per-core CPU so a client-bound run shows.
//!
//! It starts only its own processes and stops them by PID; everything listens on loopback.

pub mod load;
pub mod procs;
pub mod report;
pub mod streams;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::load::{Load, Outcome};
use crate::procs::{CoreTimes, Pinned, free_port, wait_listening};
use crate::report::{Runs, count, micros, percent, table};

const NGINX_CONF: &str = include_str!("../../../bench/nginx.conf");
const KEY: &str = "sk-sluice-bench-0000000000000000000000000000";

#[derive(Debug, Clone)]
pub struct Options {
    pub sluice: PathBuf,
    pub nginx: PathBuf,
    pub oha: PathBuf,
    pub runs: usize,
    pub duration: Duration,
    pub rates: Vec<u32>,
    pub bodies: Vec<usize>,
    /// Connections for the throughput ceiling (closed loop).
    pub connections: u32,
    pub proxy_core: usize,
    pub client_core: usize,
    /// Streams held open for the memory figure (0 skips it).
    pub open_streams: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Nginx,
    Sluice,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Sluice => "sluice",
        }
    }
}

enum Dir {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Kept(#[allow(dead_code)] PathBuf),
}

struct Rig {
    _dir: Dir,
    _mock: Pinned,
    nginx: Pinned,
    sluice: Pinned,
    ports: [u16; 3],
    bodies: Vec<(usize, PathBuf)>,
    /// A streamed request the mock keeps open after its first chunk.
    held_body: String,
    /// A streamed chat request the mock answers in 50 chunks.
    stream_body: PathBuf,
}

impl Rig {
    fn url(&self, t: Target) -> String {
        let port = match t {
            Target::Direct => self.ports[0],
            Target::Nginx => self.ports[1],
            Target::Sluice => self.ports[2],
        };
        format!("http://127.0.0.1:{port}/v1/chat/completions")
    }
    fn proc(&self, t: Target) -> Option<&Pinned> {
        match t {
            Target::Direct => None,
            Target::Nginx => Some(&self.nginx),
            Target::Sluice => Some(&self.sluice),
        }
    }
}

fn chat_body(size: usize) -> String {
    let base = serde_json::json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": ""}]})
        .to_string();
    let pad = size.saturating_sub(base.len());
    serde_json::json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "x".repeat(pad)}]})
        .to_string()
}

fn start(opts: &Options) -> anyhow::Result<Rig> {
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
    let conf = NGINX_CONF
        .replace("{{DIR}}", &d.display().to_string())
        .replace("{{PORT}}", &nginx_port.to_string())
        .replace("{{UPSTREAM}}", &format!("127.0.0.1:{mock_port}"));
    std::fs::write(d.join("nginx.conf"), conf)?;
    let nginx_conf = d.join("nginx.conf");
    let nginx = Pinned::spawn(
        "nginx",
        opts.proxy_core,
        &opts.nginx,
        &[
            "-c",
            &nginx_conf.display().to_string(),
            "-e",
            &d.join("nginx-error.log").display().to_string(),
        ],
        &d.join("nginx.log"),
    )?;
    let config = format!(
        r#"server: {{ listen: "127.0.0.1:{sluice_port}", max_body_bytes: 67108864 }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{store}" }}
logging: {{ access_log: "{log}" }}
deployments:
  - {{ name: mock, provider: openai, base_url: "http://127.0.0.1:{mock_port}/v1", model: bench-model }}
models:
  - {{ name: chat, deployments: [mock] }}
routes:
  - name: bench
    match: {{ paths: ["/v1/chat/completions"] }}
    stream_idle_timeout_ms: 3600000
keys:
  - {{ id: bench, hash: "{hash}", tenant: bench }}
"#,
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
    for port in [mock_port, nginx_port, sluice_port] {
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20))
            .with_context(|| format!("see the logs in {}", d.display()))?;
    }
    let dir = if std::env::var_os("SLUICE_BENCH_KEEP").is_some() {
        Dir::Kept(dir.keep())
    } else {
        Dir::Temp(dir)
    };
    Ok(Rig {
        _dir: dir,
        _mock: mock,
        nginx,
        sluice,
        ports: [mock_port, nginx_port, sluice_port],
        bodies,
        held_body,
        stream_body,
    })
}

/// One measured load run: the outcome, the target's CPU per request, and per-core busy shares.
struct Measured {
    outcome: Outcome,
    cpu_per_request_us: Option<f64>,
    proxy_busy: f64,
    client_busy: f64,
}

fn measure(
    rig: &Rig,
    opts: &Options,
    t: Target,
    body: &Path,
    rate: Option<u32>,
    connections: u32,
) -> anyhow::Result<Measured> {
    let cores0 = CoreTimes::read()?;
    let cpu0 = rig.proc(t).map(Pinned::cpu_time).transpose()?;
    let outcome = load::run(&Load {
        oha: &opts.oha,
        core: opts.client_core,
        url: rig.url(t),
        body,
        key: KEY,
        rate,
        connections,
        duration: opts.duration,
    })?;
    let cpu1 = rig.proc(t).map(Pinned::cpu_time).transpose()?;
    let busy = cores0.busy_since(&CoreTimes::read()?);
    let cpu_per_request_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64() * 1e6 / outcome.ok_requests().max(1) as f64),
        _ => None,
    };
    Ok(Measured {
        outcome,
        cpu_per_request_us,
        proxy_busy: busy.get(opts.proxy_core).copied().unwrap_or(0.0),
        client_busy: busy.get(opts.client_core).copied().unwrap_or(0.0),
    })
}

#[derive(Default)]
struct Cell {
    p50: Runs,
    p99: Runs,
    added_p50: Runs,
    added_p99: Runs,
    cpu: Runs,
    client_busy: Runs,
}

/// Runs the whole benchmark; progress goes to stderr, the Markdown report is returned.
pub fn run(opts: &Options) -> anyhow::Result<String> {
    let rig = start(opts)?;
    let targets = [Target::Direct, Target::Nginx, Target::Sluice];
    let latency_runs = rig.bodies.len() * opts.rates.len() * opts.runs * targets.len();
    let ceiling_runs = rig.bodies.len() * opts.runs * 2;
    let stream_runs = opts.runs * targets.len();
    let total = latency_runs + ceiling_runs + stream_runs;
    let mut step = 0;
    let mut progress = |what: String| {
        step += 1;
        eprintln!("[{step:>3}/{total}] {what}");
    };

    // Warm every path (pools, caches) before measuring.
    for t in targets {
        let body = &rig.bodies[0].1;
        let warm = Options {
            duration: Duration::from_secs(1),
            ..opts.clone()
        };
        measure(&rig, &warm, t, body, None, 8)?;
    }

    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for (size, body) in &rig.bodies {
        for &rate in &opts.rates {
            let mut cells: Vec<Cell> = targets.iter().map(|_| Cell::default()).collect();
            for run in 1..=opts.runs {
                let mut direct = (f64::NAN, f64::NAN);
                for (i, &t) in targets.iter().enumerate() {
                    let m = measure(&rig, opts, t, body, Some(rate), 32)?;
                    let (p50, p99) = (m.outcome.p50_us(), m.outcome.p99_us());
                    if t == Target::Direct {
                        direct = (p50, p99);
                    }
                    let c = &mut cells[i];
                    c.p50.push(p50);
                    c.p99.push(p99);
                    c.added_p50.push(p50 - direct.0);
                    c.added_p99.push(p99 - direct.1);
                    if let Some(cpu) = m.cpu_per_request_us {
                        c.cpu.push(cpu);
                    }
                    c.client_busy.push(m.client_busy);
                    progress(format!(
                        "{:<6} {:>6} B @ {rate}/s run {run}: p50 {} p99 {} cpu/req {} | core{} {} core{} {}",
                        t.name(),
                        size,
                        micros(p50),
                        micros(p99),
                        m.cpu_per_request_us.map_or("-".to_owned(), micros),
                        opts.proxy_core,
                        percent(m.proxy_busy),
                        opts.client_core,
                        percent(m.client_busy),
                    ));
                }
            }
            let [d, n, s] = [&cells[0], &cells[1], &cells[2]];
            rows.push(vec![
                format!("{size} B"),
                format!("{rate}/s"),
                d.p50.show(micros),
                d.p99.show(micros),
                n.added_p50.show(micros),
                n.added_p99.show(micros),
                s.added_p50.show(micros),
                s.added_p99.show(micros),
                ratio(&s.added_p50, &n.added_p50),
            ]);
            cpu_rows.push(vec![
                format!("{size} B"),
                format!("{rate}/s"),
                n.cpu.show(micros),
                s.cpu.show(micros),
                ratio(&s.cpu, &n.cpu),
                d.client_busy.show(percent),
            ]);
        }
    }

    // Time to first byte of a 50-chunk stream, open loop at the lowest rate.
    let stream_rate = opts.rates.iter().copied().min().unwrap_or(100);
    let mut ttfb: Vec<(Runs, Runs, Runs, Runs)> = targets.iter().map(|_| Default::default()).collect();
    for run in 1..=opts.runs {
        let mut direct = (f64::NAN, f64::NAN);
        for (i, &t) in targets.iter().enumerate() {
            let m = measure(&rig, opts, t, &rig.stream_body, Some(stream_rate), 32)?;
            let fb = m.outcome.first_byte_percentiles.clone();
            let p50 = fb.as_ref().and_then(|p| p.p50).unwrap_or(f64::NAN) * 1e6;
            let p99 = fb.as_ref().and_then(|p| p.p99).unwrap_or(f64::NAN) * 1e6;
            if t == Target::Direct {
                direct = (p50, p99);
            }
            ttfb[i].0.push(p50);
            ttfb[i].1.push(p99);
            ttfb[i].2.push(p50 - direct.0);
            ttfb[i].3.push(p99 - direct.1);
            progress(format!(
                "{:<6} 50-chunk stream @ {stream_rate}/s run {run}: first byte p50 {} p99 {}",
                t.name(),
                micros(p50),
                micros(p99)
            ));
        }
    }
    let stream_rows: Vec<Vec<String>> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (p50, p99, a50, a99) = &ttfb[i];
            let added = |r: &Runs| {
                if *t == Target::Direct {
                    "–".to_owned()
                } else {
                    r.show(micros)
                }
            };
            vec![
                t.name().to_owned(),
                p50.show(micros),
                p99.show(micros),
                added(a50),
                added(a99),
            ]
        })
        .collect();

    let mut ceiling = Vec::new();
    for (size, body) in &rig.bodies {
        let mut per: Vec<(Runs, Runs, Runs, Runs)> = vec![Default::default(), Default::default()];
        for run in 1..=opts.runs {
            for (i, t) in [Target::Nginx, Target::Sluice].into_iter().enumerate() {
                let m = measure(&rig, opts, t, body, None, opts.connections)?;
                let rps = m.outcome.summary.requests_per_sec;
                per[i].0.push(rps);
                per[i].1.push(m.proxy_busy);
                per[i].2.push(m.client_busy);
                if let Some(c) = m.cpu_per_request_us {
                    per[i].3.push(c);
                }
                progress(format!(
                    "{:<6} {:>6} B flat out run {run}: {} req/s | core{} {} core{} {}",
                    t.name(),
                    size,
                    count(rps),
                    opts.proxy_core,
                    percent(m.proxy_busy),
                    opts.client_core,
                    percent(m.client_busy)
                ));
            }
        }
        for (i, name) in ["nginx", "sluice"].into_iter().enumerate() {
            ceiling.push(vec![
                format!("{size} B"),
                name.to_owned(),
                per[i].0.show(count),
                per[i].3.show(micros),
                per[i].1.show(percent),
                per[i].2.show(percent),
            ]);
        }
    }
    // Resident memory idle and with N open streams (client and upstream connections together).
    let mut memory = Vec::new();
    if opts.open_streams > 0 {
        // A proxy holds two sockets per stream (client and upstream); stay inside the fd limit.
        let limit = streams::fd_limit();
        let n = opts.open_streams.min((limit.saturating_sub(500) / 2) as usize);
        if n < opts.open_streams {
            eprintln!(
                "open-file limit is {limit} and cannot be raised here: holding {n} streams, not {}",
                opts.open_streams
            );
        }
        for t in [Target::Nginx, Target::Sluice] {
            let Some(p) = rig.proc(t) else { continue };
            let idle = p.rss()?;
            let port = if t == Target::Nginx { rig.ports[1] } else { rig.ports[2] };
            let held = streams::open(SocketAddr::from(([127, 0, 0, 1], port)), KEY, &rig.held_body, n)
                .with_context(|| format!("holding {n} streams open through {}", t.name()))?;
            std::thread::sleep(Duration::from_secs(1));
            let loaded = p.rss()?;
            let per = (loaded.saturating_sub(idle)) as f64 / held.len() as f64;
            eprintln!(
                "{:<6} {} open streams: RSS {} idle → {} ({} per stream)",
                t.name(),
                held.len(),
                report::kib(idle as f64),
                report::kib(loaded as f64),
                report::kib(per)
            );
            memory.push(vec![
                t.name().to_owned(),
                report::kib(idle as f64),
                format!("{} ({} streams)", report::kib(loaded as f64), held.len()),
                report::kib(per),
            ]);
            drop(held);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    drop(rig);

    let mut out = String::new();
    out.push_str(&format!(
        "Open-loop latency, coordinated-omission corrected ({} runs of {:?} each; added = target − direct, same run):\n\n",
        opts.runs, opts.duration
    ));
    out.push_str(&table(
        &[
            "body",
            "rate",
            "direct p50",
            "direct p99",
            "nginx +p50",
            "nginx +p99",
            "sluice +p50",
            "sluice +p99",
            "sluice/nginx +p50",
        ],
        &rows,
    ));
    out.push_str("\nCPU time per request (proxy process, all threads):\n\n");
    out.push_str(&table(
        &[
            "body",
            "rate",
            "nginx",
            "sluice",
            "sluice/nginx",
            "client core busy (direct)",
        ],
        &cpu_rows,
    ));
    out.push_str(&format!(
        "\nTime to first byte of a 50-chunk stream, open loop at {stream_rate}/s:\n\n"
    ));
    out.push_str(&table(
        &["path", "first byte p50", "first byte p99", "added p50", "added p99"],
        &stream_rows,
    ));
    out.push_str(&format!(
        "\nThroughput ceiling on one core (closed loop, {} connections; counts only if the proxy core is saturated):\n\n",
        opts.connections
    ));
    out.push_str(&table(
        &[
            "body",
            "proxy",
            "req/s",
            "cpu/req",
            "proxy core busy",
            "client core busy",
        ],
        &ceiling,
    ));
    if !memory.is_empty() {
        out.push_str("\nResident memory, idle and with open streams (memory per stream = growth / streams):\n\n");
        out.push_str(&table(
            &["proxy", "idle RSS", "RSS with streams", "per stream"],
            &memory,
        ));
    }
    Ok(out)
}

fn ratio(a: &Runs, b: &Runs) -> String {
    match (a.median(), b.median()) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
        _ => "–".to_owned(),
    }
}
