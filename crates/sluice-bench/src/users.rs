//! `users`: a million distinct end users of a trusted key come and go, and the gateway's memory
//! comes back. Each user's request leaves one limiter cell (a per-user rate); the sweep evicts
//! it once the rate is back at rest. Read: resident memory and `sluice_limits_cells` idle, after
//! a warm-up (connections open, buffers and allocator arenas grown, its cells swept), at the peak,
//! and once every user's cell has been swept; and, from the gateway's debug log, the longest
//! sweep (a pass over every live cell). Sluice and the mock are pinned as elsewhere; the load is
//! this process's own closed loop over keep-alive connections, on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::options::Options;
use crate::procs::{Pinned, free_port, rss_of, wait_listening};
use crate::report::table;
use crate::setup::KEY;

/// Each user's limit: one request keeps their cell from rest for three minutes, longer than the
/// run takes, so the peak holds every user.
const USER_LIMIT: &str = "requests_per_hour: 20";
const AT_REST_AFTER: Duration = Duration::from_secs(180);
/// The warm-up key's users are at rest a millisecond after their request.
const WARM_KEY: &str = "sk-sluice-bench-warm-000000000000000000000000";
const WARM_USERS: usize = 10_000;
const CONNECTIONS: usize = 64;

/// What was read at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    rss: u64,
    cells: i64,
}

pub fn users(opts: &Options) -> anyhow::Result<String> {
    let (d, _dir) = crate::setup::run_dir("sluice-bench-users-")?;
    let d = d.as_path();
    eprintln!("users: files and process logs in {}", d.display());
    let (mock_port, port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let _mock = Pinned::spawn(
        "mock",
        opts.client_core,
        &opts.tools,
        &["mock", "--listen", &format!("127.0.0.1:{mock_port}")],
        &d.join("mock.log"),
    )?;
    let config = format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{store}" }}
logging: {{ access_log: "off" }}
ledger: {{ enabled: false }}
deployments:
  - {{ name: mock, provider: openai, base_url: "http://127.0.0.1:{mock_port}/v1", model: bench-model }}
models:
  - {{ name: chat, deployments: [mock] }}
routes:
  - name: bench
keys:
  - {{ id: bench, hash: "{hash}", trust_user: true, user_limits: {{ {USER_LIMIT} }} }}
  - {{ id: warm, hash: "{warm}", trust_user: true, user_limits: {{ requests_per_second: 1000 }} }}
"#,
        store = d.join("keys.db").display(),
        hash = sluice_config::key_hash_string(KEY),
        warm = sluice_config::key_hash_string(WARM_KEY),
    );
    let conf = d.join("sluice.yaml");
    std::fs::write(&conf, config)?;
    let log = d.join("sluice.log");
    let sluice = Pinned::spawn_env(
        "sluice",
        opts.proxy_core,
        &opts.sluice,
        &["serve", "--config", &conf.display().to_string()],
        &log,
        &[
            ("RUST_LOG", "info,sluice_gateway::state::sweep=debug"),
            ("NO_COLOR", "1"),
        ],
    )?;
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    for addr in [SocketAddr::from(([127, 0, 0, 1], mock_port)), api, admin] {
        wait_listening(addr, Duration::from_secs(20)).with_context(|| format!("see the logs in {}", d.display()))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pid = sluice.pid();
    let read = |rt: &tokio::runtime::Runtime| -> anyhow::Result<Reading> {
        Ok(Reading {
            rss: rss_of(pid)?,
            cells: rt.block_on(cells(admin))?,
        })
    };
    let idle = read(&rt)?;
    eprintln!("users: warming up with {WARM_USERS} users at rest at once");
    rt.block_on(drive(api, WARM_KEY, WARM_USERS))?;
    rt.block_on(until_cells(admin, idle.cells, Duration::from_secs(30)))?;
    std::thread::sleep(Duration::from_secs(2));
    let baseline = read(&rt)?;

    let n = opts.users;
    eprintln!("users: {n} distinct users over {CONNECTIONS} connections");
    let started = Instant::now();
    let peak = Arc::new((AtomicU64::new(baseline.rss), AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        rt.spawn(async move {
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(rss) = rss_of(pid) {
                    peak.0.fetch_max(rss, Ordering::Relaxed);
                }
                if let Ok(c) = cells(admin).await {
                    peak.1.fetch_max(c.max(0) as u64, Ordering::Relaxed);
                }
            }
        })
    };
    let (ok, other) = rt.block_on(drive(api, KEY, n))?;
    let took = started.elapsed();
    let end = read(&rt)?;
    done.store(true, Ordering::Relaxed);
    let _ = rt.block_on(sampler);
    let peak = Reading {
        rss: peak.0.load(Ordering::Relaxed).max(end.rss),
        cells: (peak.1.load(Ordering::Relaxed) as i64).max(end.cells),
    };
    eprintln!(
        "users: {ok} answered 200, {other} otherwise, in {:.1} s ({:.0} req/s); waiting for the sweep",
        took.as_secs_f64(),
        ok as f64 / took.as_secs_f64()
    );
    let waited = Instant::now();
    rt.block_on(until_cells(
        admin,
        baseline.cells,
        AT_REST_AFTER + Duration::from_secs(120),
    ))?;
    let swept_in = waited.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = read(&rt)?;
    let (longest, left) = longest_sweep(&std::fs::read_to_string(&log).unwrap_or_default());

    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    let rows = vec![
        vec!["idle".to_owned(), mib(idle.rss), idle.cells.to_string()],
        vec![
            format!("after {WARM_USERS} warm-up users, swept"),
            mib(baseline.rss),
            baseline.cells.to_string(),
        ],
        vec![format!("peak, {n} users"), mib(peak.rss), peak.cells.to_string()],
        vec![
            format!("all swept ({:.0} s after the load)", swept_in.as_secs_f64()),
            mib(after.rss),
            after.cells.to_string(),
        ],
    ];
    let mut out = format!(
        "Distinct users coming and going ({n} users of a trusted key, one `{USER_LIMIT}` cell each; {ok} answered 200, {other} otherwise, {:.0} req/s):\n\n",
        ok as f64 / took.as_secs_f64()
    );
    out.push_str(&table(&["moment", "RSS", "sluice_limits_cells"], &rows));
    out.push_str(&format!(
        "\nRSS after the sweep: {:+.1} % of the warmed-up baseline. Longest sweep: {} ms, over {} cells.\n\n",
        (after.rss as f64 / baseline.rss.max(1) as f64 - 1.0) * 100.0,
        longest as f64 / 1000.0,
        left
    ));
    Ok(out)
}

/// Sends one request for each of `n` distinct users of `key` over [`CONNECTIONS`] keep-alive
/// connections; returns (answered 200, answered otherwise).
async fn drive(addr: SocketAddr, key: &'static str, n: usize) -> anyhow::Result<(u64, u64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let next = next.clone();
        conns.spawn(async move {
            let stream = TcpStream::connect(addr).await.context("connect")?;
            stream.set_nodelay(true)?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let (mut ok, mut other) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>((ok, other));
                }
                let body = format!(
                    r#"{{"model":"chat","max_tokens":16,"user":"user-{i}","messages":[{{"role":"user","content":"hi"}}]}}"#
                );
                let req = http::Request::post("/v1/chat/completions")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Full::new(Bytes::from(body)))?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let status = resp.status();
                resp.into_body().collect().await?;
                if status == 200 {
                    ok += 1;
                } else {
                    other += 1;
                }
            }
        });
    }
    let (mut ok, mut other) = (0, 0);
    while let Some(r) = conns.join_next().await {
        let (o, x) = r??;
        ok += o;
        other += x;
    }
    Ok((ok, other))
}

