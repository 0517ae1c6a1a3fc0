//! `sluice bench`: the reproducible benchmark. In one run, against the mock provider: direct to
//! the mock, through nginx as a bare reverse proxy (the price of one proxy hop), and through
//! Sluice with key auth, routing, the access log and metrics on. The proxy under test is pinned
//! to one core, mock and load generator to the other; load is open-loop with coordinated-
//! omission correction (`oha -q RATE --latency-correction`); every figure is the median of
//! several runs with min–max, and every run records per-core CPU so a client-bound run shows.
//!
//! It starts only its own processes and stops them by PID; everything listens on loopback.

pub mod faults;
pub mod load;
pub mod procs;
pub mod report;
pub mod streams;
pub mod users;

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
    /// nginx, the reference proxy; `None` leaves it out.
    pub nginx: Option<PathBuf>,
    pub oha: PathBuf,
    /// Which parts to run.
    pub sections: Vec<Section>,
    /// Keep both cores out of their idle state with idle-priority spinners, so the figures show
    /// the work a hop costs without the wake-up latency of an idle (virtual) CPU. Per-core busy
    /// shares read 100 % in this mode; CPU per request is per process and unaffected.
    pub keep_awake: bool,
    /// Give the bench key limits that never refuse (requests, tokens, a cost budget, a team
    /// limit) and a price, so every request goes through reservation and settlement.
    pub with_limits: bool,
    /// Keep the limit counters in a Redis started for the run (pinned with the load), so every
    /// admission and settlement is a round trip to it. Implies `with_limits`.
    pub redis: bool,
    /// Turn the spend ledger off (to measure what it costs).
    pub no_ledger: bool,
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
    /// Distinct end users for the `users` section.
    pub users: usize,
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
    _mock: Pinned,
    nginx: Option<Pinned>,
    sluice: Pinned,
    ports: [u16; 3],
    bodies: Vec<(usize, PathBuf)>,
    /// A streamed request the mock keeps open after its first chunk.
    held_body: String,
    /// A streamed chat request the mock answers in 50 chunks.
    stream_body: PathBuf,
    /// The same, for a model served by an Anthropic-format deployment (translated both ways).
    translated_body: PathBuf,
    /// Declared last, so dropped last: the spinners stop after everything else.
    _spinners: Vec<Pinned>,
    _dir: Dir,
}

impl Rig {
    fn port(&self, t: Target) -> u16 {
        match t {
            Target::Direct => self.ports[0],
            Target::Nginx => self.ports[1],
            Target::Sluice => self.ports[2],
        }
    }
    fn url(&self, t: Target) -> String {
        format!("http://127.0.0.1:{}/v1/chat/completions", self.port(t))
    }
    fn proc(&self, t: Target) -> Option<&Pinned> {
        match t {
            Target::Direct => None,
            Target::Nginx => self.nginx.as_ref(),
            Target::Sluice => Some(&self.sluice),
        }
    }
    /// Direct first (the reference every "added" figure subtracts), then the proxies.
    fn targets(&self) -> Vec<Target> {
        let mut t = vec![Target::Direct];
        if self.nginx.is_some() {
            t.push(Target::Nginx);
        }
        t.push(Target::Sluice);
        t
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

/// The parts of the benchmark, run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Open-loop added latency and CPU per request at each rate and body size.
    Latency,
    /// Time to first byte of a 50-chunk stream at each rate.
    Stream,
    /// Closed-loop throughput ceiling on one core.
    Ceiling,
    /// Resident memory idle and with open streams.
    Memory,
    /// What callers see with one deployment of three sick, round-robin against resilience.
    Faults,
    /// Queueing delay on unequal model servers, by balancing strategy.
    Capacity,
    /// Memory while distinct users come and go (limiter cells and their eviction).
    Users,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Latency, Section::Stream, Section::Ceiling, Section::Memory];

    pub fn parse(s: &str) -> Option<Section> {
        match s {
            "latency" => Some(Section::Latency),
            "stream" => Some(Section::Stream),
            "ceiling" => Some(Section::Ceiling),
            "memory" => Some(Section::Memory),
            "faults" => Some(Section::Faults),
            "capacity" => Some(Section::Capacity),
            "users" => Some(Section::Users),
            _ => None,
        }
    }
}

struct Progress {
    step: usize,
    total: usize,
}

impl Progress {
    fn line(&mut self, what: String) {
        self.step += 1;
        eprintln!("[{:>3}/{}] {what}", self.step, self.total);
    }
}

/// Runs the benchmark; progress goes to stderr, the Markdown report is returned.
pub fn run(opts: &Options) -> anyhow::Result<String> {
    let has = |s: Section| opts.sections.contains(&s);
    let mut out = String::new();
    if Section::ALL.iter().any(|s| has(*s)) {
        out.push_str(&proxy(opts)?);
    }
    if has(Section::Faults) {
        out.push_str(&faults::faults(opts)?);
    }
    if has(Section::Capacity) {
        out.push_str(&faults::capacity(opts)?);
    }
    if has(Section::Users) {
        out.push_str(&users::users(opts)?);
    }
    Ok(out)
}

