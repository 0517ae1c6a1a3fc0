//! `cache`: what the response cache costs and saves. One Sluice (pinned to the proxy core, the
//! mock and the load on the other) serves three routes for the same 250-byte chat request (1 KiB
//! answers): `plain` (no cache), `hit` (a cache: every request after the first is an exact hit)
//! and `miss` (a cache whose entries live 1 ms: every request pays for the key, the lookup, the
//! tee and the store). Open-loop at each rate; per target the p50 and p99 latency (and what it
//! adds over going straight to the mock) and Sluice's CPU per request; medians of the runs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::{self, Load};
use crate::options::Options;
use crate::procs::{Pinned, free_port, wait_listening};
use crate::report::{Runs, micros, table};
use crate::setup::{KEY, chat_body};

/// The answer's size: 1 KiB of text (the mock writes `chunks` words).
const ANSWER_CHUNKS: u32 = 180;

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Direct,
    Plain,
    Hit,
    Miss,
}

impl Target {
    const ALL: [Target; 4] = [Target::Direct, Target::Plain, Target::Hit, Target::Miss];
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct to the mock",
            Target::Plain => "sluice, no cache",
            Target::Hit => "sluice, exact hit",
            Target::Miss => "sluice, miss (key, lookup, tee, store)",
        }
    }
    fn model(self) -> &'static str {
        match self {
            Target::Direct | Target::Plain => "chat",
            Target::Hit => "chat-cached",
            Target::Miss => "chat-missed",
        }
    }
}

#[derive(Default)]
struct Cell {
    p50: Runs,
    p99: Runs,
    added_p50: Runs,
    cpu: Runs,
}

pub fn cache(opts: &Options) -> anyhow::Result<String> {
    let (d, _dir) = crate::setup::run_dir("sluice-bench-cache-")?;
    let d = d.as_path();
    eprintln!("cache: files and process logs in {}", d.display());
    let (mock_port, port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let _mock = Pinned::spawn(
        "mock",
        opts.client_core,
        &opts.tools,
        &[
            "mock",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
            "--chunks",
            &ANSWER_CHUNKS.to_string(),
        ],
        &d.join("mock.log"),
    )?;
    let config = format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{store}" }}
logging: {{ access_log: "{log}" }}
deployments:
  - {{ name: mock, provider: openai, base_url: "http://127.0.0.1:{mock_port}/v1", model: bench-model }}
models:
  - {{ name: chat, deployments: [mock] }}
  - {{ name: chat-cached, deployments: [mock] }}
  - {{ name: chat-missed, deployments: [mock] }}
routes:
  - name: hit
    match: {{ models: [chat-cached] }}
    cache: {{ ttl_ms: 3600000 }}
  - name: miss
    match: {{ models: [chat-missed] }}
    cache: {{ ttl_ms: 1 }}
  - name: plain
keys:
  - {{ id: bench, hash: "{hash}" }}
"#,
        store = d.join("keys.db").display(),
        log = d.join("access.log").display(),
        hash = sluice_config::key_hash_string(KEY),
    );
    let conf = d.join("sluice.yaml");
    std::fs::write(&conf, config)?;
    let sluice = Pinned::spawn(
        "sluice",
        opts.proxy_core,
        &opts.sluice,
        &["serve", "--config", &conf.display().to_string()],
        &d.join("sluice.log"),
    )?;
    for p in [mock_port, port, admin_port] {
        wait_listening(SocketAddr::from(([127, 0, 0, 1], p)), Duration::from_secs(20))
            .with_context(|| format!("see the logs in {}", d.display()))?;
    }
    let bodies: Vec<_> = Target::ALL
        .iter()
        .map(|t| {
            let path = d.join(format!("body-{}.json", t.model()));
            std::fs::write(&path, chat_body(250, t.model())).map(|()| path)
        })
        .collect::<Result<_, _>>()?;
    let url = |t: Target| match t {
        Target::Direct => format!("http://127.0.0.1:{mock_port}/v1/chat/completions"),
        _ => format!("http://127.0.0.1:{port}/v1/chat/completions"),
    };
    let run = |t: Target, body: &Path, rate: u32, duration: Duration| -> anyhow::Result<(f64, f64, Option<f64>)> {
        let cpu0 = sluice.cpu_time()?;
        let o = load::run(&Load {
            oha: &opts.oha,
            core: opts.client_core,
            url: url(t),
            body,
            key: KEY,
            rate: Some(rate),
            connections: 16,
            duration,
        })?;
        let cpu = (sluice.cpu_time()? - cpu0).as_secs_f64() * 1e6 / o.ok_requests().max(1) as f64;
        Ok((o.p50_us(), o.p99_us(), (t != Target::Direct).then_some(cpu)))
    };
    // Warm every path (connections, the hit route's one entry).
    for (t, body) in Target::ALL.iter().zip(&bodies) {
        run(*t, body, 200, Duration::from_secs(1))?;
    }
    let mut out = String::from("\n## Response cache\n\n");
    for &rate in &opts.rates {
        let mut cells: Vec<Cell> = Target::ALL.iter().map(|_| Cell::default()).collect();
        for r in 0..opts.runs {
            eprintln!("cache: {rate} req/s, run {}/{}", r + 1, opts.runs);
            let mut direct_p50 = f64::NAN;
            for (i, (t, body)) in Target::ALL.iter().zip(&bodies).enumerate() {
                let (p50, p99, cpu) = run(*t, body, rate, opts.duration)?;
                if *t == Target::Direct {
                    direct_p50 = p50;
                }
                let c = &mut cells[i];
                c.p50.push(p50);
                c.p99.push(p99);
                c.added_p50.push(p50 - direct_p50);
                if let Some(cpu) = cpu {
                    c.cpu.push(cpu);
                }
            }
        }
        out.push_str(&format!(
            "\n{rate} req/s, 250 B request, ~1 KiB answer; median of {} runs (min–max):\n\n",
            opts.runs
        ));
        let rows: Vec<Vec<String>> = Target::ALL
            .iter()
            .zip(&cells)
            .map(|(t, c)| {
                vec![
                    t.name().to_owned(),
                    c.p50.show(micros),
                    c.p99.show(micros),
                    if *t == Target::Direct {
                        "—".to_owned()
                    } else {
                        c.added_p50.show(micros)
                    },
                    if *t == Target::Direct {
                        "—".to_owned()
                    } else {
                        c.cpu.show(micros)
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &["target", "p50", "p99", "added p50 over direct", "sluice CPU / request"],
            &rows,
        ));
    }
    Ok(out)
}