/// `sluice_limits_cells` from the admin listener's `/metrics`.
async fn cells(admin: SocketAddr) -> anyhow::Result<i64> {
    let stream = TcpStream::connect(admin)
        .await
        .context("connect to the admin listener")?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "bench")
        .body(Full::new(Bytes::new()))?;
    let body = send.send_request(req).await?.into_body().collect().await?.to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("sluice_limits_cells ")?.trim().parse().ok())
        .context("no sluice_limits_cells in /metrics")
}

/// Waits (at most `within`) until the gauge is back at `baseline`.
async fn until_cells(admin: SocketAddr, baseline: i64, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let now = cells(admin).await?;
        if now <= baseline {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{now} limiter cells left after {within:?} (baseline {baseline})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The longest sweep in the gateway's debug log (µs), and the cells it went over.
fn longest_sweep(log: &str) -> (u64, u64) {
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = &line[line.find(name)? + name.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("limiter cells swept"))
        .filter_map(|l| {
            let took = field(l, "took_us=")?;
            let over = field(l, "evicted=")? + field(l, "left=")?;
            Some((took, over))
        })
        .max()
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_longest_sweep_from_the_log() {
        let log = "2026-01-01T00:00:00Z DEBUG sluice_gateway::state::sweep: limiter cells swept evicted=3 left=10 took_us=40\n\
                   2026-01-01T00:00:01Z DEBUG sluice_gateway::state::sweep: limiter cells swept evicted=0 left=900000 took_us=52000\n\
                   2026-01-01T00:00:01Z  INFO sluice_gateway: sluice is serving\n";
        assert_eq!(longest_sweep(log), (52_000, 900_000));
    }
}
