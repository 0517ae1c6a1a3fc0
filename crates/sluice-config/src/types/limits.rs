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
