//! Usage analytics over the ledger: one metric (requests, cost, tokens, errors, latency
//! percentiles, cache hit rate) by one dimension (key, team, tenant, model, route, deployment)
//! per time bucket (minute, hour, day, month), optionally only the top N groups.
//!
//! Sums and counts are summed in SQL. Latency percentiles come from mergeable histograms —
//! each request's latency counted into a bin, bins added across rows, buckets and groups —
//! never from averaging per-bucket percentiles.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use super::{LedgerDb, SqliteLedger, numbered};
use crate::StoreError;

/// Latency bins: bin `i` holds latencies up to `100 µs × 1.3^(i+1)` (the last: beyond); a
/// percentile is reported as its bin's upper edge (within 30 %).
pub const BINS: usize = 64;

/// A latency histogram that adds up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram(pub [u64; BINS]);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram([0; BINS])
    }
}

impl LatencyHistogram {
    pub fn bin(latency_us: u64) -> usize {
        if latency_us <= 100 {
            return 0;
        }
        (((latency_us as f64 / 100.0).ln() / 1.3f64.ln()) as usize).min(BINS - 1)
    }

    /// The upper edge of bin `i`, in ms.
    pub fn edge_ms(i: usize) -> f64 {
        0.1 * 1.3f64.powi(i as i32 + 1)
    }

