//! What a run measures: its options and the sections to run.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    pub sluice: PathBuf,
    /// This program: runs the mock and the reference processes (`sluice mock`,
    /// `sluice bench-reference`), whatever `sluice` points at.
    pub tools: PathBuf,
    /// Sluice's config for the proxy sections instead of the built-in one: a YAML template with
    /// `{{PORT}}`, `{{ADMIN_PORT}}`, `{{DIR}}`, `{{UPSTREAM}}` and `{{KEY_HASH}}` filled in.
    pub config: Option<PathBuf>,
    /// The model the request bodies name (it must be an alias of the config).
    pub model: String,
    /// What answers behind the proxies in the latency and ceiling sections.
    pub upstream: Upstream,
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

/// What answers behind the proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The mock provider (`sluice mock`): parses the request, counts tokens, generates the answer;
    /// streams. The stream and memory sections need it.
    Mock,
    /// One fixed chat completion after reading the body: not the bottleneck at 30 000 req/s.
    Canned,
}

impl Upstream {
    pub fn parse(s: &str) -> Option<Upstream> {
        match s {
            "mock" => Some(Upstream::Mock),
            "canned" => Some(Upstream::Canned),
            _ => None,
        }
    }
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
    /// What the response cache adds: exact hits and misses against no cache and direct.
    Cache,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Latency, Section::Stream, Section::Ceiling, Section::Memory];

    pub fn parse(s: &str) -> Option<Section> {
        match s {
            "latency" => Some(Section::Latency),
            "stream" => Some(Section::Stream),
            "ceiling" => Some(Section::Ceiling),
            "memory" => Some(Section::Memory),
            "cache" => Some(Section::Cache),
            "faults" => Some(Section::Faults),
            "capacity" => Some(Section::Capacity),
            "users" => Some(Section::Users),
            _ => None,
        }
    }
}
