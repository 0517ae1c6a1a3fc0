//! Limits and budgets: what a limit counts, over which window, what it does while its shared
//! store is down, and where budget alerts go.

use http::Uri;

use super::secret::Secret;

/// What a limit does while its shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutagePolicy {
    /// Count in process, at the limit divided by the number of instances.
    Local,
    /// Admit without counting.
    Open,
    /// Refuse.
    Closed,
}

impl OutagePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OutagePolicy::Local => "local",
            OutagePolicy::Open => "open",
            OutagePolicy::Closed => "closed",
        }
    }
}

/// Budget alerts: a webhook called when spend crosses each threshold (percent of a cost limit,
/// hard or soft), once per window, signed with HMAC-SHA256 when a secret is set.
#[derive(Debug, Clone)]
pub struct BudgetAlerts {
    pub url: Uri,
    pub secret: Option<Secret>,
    /// Percentages, ascending.
    pub thresholds: Vec<u8>,
}

/// Alert rules and how often they are evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub every: std::time::Duration,
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            every: std::time::Duration::from_secs(10),
            rules: Vec::new(),
        }
    }
}

/// One rule: `metric` of each group (`by`) over `window`, firing above `above`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub metric: AlertMetric,
    pub by: AlertBy,
    pub window: std::time::Duration,
    pub above: f64,
    pub min_requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertMetric {
    /// The share of requests answered with a 5xx.
    ErrorRate,
    LatencyP95Ms,
    /// Spend over the window, per hour, in currency units.
    SpendPerHour,
}

impl AlertMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::LatencyP95Ms => "latency_p95_ms",
            AlertMetric::SpendPerHour => "spend_per_hour",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertBy {
    Model,
    Tenant,
}

impl AlertBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertBy::Model => "model",
            AlertBy::Tenant => "tenant",
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
    /// Micro-units of the price table's currency.
    Cost,
}

/// Rates (second, minute, hour) are GCRA token buckets with a burst; quotas (day, month) are
/// calendar windows in the configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    pub fn is_rate(self) -> bool {
        matches!(self, Window::Second | Window::Minute | Window::Hour)
    }
    pub fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Month => 31 * 86_400,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    pub metric: Metric,
    pub window: Window,
    /// Units per window (cost: micro-units).
    pub amount: u64,
    /// Rates: the most units admitted at once (default: `amount`).
    pub burst: u64,
    /// A soft budget: never refuses, only alerts (`soft_cost_per_month`).
    pub soft: bool,
    /// While the shared store is down (none: the store's default).
    pub on_outage: Option<OutagePolicy>,
}

impl LimitSpec {
    /// The readable name, e.g. `tokens_per_minute`.
    pub fn name(&self) -> String {
        let m = match self.metric {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
            Metric::InputTokens => "input_tokens",
            Metric::OutputTokens => "output_tokens",
            Metric::Cost => "cost",
        };
        let w = match self.window {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        };
        let soft = if self.soft { "soft_" } else { "" };
        format!("{soft}{m}_per_{w}")
    }
}
