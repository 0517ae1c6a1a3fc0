//! Resilience under faults, and capacity-aware balancing, measured the same way as the rest:
//! Sluice pinned to one core, the mocks and oha to the other, open-loop load, medians of runs.
//!
//! `faults`: three deployments behind one alias, one of them sick in a different way per
//! scenario (failing 30 % of requests, ten times slower, dead, answering 429 with Retry-After).
//! At 1 000 req/s, every 10 s run is 10 000 requests. Each scenario runs twice: plain
//! round-robin with no breaker and no retries (the reference), and latency-aware balancing with
//! breakers and retries. The figures are what callers see: the share answered 200, and p50/p99
//! latency.
//!
//! `capacity`: two model servers with 100 ms per request and 2 and 8 slots (the mock's
//! `--slots`), loaded at 60 % of their joint capacity. Round-robin overloads the small one and
//! its queue grows; least-outstanding, capacity from scraped metrics and capacity from response
//! headers should not. The figure is the queueing delay: latency minus the 100 ms of work.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::{Load, Outcome};
use crate::options::Options;
use crate::procs::{Pinned, free_port, wait_listening};
use crate::report::{Runs, micros, percent, table};
use crate::setup::{KEY, chat_body};

/// Requests per second in the fault scenarios.
const FAULT_RATE: u32 = 1000;
/// Enough connections that the load generator never runs short, even when a third of the
/// requests take ten times as long (it would otherwise queue them itself).
const FAULT_CONNECTIONS: u32 = 256;
/// Base latency of a healthy mock (ms).
const BASE_MS: u64 = 20;

/// How a deployment misbehaves: the mock's command-line flags, or no process at all.
#[derive(Debug, Clone, Copy)]
enum Mock {
    Healthy,
    Failing30,
    Slow10x,
    Dead,
    RateLimited,
}

impl Mock {
    fn flags(self) -> Option<Vec<String>> {
        let mut f = vec!["--latency-ms".to_owned(), BASE_MS.to_string()];
        match self {
            Mock::Healthy => {}
            Mock::Failing30 => f.extend(["--fail-percent".into(), "30".into()]),
            Mock::Slow10x => f = vec!["--latency-ms".to_owned(), (BASE_MS * 10).to_string()],
            Mock::Dead => return None,
            Mock::RateLimited => f.extend([
                "--fail-percent".into(),
                "100".into(),
                "--status".into(),
                "429".into(),
                "--retry-after-s".into(),
                "1".into(),
            ]),
        }
        Some(f)
    }
}

struct Scenario {
    name: &'static str,
    sick: Mock,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "all healthy",
        sick: Mock::Healthy,
    },
    Scenario {
        name: "one failing 30 %",
        sick: Mock::Failing30,
    },
    Scenario {
        name: "one 10× slower",
        sick: Mock::Slow10x,
    },
    Scenario {
        name: "one dead",
        sick: Mock::Dead,
    },
    Scenario {
        name: "one 429 + Retry-After",
        sick: Mock::RateLimited,
    },
];

/// A gateway policy under test: the model's extra settings, the route's, and the breaker's.
struct Policy {
    name: &'static str,
    model: &'static str,
    route: &'static str,
    breaker: &'static str,
}

const REFERENCE: Policy = Policy {
    name: "round-robin, no breaker, no retry (Retry-After still honoured)",
    model: "balance: round_robin",
    route: "max_attempts: 1",
    breaker: "enabled: false",
};
const RESILIENT: Policy = Policy {
    name: "latency-aware, breakers, 3 attempts",
    model: "balance: latency",
    route: "max_attempts: 3",
    breaker: "enabled: true",
};

/// Mocks started pinned to the client core, one per entry of `flags` (their command-line flags;
/// `None`: a dead deployment, a port with nothing on it).
fn start_mocks(
    opts: &Options,
    dir: &Path,
    tag: &str,
    flags: &[Option<Vec<String>>],
) -> anyhow::Result<(Vec<Pinned>, Vec<u16>)> {
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for (i, flags) in flags.iter().enumerate() {
        let port = free_port()?;
        ports.push(port);
        let Some(flags) = flags else { continue };
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["mock", "--listen", listen.as_str(), "--chunks", "8"];
        args.extend(flags.iter().map(String::as_str));
        procs.push(Pinned::spawn(
            "mock",
            opts.client_core,
            &opts.tools,
            &args,
            &dir.join(format!("mock-{tag}-{i}.log")),
        )?);
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10))?;
    }
    Ok((procs, ports))
}

