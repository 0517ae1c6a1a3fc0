//! The proxy sections (latency, stream first byte, ceiling, memory): direct, nginx and Sluice
//! measured side by side on the rig.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::{self, Load, Outcome};
use crate::options::{Options, Section};
use crate::procs::{CoreTimes, Pinned};
use crate::report::{self, Runs, count, micros, percent, table};
use crate::rig::{Rig, Target, start};
use crate::setup::KEY;
use crate::streams;

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

/// The proxy sections: direct, nginx and Sluice side by side.
pub(crate) fn proxy(opts: &Options) -> anyhow::Result<String> {
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
            let b = cell(Target::Bare).unwrap_or(&none);
            let s = cell(Target::Sluice).unwrap_or(&none);
            rows.push(vec![
                format!("{size} B"),
                format!("{rate}/s"),
                d.p50.show(micros),
                d.p99.show(micros),
                n.added_p50.show(micros),
                n.added_p99.show(micros),
                b.added_p50.show(micros),
                b.added_p99.show(micros),
                s.added_p50.show(micros),
                s.added_p99.show(micros),
                ratio(&s.added_p50, &n.added_p50),
            ]);
            cpu_rows.push(vec![
                format!("{size} B"),
                format!("{rate}/s"),
                n.cpu.show(micros),
                b.cpu.show(micros),
                s.cpu.show(micros),
                ratio(&s.cpu, &n.cpu),
                ratio(&s.cpu, &b.cpu),
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
            "bare +p50",
            "bare +p99",
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
            "bare",
            "sluice",
            "sluice/nginx",
            "sluice/bare",
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
