//! Resilience and placement: balancing, retries and their budget, breakers, fallback chains,
//! geographic routing.

use std::time::Duration;

/// How an alias spreads requests over its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// Round-robin in proportion to `weights`.
    Weighted,
    /// The deployment with the fewest requests in flight.
    LeastOutstanding,
    /// Peak-EWMA latency × requests in flight, of two picked at random.
    Latency,
    /// The deployment whose model server reports the least queued work (scraped), then the
    /// fewest in flight from here.
    Capacity,
}

/// Backoff between attempts, and the retry budget: retries may add at most `budget_percent`
/// of the route's requests, plus `budget_min_per_s` per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub budget_percent: u32,
    pub budget_min_per_s: u32,
}

/// Passive health per deployment: a breaker that opens after consecutive failures or a
/// failure ratio over a window, stays open for a time growing with repeats, then lets a few
/// probes through (half-open) before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub failure_ratio_percent: u32,
    pub window: Duration,
    pub min_requests: u32,
    pub open: Duration,
    pub max_open: Duration,
    pub half_open_probes: u32,
    /// Never more than this share of an alias's deployments out at once.
    pub max_ejected_percent: u32,
}

/// Why a request fell back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    Error,
    Timeout,
    OpenCircuit,
    RateLimit,
    ContextLength,
    ContentPolicy,
    /// Every deployment at its concurrency limit, and no place freed in time.
    Capacity,
    /// The answer failed its JSON check (`guard.on_invalid: retry|fallback`): falls back
    /// whatever `on` lists, so it is not one of [`FallbackReason::ALL`].
    InvalidOutput,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 7] = [
        FallbackReason::Error,
        FallbackReason::Timeout,
        FallbackReason::OpenCircuit,
        FallbackReason::RateLimit,
        FallbackReason::ContextLength,
        FallbackReason::ContentPolicy,
        FallbackReason::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Error => "error",
            FallbackReason::Timeout => "timeout",
            FallbackReason::OpenCircuit => "open_circuit",
            FallbackReason::RateLimit => "rate_limit",
            FallbackReason::ContextLength => "context_length",
            FallbackReason::ContentPolicy => "content_policy",
            FallbackReason::Capacity => "capacity",
            FallbackReason::InvalidOutput => "invalid_output",
        }
    }
}

/// A route's fallback chain: other aliases, then a fixed answer.
#[derive(Debug, Clone, Default)]
pub struct FallbackConfig {
    /// Model indices, tried in order.
    pub models: Vec<usize>,
    /// The chain's cache step: after how many of `models` it comes, and how far past its TTL
    /// a stored answer may be.
    pub cache: Option<StaleStep>,
    pub on: Vec<FallbackReason>,
    /// The degradation answer's text.
    pub response: Option<String>,
}

/// A fallback chain's `cache` step: a stored answer, even past its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleStep {
    /// How many of the chain's aliases come before it.
    pub after: usize,
    /// How far past its TTL an answer may be (at most the route's `cache.stale_ms`).
    pub stale: std::time::Duration,
}

/// Geographic routing: the caller's region comes from a header, else from the network its
/// address is in; an alias's deployments in that region are preferred, then the failover
/// regions in order, then any.
#[derive(Debug, Clone, Default)]
pub struct GeoConfig {
    pub header: String,
    pub networks: Vec<(IpNet, String)>,
    pub failover: std::collections::HashMap<String, Vec<String>>,
}

impl GeoConfig {
    /// The caller's region: the header's value, else the first network holding `ip`.
    pub fn region<'a>(&'a self, header: Option<&'a str>, ip: Option<std::net::IpAddr>) -> Option<&'a str> {
        header.filter(|h| !h.is_empty()).or_else(|| {
            let ip = ip?;
            self.networks
                .iter()
                .find(|(n, _)| n.contains(ip))
                .map(|(_, r)| r.as_str())
        })
    }
}

/// An IP network (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = s.split_once('/')?;
        let addr: std::net::IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| -> (u128, u32) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, nlen), (x, xlen)) = (bits(self.addr), bits(ip));
        if nlen != xlen {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == x & mask
    }
}