/// Starts Sluice pinned to the proxy core with `deployments` (YAML list items) behind `chat`.
fn start_sluice(
    opts: &Options,
    dir: &Path,
    tag: &str,
    deployments: &str,
    names: &str,
    policy: (&str, &str, &str),
) -> anyhow::Result<(Pinned, String)> {
    let (port, admin) = (free_port()?, free_port()?);
    let (model, route, breaker) = policy;
    let config = format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ sqlite_path: "{store}" }}
logging: {{ access_log: "{log}" }}
breaker: {{ {breaker} }}
deployments:
{deployments}models:
  - {{ name: chat, deployments: [{names}], {model} }}
routes:
  - {{ name: bench, {route} }}
keys:
  - {{ id: bench, hash: "{hash}" }}
"#,
        store = dir.join(format!("keys-{tag}.db")).display(),
        log = dir.join(format!("access-{tag}.log")).display(),
        hash = sluice_config::key_hash_string(KEY),
    );
    let path = dir.join(format!("sluice-{tag}.yaml"));
    std::fs::write(&path, config)?;
    let sluice = Pinned::spawn(
        "sluice",
        opts.proxy_core,
        &opts.sluice,
        &["serve", "--config", &path.display().to_string()],
        &dir.join(format!("sluice-{tag}.log")),
    )?;
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20))
        .with_context(|| format!("see {}", dir.display()))?;
    Ok((sluice, format!("http://127.0.0.1:{port}/v1/chat/completions")))
}

/// Extra settings for deployment `i` on `port` (YAML, inside its braces).
type DeploymentExtra<'a> = &'a dyn Fn(usize, u16) -> String;

fn deployment_lines(ports: &[u16], extra: DeploymentExtra<'_>) -> (String, String) {
    let mut lines = String::new();
    let mut names = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let name = format!("d{i}");
        lines.push_str(&format!(
            "  - {{ name: {name}, provider: openai, base_url: \"http://127.0.0.1:{port}/v1\", model: m{}{} }}\n",
            i,
            extra(i, *port)
        ));
        names.push(name);
    }
    (lines, names.join(", "))
}

fn load(
    opts: &Options,
    url: &str,
    body: &Path,
    rate: u32,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    crate::load::run(&Load {
        oha: &opts.oha,
        core: opts.client_core,
        url: url.to_owned(),
        body,
        key: KEY,
        rate: Some(rate),
        connections,
        duration,
    })
}

/// Share of the requests answered 200, of all that got an answer or an error — except those
/// still in flight when the run's time was up (oha aborts them: not the gateway's doing).
fn ok_share(o: &Outcome) -> f64 {
    let errors: u64 = o
        .error_distribution
        .iter()
        .filter(|(e, _)| !e.contains("deadline"))
        .map(|(_, n)| n)
        .sum();
    let total = o.status_code_distribution.values().sum::<u64>() + errors;
    if o.ok_requests() < total {
        eprintln!(
            "        not 200: {:?} {:?}",
            o.status_code_distribution, o.error_distribution
        );
    }
    o.ok_requests() as f64 / total.max(1) as f64
}

#[derive(Default)]
struct Cell {
    ok: Runs,
    p50: Runs,
    p99: Runs,
}

impl Cell {
    /// Adds a run's figures, its latencies less `work_us` (the upstream's own time).
    fn push(&mut self, o: &Outcome, work_us: f64) {
        self.ok.push(ok_share(o));
        self.p50.push(o.p50_us() - work_us);
        self.p99.push(o.p99_us() - work_us);
    }

    /// The row's figures: share answered 200, p50, p99.
    fn figures(&self) -> [String; 3] {
        [self.ok.show(percent_fine), self.p50.show(micros), self.p99.show(micros)]
    }
}

