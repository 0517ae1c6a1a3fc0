//! `sluice bench`: the reproducible benchmark. In one run, against the mock provider: direct to
//! the mock, through nginx as a bare reverse proxy (the price of one proxy hop), and through
//! Sluice with key auth, routing, the access log and metrics on. The proxy under test is pinned
//! to one core, mock and load generator to the other; load is open-loop with coordinated-
//! omission correction (`oha -q RATE --latency-correction`); every figure is the median of
//! several runs with min–max, and every run records per-core CPU so a client-bound run shows.
//!
//! It starts only its own processes and stops them by PID; everything listens on loopback.

pub mod cache;
pub mod faults;
pub mod load;
mod options;
pub mod procs;
mod proxy;
pub mod reference;
pub mod report;
mod rig;
mod setup;
pub mod streams;
pub mod users;

pub use options::{Options, Section, Upstream};

/// Runs the benchmark; progress goes to stderr, the Markdown report is returned.
pub fn run(opts: &Options) -> anyhow::Result<String> {
    let has = |s: Section| opts.sections.contains(&s);
    if opts.upstream == Upstream::Canned && (has(Section::Stream) || has(Section::Memory)) {
        anyhow::bail!("the stream and memory sections need --upstream mock (the canned upstream does not stream)");
    }
    if opts.config.is_some() && (opts.with_limits || opts.redis || opts.no_ledger) {
        anyhow::bail!("--with-limits, --redis and --no-ledger shape the built-in config: say it in the --config file");
    }
    let mut out = String::new();
    if Section::ALL.iter().any(|s| has(*s)) {
        out.push_str(&proxy::proxy(opts)?);
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
    if has(Section::Cache) {
        out.push_str(&cache::cache(opts)?);
    }
    Ok(out)
}