/// The proxy sections: direct, nginx and Sluice side by side.
fn proxy(opts: &Options) -> anyhow::Result<String> {
    let rig = start(opts)?;
    let targets = rig.targets();
    let has = |s: Section| opts.sections.contains(&s);
    let per_rate = rig.bodies.len() * opts.rates.len() * opts.runs * targets.len();
    let mut total = 0;
    if has(Section::Latency) {
        total += per_rate;
    }
    if has(Section::Stream) {
        total += opts.rates.len() * opts.runs * (targets.len() + 1);
    }
    if has(Section::Ceiling) {
        total += rig.bodies.len() * opts.runs * (targets.len() - 1);
    }
    let mut progress = Progress { step: 0, total };

    if has(Section::Latency) || has(Section::Stream) || has(Section::Ceiling) {
        // Warm every path (pools, caches) before measuring.
        for &t in &targets {
            let warm = Options {
                duration: Duration::from_secs(1),
                ..opts.clone()
            };
            measure(&rig, &warm, t, &rig.bodies[0].1, None, 8)?;
        }
    }
    let mut out = String::new();
    if has(Section::Latency) {
        out.push_str(&latency(&rig, opts, &mut progress)?);
    }
    if has(Section::Stream) {
        out.push_str(&stream_first_byte(&rig, opts, &mut progress)?);
    }
    if has(Section::Ceiling) {
        out.push_str(&ceiling(&rig, opts, &mut progress)?);
    }
    if has(Section::Memory) && opts.open_streams > 0 {
        out.push_str(&memory(&rig, opts)?);
    }
    Ok(out)
}

