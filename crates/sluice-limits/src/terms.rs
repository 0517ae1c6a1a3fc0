//! What every limits backend talks about: whose limit (scope, cell), what a request needs,
//! where it stands against a limit, why it was refused, and the calendar windows.

use std::sync::Arc;

use chrono::{Datelike, Offset, TimeZone};
use sluice_config::{LimitSpec, Metric, Window};

pub(crate) const NS: u64 = 1_000_000_000;

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Key,
    Team,
    Tenant,
    Model,
    Route,
    /// An end user of a key (named `key/user`).
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
            Scope::Tenant => "tenant",
            Scope::Model => "model",
            Scope::Route => "route",
            Scope::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub scope: Scope,
    pub id: Arc<str>,
    pub metric: Metric,
    pub window: Window,
}

/// What one request counts against each metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Micro-units of currency.
    pub cost: u64,
}

impl Need {
    pub(crate) fn of(&self, m: Metric) -> u64 {
        match m {
            Metric::Requests => self.requests,
            Metric::Tokens => self.input_tokens + self.output_tokens,
            Metric::InputTokens => self.input_tokens,
            Metric::OutputTokens => self.output_tokens,
            Metric::Cost => self.cost,
        }
    }
}

/// A limit as it stands after an admission: for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the limit is whole again.
    pub reset_s: f64,
}

/// The tightest request and token limits that applied.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateInfo {
    pub requests: Option<Standing>,
    pub tokens: Option<Standing>,
}

/// Why a request was refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub scope: Scope,
    pub spec: LimitSpec,
    /// Seconds until a retry can succeed (`None`: never, the request is larger than the limit).
    pub retry_after_s: Option<u64>,
    pub info: RateInfo,
    /// The shared store is down and this limit's policy is to refuse.
    pub unavailable: bool,
}

/// Start (unix seconds) of the calendar window holding `now_s`, and of the next one.
pub fn window_bounds(window: Window, now_s: i64, tz: i32) -> (i64, i64) {
    let offset = chrono::FixedOffset::east_opt(tz).unwrap_or_else(|| chrono::Utc.fix());
    let local = offset.timestamp_opt(now_s, 0).single();
    let Some(local) = local else {
        return (now_s, now_s + 86_400);
    };
    let day = local.date_naive();
    let start_of = |d: chrono::NaiveDate| -> i64 {
        offset
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .single()
            .map_or(now_s, |t| t.timestamp())
    };
    match window {
        Window::Month => {
            let first = day.with_day(1).unwrap_or(day);
            let next = if first.month() == 12 {
                chrono::NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            (start_of(first), start_of(next))
        }
        _ => {
            let next = day.succ_opt().unwrap_or(day);
            (start_of(day), start_of(next))
        }
    }
}

/// Keeps the tightest (least remaining) standing per header family.
pub(crate) fn merge(info: &mut RateInfo, metric: Metric, s: Standing) {
    let slot = match metric {
        Metric::Requests => &mut info.requests,
        Metric::Tokens | Metric::InputTokens | Metric::OutputTokens => &mut info.tokens,
        Metric::Cost => return,
    };
    if slot.is_none_or(|cur| s.remaining < cur.remaining) {
        *slot = Some(s);
    }
}

/// A budget whose spend crossed an alert threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub scope: Scope,
    pub id: Arc<str>,
    pub spec: LimitSpec,
    pub used: u64,
    pub threshold: u8,
    pub window_start: i64,
}

/// What receives the budget thresholds a settlement crossed.
pub type OnCrossings = Box<dyn FnOnce(Vec<Crossing>) + Send>;

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