    pub fn add(&mut self, latency_us: u64) {
        self.0[Self::bin(latency_us)] += 1;
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0–1) in ms; `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let want = ((n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(Self::edge_ms(i));
            }
        }
        Some(Self::edge_ms(BINS - 1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    /// Micro-units of the currency.
    Cost,
    Tokens,
    /// Requests that ended with an error class.
    Errors,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    /// Cache hits (exact, semantic or stale) over cache lookups.
    CacheHitRate,
    /// Time to the first byte of the answer (for a stream, its first chunk), in ms.
    TtfbP50,
    TtfbP95,
    TtfbP99,
    /// A stream's time to its first content token, in ms (streams only).
    TtftP50,
    TtftP95,
    TtftP99,
    /// Requests a guardrail acted on (blocked, redacted, flagged…).
    GuardrailTriggers,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 15] = [
        Metric::Requests,
        Metric::Cost,
        Metric::Tokens,
        Metric::Errors,
        Metric::LatencyP50,
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::CacheHitRate,
        Metric::TtfbP50,
        Metric::TtfbP95,
        Metric::TtfbP99,
        Metric::TtftP50,
        Metric::TtftP95,
        Metric::TtftP99,
        Metric::GuardrailTriggers,
    ];

    /// The name a query uses.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Cost => "cost",
            Metric::Tokens => "tokens",
            Metric::Errors => "errors",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::CacheHitRate => "cache_hit_rate",
            Metric::TtfbP50 => "ttfb_p50",
            Metric::TtfbP95 => "ttfb_p95",
            Metric::TtfbP99 => "ttfb_p99",
            Metric::TtftP50 => "ttft_p50",
            Metric::TtftP95 => "ttft_p95",
            Metric::TtftP99 => "ttft_p99",
            Metric::GuardrailTriggers => "guardrail_triggers",
        }
    }

    /// The metric [`Metric::name`] calls `s`.
    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether a group's value over a range is the sum of its values over its parts (so the top
    /// groups can be chosen from totals alone).
    pub(crate) fn additive(self) -> bool {
        matches!(
            self,
            Metric::Requests | Metric::Cost | Metric::Tokens | Metric::Errors | Metric::GuardrailTriggers
        )
    }

    fn quantile(self) -> Option<f64> {
        match self {
            Metric::LatencyP50 | Metric::TtfbP50 | Metric::TtftP50 => Some(0.50),
            Metric::LatencyP95 | Metric::TtfbP95 | Metric::TtftP95 => Some(0.95),
            Metric::LatencyP99 | Metric::TtfbP99 | Metric::TtftP99 => Some(0.99),
            _ => None,
        }
    }

    /// The column a percentile metric is taken of.
    fn timed_column(self) -> &'static str {
        match self {
            Metric::TtfbP50 | Metric::TtfbP95 | Metric::TtfbP99 => "ttfb_us",
            Metric::TtftP50 | Metric::TtftP95 | Metric::TtftP99 => "ttft_us",
            _ => "latency_us",
        }
    }

    /// The rollup's histogram column a percentile metric merges (none: not a percentile).
    pub(crate) fn timed_rollup_column(self) -> Option<&'static str> {
        self.quantile()?;
        Some(match self {
            Metric::TtfbP50 | Metric::TtfbP95 | Metric::TtfbP99 => "ttfb",
            Metric::TtftP50 | Metric::TtftP95 | Metric::TtftP99 => "ttft",
            _ => "latency",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Key,
    Team,
    Tenant,
    Model,
    Route,
    Deployment,
    /// How requests failed (`rate_limited`, `upstream_timeout`…; none: they did not).
    ErrorClass,
    /// What the strongest guardrail did (none: nothing).
    Guardrail,
    /// Every request in one group, `all` (totals over time).
    All,
}

impl Dim {
    /// Every dimension (each kept in the rollups).
    pub const ALL: [Dim; 9] = [
        Dim::Key,
        Dim::Team,
        Dim::Tenant,
        Dim::Model,
        Dim::Route,
        Dim::Deployment,
        Dim::ErrorClass,
        Dim::Guardrail,
        Dim::All,
    ];

    /// The dimension [`Dim::name`] calls `s`.
    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The name a query and the rollup use.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Key => "key",
            Dim::Team => "team",
            Dim::Tenant => "tenant",
            Dim::Model => "model",
            Dim::Route => "route",
            Dim::Deployment => "deployment",
            Dim::ErrorClass => "error_class",
            Dim::Guardrail => "guardrail",
            Dim::All => "all",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Dim::Key => "key_id",
            Dim::Team => "team",
            Dim::Tenant => "tenant",
            Dim::Model => "model",
            Dim::Route => "route",
            Dim::Deployment => "deployment",
            Dim::ErrorClass => "error_class",
            Dim::Guardrail => "guardrail",
            Dim::All => "'all'",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Minute,
    Hour,
    Day,
    Month,
}

impl Span {
    pub fn parse(s: &str) -> Option<Span> {
        Some(match s {
            "minute" => Span::Minute,
            "hour" => Span::Hour,
            "day" => Span::Day,
            "month" => Span::Month,
            _ => return None,
        })
    }
}

/// What to ask.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub metric: Metric,
    pub by: Dim,
    pub per: Span,
    pub since_ms: i64,
    pub until_ms: i64,
    pub tz_offset_s: i32,
    /// Only the N groups with the largest value over the whole range.
    pub top: Option<usize>,
    /// Only this tenant's rows.
    pub tenant: Option<&'a str>,
    /// Only rows with these values (a key, a team, a model…): drilling down.
    pub only: Vec<(Dim, &'a str)>,
}

/// One group's value in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub group: String,
    /// `2026-11-22T09:15` (minute), `2026-11-22T09` (hour), `2026-11-22` (day), `2026-11`.
    pub bucket: String,
    /// `None`: nothing to tell (no latency recorded, no cache lookup).
    pub value: Option<f64>,
    pub requests: i64,
}

/// What a group and bucket add up to (`latency`: the histogram of the query's timed metric).
#[derive(Debug, Clone, Default)]
pub(crate) struct Acc {
    pub requests: i64,
    pub cost: i64,
    pub tokens: i64,
    pub errors: i64,
    pub hits: i64,
    pub lookups: i64,
    pub guarded: i64,
    pub latency: LatencyHistogram,
}

/// Accumulators by group and bucket number.
pub(crate) type Accs = HashMap<(String, i64), Acc>;

/// What a read adds up: per bucket, or each group's total over the range (one bucket, 0);
/// and only some groups, or all.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape<'s> {
    pub totals: bool,
    pub groups: Option<&'s [String]>,
}

impl Shape<'_> {
    /// The condition keeping only the chosen groups of `expr` (bound after the others).
    pub(crate) fn in_groups(&self, expr: &str) -> String {
        match self.groups {
            None => String::new(),
            Some([]) => " AND 1 = 0".to_owned(),
            Some(g) => format!(" AND {expr} IN ({})", vec!["?"; g.len()].join(", ")),
        }
    }
}

impl Acc {
    /// Adds a row's sums (`requests`, `cost`, `tokens`, `errors`, `hits`, `lookups`,
    /// `guarded`).
    pub(crate) fn add_sums<R>(&mut self, r: &R) -> Result<(), StoreError>
    where
        R: Row,
        for<'c> &'c str: sqlx::ColumnIndex<R>,
        for<'v> i64: sqlx::Decode<'v, R::Database> + sqlx::Type<R::Database>,
    {
        self.requests += r.try_get::<i64, _>("requests")?;
        self.cost += r.try_get::<i64, _>("cost")?;
        self.tokens += r.try_get::<i64, _>("tokens")?;
        self.errors += r.try_get::<i64, _>("errors")?;
        self.hits += r.try_get::<i64, _>("hits")?;
        self.lookups += r.try_get::<i64, _>("lookups")?;
        self.guarded += r.try_get::<i64, _>("guarded")?;
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &Acc) {
        self.requests += o.requests;
        self.cost += o.cost;
        self.tokens += o.tokens;
        self.errors += o.errors;
        self.hits += o.hits;
        self.lookups += o.lookups;
        self.guarded += o.guarded;
        self.latency.merge(&o.latency);
    }

    pub(crate) fn value(&self, m: Metric) -> Option<f64> {
        if let Some(q) = m.quantile() {
            return self.latency.quantile_ms(q);
        }
        Some(match m {
            Metric::Requests => self.requests as f64,
            Metric::Cost => self.cost as f64,
            Metric::Tokens => self.tokens as f64,
            Metric::Errors => self.errors as f64,
            Metric::CacheHitRate if self.lookups == 0 => return None,
            Metric::CacheHitRate => self.hits as f64 / self.lookups as f64,
            Metric::GuardrailTriggers => self.guarded as f64,
            _ => return None,
        })
    }
}

impl Span {
    /// The bucket's width in seconds as SQL groups it (a month is grouped by day, then days are
    /// put together by their month here): integer arithmetic, the same in SQLite and
    /// PostgreSQL, and several times cheaper per row than formatting a date.
    pub(crate) fn group_seconds(self) -> i64 {
        match self {
            Span::Minute => 60,
            Span::Hour => 3_600,
            Span::Day | Span::Month => 86_400,
        }
    }

    /// The label of the bucket numbered `n` (local time in the configured zone).
    fn label(self, n: i64) -> String {
        let at = chrono::DateTime::from_timestamp(n * self.group_seconds(), 0).unwrap_or_default();
        let fmt = match self {
            Span::Minute => "%Y-%m-%dT%H:%M",
            Span::Hour => "%Y-%m-%dT%H",
            Span::Day => "%Y-%m-%d",
            Span::Month => "%Y-%m",
        };
        at.format(fmt).to_string()
    }
}

impl LedgerDb {
    /// Adds the finished rows started in `[since_ms, until_ms)` to `accs`, by the query's
    /// dimension and bucket.
    pub(crate) async fn raw_into(
        &self,
        q: &Query<'_>,
        shape: Shape<'_>,
        (since_ms, until_ms): (i64, i64),
        accs: &mut Accs,
    ) -> Result<(), StoreError> {
        let col = q.by.column();
        let bucket = match shape.totals {
            // A BIGINT like every bucket (PostgreSQL reads a bare 0 as INT4).
            true => "CAST(0 AS BIGINT)".to_owned(),
            false => format!("(started_at / 1000 + {}) / {}", q.tz_offset_s, q.per.group_seconds()),
        };
        let mut only = String::new();
        if q.tenant.is_some() {
            only.push_str(" AND tenant = ?");
        }
        for (d, _) in &q.only {
            only.push_str(&format!(" AND {} = ?", d.column()));
        }
        only.push_str(&shape.in_groups(&format!("coalesce({col}, '')")));
        let range = format!("FROM spend_ledger WHERE started_at >= ? AND started_at < ? AND state <> 'open'{only}");
        let sums = format!(
            "SELECT coalesce({col}, '') AS grp, {bucket} AS bucket, count(*) AS requests,
                    CAST(coalesce(sum(cost_micros), 0) AS BIGINT) AS cost,
                    CAST(coalesce(sum(total_tokens), 0) AS BIGINT) AS tokens,
                    CAST(sum(CASE WHEN error_class IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS errors,
                    CAST(sum(CASE WHEN cache IN ('hit', 'semantic', 'stale') THEN 1 ELSE 0 END) AS BIGINT) AS hits,
                    CAST(sum(CASE WHEN cache IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS lookups,
                    CAST(sum(CASE WHEN guardrail IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS guarded
             {range} GROUP BY 1, 2"
        );
        // Latencies are counted into bins here, one row per request.
        let timed = q.metric.timed_column();
        let latencies = format!(
            "SELECT coalesce({col}, '') AS grp, {bucket} AS bucket, {timed} AS us {range} AND {timed} IS NOT NULL"
        );
        macro_rules! run {
            ($pool:expr, $fix:expr) => {{
                let bind = |sql: String| {
                    let q0 = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(since_ms)
                        .bind(until_ms);
                    let q0 = match q.tenant {
                        Some(t) => q0.bind(t),
                        None => q0,
                    };
                    let q0 = q.only.iter().fold(q0, |q0, (_, v)| q0.bind(*v));
                    shape
                        .groups
                        .unwrap_or_default()
                        .iter()
                        .fold(q0, |q0, g| q0.bind(g.as_str()))
                };
                for r in bind($fix(&sums)).fetch_all($pool).await? {
                    let key = (r.try_get("grp")?, r.try_get("bucket")?);
                    accs.entry(key).or_default().add_sums(&r)?;
                }
                if q.metric.quantile().is_some() {
                    // Binned by the bucket's number first: a label is written once per bucket.
                    let mut binned: HashMap<(String, i64), LatencyHistogram> = HashMap::new();
                    for r in bind($fix(&latencies)).fetch_all($pool).await? {
                        let us: i64 = r.try_get("us")?;
                        binned
                            .entry((r.try_get("grp")?, r.try_get("bucket")?))
                            .or_default()
                            .add(us.max(0) as u64);
                    }
                    for (k, h) in binned {
                        accs.entry(k).or_default().latency.merge(&h);
                    }
                }
            }};
        }
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => run!(pool, |s: &String| s.clone()),
            LedgerDb::Pg(pool) => run!(pool, |s: &String| numbered(s)),
        }
        Ok(())
    }
}

/// The points of what was added up: buckets labelled (a month's days put together), the top N
/// groups kept when asked, in bucket then group order.
pub(crate) fn finish(q: &Query<'_>, accs: Accs) -> Vec<Point> {
    let mut labelled: HashMap<(String, String), Acc> = HashMap::new();
    for ((g, b), a) in accs {
        labelled.entry((g, q.per.label(b))).or_default().merge(&a);
    }
    if let Some(n) = q.top {
        let mut totals: HashMap<&str, Acc> = HashMap::new();
        for ((g, _), a) in &labelled {
            totals.entry(g.as_str()).or_default().merge(a);
        }
        let mut ranked: Vec<(&str, f64)> = totals
            .iter()
            .map(|(g, a)| (*g, a.value(q.metric).unwrap_or(f64::MIN)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let keep: std::collections::HashSet<String> = ranked.iter().take(n).map(|(g, _)| (*g).to_owned()).collect();
        labelled.retain(|(g, _), _| keep.contains(g));
    }
    let mut points: Vec<Point> = labelled
        .into_iter()
        .map(|((group, bucket), a)| Point {
            value: a.value(q.metric),
            requests: a.requests,
            group,
            bucket,
        })
        .collect();
    points.sort_by(|a, b| a.bucket.cmp(&b.bucket).then(a.group.cmp(&b.group)));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_merge_and_give_percentiles_within_a_bin() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        for ms in 1..=90u64 {
            a.add(ms * 1_000);
        }
        for _ in 0..10 {
            b.add(2_000_000); // ten slow requests of 2 s
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        let p50 = a.quantile_ms(0.5).unwrap();
        assert!((50.0..=65.0).contains(&p50), "{p50}");
        let p95 = a.quantile_ms(0.95).unwrap();
        assert!(
            (2_000.0..=2_600.0).contains(&p95),
            "{p95}: the slow tail, not an average"
        );
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
    }
}
