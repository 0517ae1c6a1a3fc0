//! What `GET /admin/config` tells beyond names: each route's model, limits, fallback chain
//! and which screens it runs; the configured budgets (tiers', teams', tenants' limits); the
//! budget alerts' thresholds and the alert rules. Secrets and URLs with credentials are never
//! in it (deployments show their base URL, as before).

use serde::Serialize;
use sluice_config::{Config, LimitSpec};
use utoipa::ToSchema;

use crate::limits::LimitView;

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteSummary {
    pub name: String,
    /// The model alias it sends to (none: the one the request names).
    pub model: Option<String>,
    pub limits: Vec<LimitView>,
    /// Model aliases tried in order when the route's own fails.
    pub fallback: Vec<String>,
    /// Runs guardrails (input or output).
    pub guarded: bool,
    /// Stores prompts and answers (redacted).
    pub log_payloads: bool,
}

/// The limits the config gives one tier, team or tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetSummary {
    /// `tier`, `team` or `tenant`.
    pub scope: &'static str,
    pub name: String,
    pub limits: Vec<LimitView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertRuleSummary {
    pub name: String,
    /// `error_rate`, `latency_p95_ms` or `spend_per_hour`.
    pub metric: &'static str,
    /// `model` or `tenant`.
    pub by: &'static str,
    pub window_s: u64,
    pub above: f64,
    pub min_requests: u64,
}

/// Alerts: budget thresholds (percent of a cost limit) and the rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsSummary {
    /// Percentages of a cost limit at which the budget webhook is called (empty: none set).
    pub budget_thresholds: Vec<u8>,
    pub rules: Vec<AlertRuleSummary>,
}

fn views(limits: &[LimitSpec]) -> Vec<LimitView> {
    limits.iter().map(LimitView::from).collect()
}

pub(crate) fn routes(c: &Config) -> Vec<RouteSummary> {
    c.routes
        .iter()
        .map(|r| RouteSummary {
            name: r.name.clone(),
            model: r.model.map(|m| c.models[m].name.clone()),
            limits: views(&r.limits),
            fallback: r.fallback.models.iter().map(|&m| c.models[m].name.clone()).collect(),
            guarded: r.guard.is_some(),
            log_payloads: r.payloads.is_some(),
        })
        .collect()
}

pub(crate) fn budgets(c: &Config) -> Vec<BudgetSummary> {
    let mut out = Vec::new();
    for (scope, map) in [("tier", &c.tiers), ("team", &c.teams), ("tenant", &c.tenants)] {
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        out.extend(names.into_iter().map(|n| BudgetSummary {
            scope,
            name: n.clone(),
            limits: views(&map[n]),
        }));
    }
    out
}

pub(crate) fn alerts(c: &Config) -> AlertsSummary {
    AlertsSummary {
        budget_thresholds: c
            .budget_alerts
            .as_ref()
            .map(|b| b.thresholds.clone())
            .unwrap_or_default(),
        rules: c
            .alerts
            .rules
            .iter()
            .map(|r| AlertRuleSummary {
                name: r.name.clone(),
                metric: r.metric.as_str(),
                by: r.by.as_str(),
                window_s: r.window.as_secs(),
                above: r.above,
                min_requests: r.min_requests,
            })
            .collect(),
    }
}