fn latency(rig: &Rig, opts: &Options, progress: &mut Progress) -> anyhow::Result<String> {
    let targets = rig.targets();
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for (size, body) in &rig.bodies {
        for &rate in &opts.rates {
            let mut cells: Vec<Cell> = targets.iter().map(|_| Cell::default()).collect();
            for run in 1..=opts.runs {
                let mut direct = (f64::NAN, f64::NAN);
                for (i, &t) in targets.iter().enumerate() {
                    let m = measure(rig, opts, t, body, Some(rate), 32)?;
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
                    progress.line(format!(
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
            let cell = |t: Target| targets.iter().position(|x| *x == t).map(|i| &cells[i]);
            let none = Cell::default();
            let d = cell(Target::Direct).unwrap_or(&none);
            let n = cell(Target::Nginx).unwrap_or(&none);
            let s = cell(Target::Sluice).unwrap_or(&none);
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
    let mut out = format!(
        "Open-loop latency, coordinated-omission corrected ({} runs of {:?} each; added = target − direct, same run):\n\n",
        opts.runs, opts.duration
    );
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
    out.push('\n');
    Ok(out)
}

/// Time to first byte of a 50-chunk stream, open loop at each rate.
fn stream_first_byte(rig: &Rig, opts: &Options, progress: &mut Progress) -> anyhow::Result<String> {
    let targets = rig.targets();
    let mut rows = Vec::new();
    for &rate in &opts.rates {
        let mut ttfb: Vec<[Runs; 4]> = targets.iter().map(|_| Default::default()).collect();
        // Sluice with an OpenAI client and an Anthropic-format upstream: the stream is
        // translated event by event. Added = translated − pass-through, same run.
        let mut translated: [Runs; 4] = Default::default();
        for run in 1..=opts.runs {
            let mut direct = (f64::NAN, f64::NAN);
            let mut pass_through = (f64::NAN, f64::NAN);
            for (i, &t) in targets.iter().enumerate() {
                let m = measure(rig, opts, t, &rig.stream_body, Some(rate), 32)?;
                let fb = m.outcome.first_byte_percentiles.clone();
                let p50 = fb.as_ref().and_then(|p| p.p50).unwrap_or(f64::NAN) * 1e6;
                let p99 = fb.as_ref().and_then(|p| p.p99).unwrap_or(f64::NAN) * 1e6;
                if t == Target::Direct {
                    direct = (p50, p99);
                }
                if t == Target::Sluice {
                    pass_through = (p50, p99);
                }
                ttfb[i][0].push(p50);
                ttfb[i][1].push(p99);
                ttfb[i][2].push(p50 - direct.0);
                ttfb[i][3].push(p99 - direct.1);
                progress.line(format!(
                    "{:<6} 50-chunk stream @ {rate}/s run {run}: first byte p50 {} p99 {}",
                    t.name(),
                    micros(p50),
                    micros(p99)
                ));
            }
            let m = measure(rig, opts, Target::Sluice, &rig.translated_body, Some(rate), 32)?;
            let fb = m.outcome.first_byte_percentiles.clone();
            let p50 = fb.as_ref().and_then(|p| p.p50).unwrap_or(f64::NAN) * 1e6;
            let p99 = fb.as_ref().and_then(|p| p.p99).unwrap_or(f64::NAN) * 1e6;
            translated[0].push(p50);
            translated[1].push(p99);
            translated[2].push(p50 - pass_through.0);
            translated[3].push(p99 - pass_through.1);
            progress.line(format!(
                "sluice OpenAI→Anthropic stream @ {rate}/s run {run}: first byte p50 {} p99 {}",
                micros(p50),
                micros(p99)
            ));
        }
        for (i, t) in targets.iter().enumerate() {
            let [p50, p99, a50, a99] = &ttfb[i];
            let added = |r: &Runs| {
                if *t == Target::Direct {
                    "–".to_owned()
                } else {
                    r.show(micros)
                }
            };
            rows.push(vec![
                format!("{rate}/s"),
                t.name().to_owned(),
                p50.show(micros),
                p99.show(micros),
                added(a50),
                added(a99),
            ]);
        }
        let [p50, p99, a50, a99] = &translated;
        rows.push(vec![
            format!("{rate}/s"),
            "sluice, translated to Anthropic (added vs sluice pass-through)".to_owned(),
            p50.show(micros),
            p99.show(micros),
            a50.show(micros),
            a99.show(micros),
        ]);
    }
    let mut out = "Time to first byte of a 50-chunk stream, open loop:\n\n".to_owned();
    out.push_str(&table(
        &[
            "rate",
            "path",
            "first byte p50",
            "first byte p99",
            "added p50",
            "added p99",
        ],
        &rows,
    ));
    out.push('\n');
    Ok(out)
}

fn ceiling(rig: &Rig, opts: &Options, progress: &mut Progress) -> anyhow::Result<String> {
    let proxies: Vec<Target> = rig.targets().into_iter().filter(|t| *t != Target::Direct).collect();
    let mut rows = Vec::new();
    for (size, body) in &rig.bodies {
        let mut per: Vec<[Runs; 4]> = proxies.iter().map(|_| Default::default()).collect();
        for run in 1..=opts.runs {
            for (i, &t) in proxies.iter().enumerate() {
                let m = measure(rig, opts, t, body, None, opts.connections)?;
                let rps = m.outcome.summary.requests_per_sec;
                per[i][0].push(rps);
                per[i][1].push(m.proxy_busy);
                per[i][2].push(m.client_busy);
                if let Some(c) = m.cpu_per_request_us {
                    per[i][3].push(c);
                }
                progress.line(format!(
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
        for (i, t) in proxies.iter().enumerate() {
            rows.push(vec![
                format!("{size} B"),
                t.name().to_owned(),
                per[i][0].show(count),
                per[i][3].show(micros),
                per[i][1].show(percent),
                per[i][2].show(percent),
            ]);
        }
    }
    let mut out = format!(
        "Throughput ceiling on one core (closed loop, {} connections; counts only if the proxy core is saturated):\n\n",
        opts.connections
    );
    out.push_str(&table(
        &[
            "body",
            "proxy",
            "req/s",
            "cpu/req",
            "proxy core busy",
            "client core busy",
        ],
        &rows,
    ));
    out.push('\n');
    Ok(out)
}

/// Resident memory idle and with N open streams (client and upstream connections together).
fn memory(rig: &Rig, opts: &Options) -> anyhow::Result<String> {
    // A proxy holds two sockets per stream (client and upstream); stay inside the fd limit.
    let limit = streams::fd_limit();
    let n = opts.open_streams.min((limit.saturating_sub(500) / 2) as usize);
    if n < opts.open_streams {
        eprintln!(
            "open-file limit is {limit} and cannot be raised here: holding {n} streams, not {}",
            opts.open_streams
        );
    }
    let mut rows = Vec::new();
    for t in rig.targets() {
        let Some(p) = rig.proc(t) else { continue };
        let idle = p.rss()?;
        let held = streams::open(SocketAddr::from(([127, 0, 0, 1], rig.port(t))), KEY, &rig.held_body, n)
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
        rows.push(vec![
            t.name().to_owned(),
            report::kib(idle as f64),
            format!("{} ({} streams)", report::kib(loaded as f64), held.len()),
            report::kib(per),
        ]);
        drop(held);
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut out = "Resident memory, idle and with open streams (memory per stream = growth / streams):\n\n".to_owned();
    out.push_str(&table(&["proxy", "idle RSS", "RSS with streams", "per stream"], &rows));
    out.push('\n');
    Ok(out)
}

fn ratio(a: &Runs, b: &Runs) -> String {
    match (a.median(), b.median()) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
        _ => "–".to_owned(),
    }
}