/// The fault scenarios, each under the reference policy and the resilient one.
pub fn faults(opts: &Options) -> anyhow::Result<String> {
    let dir = tempfile::Builder::new().prefix("sluice-bench-faults-").tempdir()?;
    let d = dir.path();
    let body = d.join("body.json");
    std::fs::write(&body, chat_body(1024, "chat"))?;
    let total = SCENARIOS.len() * 2 * opts.runs;
    let mut step = 0;
    let mut rows = Vec::new();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let kinds = [Mock::Healthy, Mock::Healthy, scenario.sick];
        let (_mocks, ports) = start_mocks(opts, d, &s.to_string(), &kinds.map(Mock::flags))?;
        for (p, policy) in [REFERENCE, RESILIENT].iter().enumerate() {
            let (lines, names) = deployment_lines(&ports, &|_, _| String::new());
            let (sluice, url) = start_sluice(
                opts,
                d,
                &format!("{s}-{p}"),
                &lines,
                &names,
                (policy.model, policy.route, policy.breaker),
            )?;
            // Warm up: pools, latency averages, breakers settle.
            load(opts, &url, &body, FAULT_RATE, FAULT_CONNECTIONS, Duration::from_secs(2))?;
            let mut cell = Cell::default();
            for run in 1..=opts.runs {
                step += 1;
                eprintln!(
                    "[{step:>3}/{total}] faults: {} · {} · run {run}",
                    scenario.name, policy.name
                );
                let o = load(opts, &url, &body, FAULT_RATE, FAULT_CONNECTIONS, opts.duration)?;
                cell.push(&o, 0.0);
            }
            drop(sluice);
            let mut row = vec![scenario.name.to_owned(), policy.name.to_owned()];
            row.extend(cell.figures());
            rows.push(row);
        }
    }
    Ok(format!(
        "\n### Faults: what callers see ({FAULT_RATE} req/s, 1 KiB, three deployments of {BASE_MS} ms, {} s per run)\n\n{}",
        opts.duration.as_secs(),
        table(&["scenario", "policy", "answered 200", "p50", "p99"], &rows)
    ))
}

fn percent_fine(v: f64) -> String {
    if (0.9995..1.0).contains(&v) {
        format!("{:.2} %", v * 100.0)
    } else {
        percent(v)
    }
}

/// Capacity of the two model servers: slots and per-request work.
const SMALL_SLOTS: u32 = 2;
const LARGE_SLOTS: u32 = 8;
const WORK_MS: u64 = 100;

/// Queueing delay on two unequal model servers, by balancing strategy.
pub fn capacity(opts: &Options) -> anyhow::Result<String> {
    let dir = tempfile::Builder::new().prefix("sluice-bench-capacity-").tempdir()?;
    let d = dir.path();
    let body = d.join("body.json");
    std::fs::write(&body, chat_body(1024, "chat"))?;
    let capacity = (SMALL_SLOTS + LARGE_SLOTS) as u64 * 1000 / WORK_MS;
    let rate = (capacity * 6 / 10) as u32;
    let strategies: [(&str, &str, DeploymentExtra); 4] = [
        ("round-robin", "balance: round_robin", &|_, _| String::new()),
        ("least outstanding", "balance: least_outstanding", &|_, _| String::new()),
        (
            "capacity (scraped /metrics, 100 ms)",
            "balance: capacity",
            &|_, port| format!(", metrics: {{ url: \"http://127.0.0.1:{port}/metrics\", interval_ms: 100 }}"),
        ),
        ("capacity (x-queue-depth header)", "balance: capacity", &|_, _| {
            ", load_header: x-queue-depth".to_owned()
        }),
    ];
    let total = strategies.len() * opts.runs;
    let mut step = 0;
    let mut rows = Vec::new();
    for (k, (name, model, extra)) in strategies.iter().enumerate() {
        // Fresh servers per strategy: a queue left over from the last one must not count.
        let flags = [SMALL_SLOTS, LARGE_SLOTS].map(|slots| {
            Some(vec![
                "--latency-ms".into(),
                WORK_MS.to_string(),
                "--slots".into(),
                slots.to_string(),
            ])
        });
        let (mocks, ports) = start_mocks(opts, d, &format!("cap-{k}"), &flags)?;
        let (lines, names) = deployment_lines(&ports, *extra);
        let (sluice, url) = start_sluice(
            opts,
            d,
            &format!("cap-{k}"),
            &lines,
            &names,
            (
                model,
                "max_attempts: 1, first_byte_timeout_ms: 120000",
                "enabled: false",
            ),
        )?;
        let mut cell = Cell::default();
        for run in 1..=opts.runs {
            step += 1;
            eprintln!("[{step:>3}/{total}] capacity: {name} · run {run}");
            let o = load(opts, &url, &body, rate, 512, opts.duration)?;
            cell.push(&o, (WORK_MS * 1000) as f64);
            // Let the queues empty before the next run.
            std::thread::sleep(Duration::from_secs(2));
        }
        drop(sluice);
        drop(mocks);
        let mut row = vec![(*name).to_owned()];
        row.extend(cell.figures());
        rows.push(row);
    }
    Ok(format!(
        "\n### Capacity-aware balancing: queueing delay (two model servers of {WORK_MS} ms per request with {SMALL_SLOTS} and {LARGE_SLOTS} slots, {rate} req/s = 60 % of their capacity, {} s per run)\n\n{}",
        opts.duration.as_secs(),
        table(&["strategy", "answered 200", "queueing p50", "queueing p99"], &rows)
    ))
}
