//! `alerts`: rules over a window of each model's or tenant's traffic — error rate, p95
//! latency, spend rate — whose breaches (and recoveries) go to the budget alerts' webhook.

use std::time::Duration;

use crate::collect::{Collector, ranged, unique};
use crate::raw::RawConfig;
use crate::types::*;

pub(crate) fn alerts(raw: &RawConfig, webhook: bool, errs: &mut Collector) -> AlertsConfig {
    let Some(a) = raw.alerts.as_ref() else {
        return AlertsConfig::default();
    };
    let every = Duration::from_millis(ranged(
        a.every_ms.as_ref(),
        10_000,
        100,
        600_000,
        "alerts.every_ms",
        errs,
    ));
    unique(a.rules.iter().map(|r| &r.name), "alerts.rules", errs);
    if !a.rules.is_empty() && !webhook {
        errs.push::<bool>(
            "alerts.rules",
            None,
            "alerts are sent to the budget alerts' webhook: set budget_alerts.url (and secret_env to sign them)",
        );
    }
    let rules = a
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let path = format!("alerts.rules[{i}]");
            let metric = match r.metric.value.as_str() {
                "error_rate" => AlertMetric::ErrorRate,
                "latency_p95_ms" => AlertMetric::LatencyP95Ms,
                "spend_per_hour" => AlertMetric::SpendPerHour,
                _ => {
                    errs.push(
                        format!("{path}.metric"),
                        Some(&r.metric),
                        "use error_rate, latency_p95_ms or spend_per_hour",
                    );
                    return None;
                }
            };
            let by = match r.by.value.as_str() {
                "model" => AlertBy::Model,
                "tenant" => AlertBy::Tenant,
                _ => {
                    errs.push(format!("{path}.by"), Some(&r.by), "use model or tenant");
                    return None;
                }
            };
            let above = r.above.value;
            let bad = !above.is_finite() || above < 0.0 || (metric == AlertMetric::ErrorRate && above >= 1.0);
            if bad {
                errs.push(
                    format!("{path}.above"),
                    Some(&r.above),
                    "a non-negative number (an error rate below 1)",
                );
            }
            let window = ranged(
                r.window_ms.as_ref(),
                300_000,
                1_000,
                3_600_000,
                &format!("{path}.window_ms"),
                errs,
            );
            Some(AlertRule {
                name: r.name.value.clone(),
                metric,
                by,
                window: Duration::from_millis(window),
                above,
                min_requests: ranged(
                    r.min_requests.as_ref(),
                    10,
                    1,
                    1_000_000,
                    &format!("{path}.min_requests"),
                    errs,
                ),
            })
        })
        .collect();
    AlertsConfig { every, rules }
}
