//! Prices, limits, tiers and budgets: the parts of the config that say what things cost and
//! how much of them a caller may use.

use std::collections::HashMap;

use http::Uri;

use crate::collect::{Collector, EnvLookup, env_secret};
use crate::raw::{RawConfig, RawPrice, S};
use crate::types::*;

/// Resolves every deployment's price from the price table (unless it has its own); returns the
/// currency.
pub(crate) fn apply_prices(raw: &RawConfig, deployments: &mut [DeploymentConfig], errs: &mut Collector) -> String {
    // The price table: the first entry whose pattern matches a deployment's upstream model.
    let table: Vec<(Pattern, Option<Price>)> = raw
        .prices
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = price(&m.price, &format!("prices.models[{i}]"), Some(&m.model), errs);
            (Pattern::parse(&m.model.value), p)
        })
        .collect();
    for d in deployments.iter_mut() {
        if d.price.is_none() {
            d.price = table
                .iter()
                .find(|(pattern, _)| pattern.matches(&d.upstream_model))
                .and_then(|(_, p)| *p);
        }
    }
    let currency = raw
        .prices
        .currency
        .as_ref()
        .map_or_else(|| "USD".to_owned(), |c| c.value.clone());
    if let Some(c) = &raw.prices.currency
        && (c.value.len() != 3 || !c.value.chars().all(|ch| ch.is_ascii_uppercase()))
    {
        errs.push(
            "prices.currency",
            Some(c),
            format!("{:?} is not a three-letter currency code like USD", c.value),
        );
    }
    currency
}

/// The tiers, teams, tenants, time zone and budget alerts.
pub(crate) struct LimitSections {
    pub tiers: HashMap<String, Vec<LimitSpec>>,
    pub tier_priorities: HashMap<String, u8>,
    pub tenant_weights: HashMap<String, u32>,
    pub teams: HashMap<String, Vec<LimitSpec>>,
    pub tenants: HashMap<String, Vec<LimitSpec>>,
    pub time_zone_offset_s: i32,
    pub budget_alerts: Option<BudgetAlerts>,
}

pub(crate) fn limit_sections(raw: &RawConfig, env: EnvLookup<'_>, errs: &mut Collector) -> LimitSections {
    let mut tiers = HashMap::new();
    let mut tier_priorities = HashMap::new();
    for (i, t) in raw.tiers.iter().enumerate() {
        if let Some(p) = &t.priority {
            if p.value > 9 {
                errs.push(format!("tiers[{i}].priority"), Some(p), "a priority is 0 (lowest) to 9");
            }
            tier_priorities.insert(t.name.value.clone(), p.value.min(9) as u8);
        }
        let l = limits(&t.limits, &format!("tiers[{i}].limits"), Some(&t.name), errs);
        if tiers.insert(t.name.value.clone(), l).is_some() {
            errs.push(
                format!("tiers[{i}].name"),
                Some(&t.name),
                "the same tier name appears twice",
            );
        }
    }
    let entities = |list: &[crate::raw::RawEntity], what: &str, errs: &mut Collector| {
        let mut out = HashMap::new();
        for (i, e) in list.iter().enumerate() {
            let mut l = limits(&e.limits, &format!("{what}[{i}].limits"), Some(&e.name), errs);
            if let Some(t) = &e.tier {
                match tiers.get(&t.value) {
                    Some(tl) => l.extend(tl.iter().copied()),
                    None => errs.push(
                        format!("{what}[{i}].tier"),
                        Some(t),
                        format!("unknown tier {:?}", t.value),
                    ),
                }
            }
            if out.insert(e.name.value.clone(), l).is_some() {
                errs.push(
                    format!("{what}[{i}].name"),
                    Some(&e.name),
                    "the same name appears twice",
                );
            }
        }
        out
    };
    let teams = entities(&raw.teams, "teams", errs);
    let tenants = entities(&raw.tenants, "tenants", errs);
    for (i, t) in raw.teams.iter().enumerate() {
        if let Some(w) = &t.queue_weight {
            errs.push(
                format!("teams[{i}].queue_weight"),
                Some(w),
                "queue weights are per tenant (a queue takes tenants in turn)",
            );
        }
    }
    let mut tenant_weights = HashMap::new();
    for (i, t) in raw.tenants.iter().enumerate() {
        if let Some(w) = &t.queue_weight {
            if !(1..=100).contains(&w.value) {
                errs.push(
                    format!("tenants[{i}].queue_weight"),
                    Some(w),
                    "must be between 1 and 100",
                );
            }
            tenant_weights.insert(t.name.value.clone(), w.value.clamp(1, 100) as u32);
        }
    }
    let time_zone_offset_s = time_zone(raw.time_zone.as_ref(), errs);
    let budget_alerts = raw.budget_alerts.as_ref().and_then(|b| {
        let url = match b.url.value.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => u,
            _ => {
                errs.push("budget_alerts.url", Some(&b.url), "not an http(s) URL");
                return None;
            }
        };
        let secret = b
            .secret_env
            .as_ref()
            .and_then(|n| env_secret(n, "budget_alerts.secret_env", env, errs));
        let mut thresholds = b.thresholds.clone().unwrap_or_else(|| vec![50, 80, 100]);
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds.is_empty() || thresholds.len() > 8 || thresholds.iter().any(|t| *t == 0 || *t > 100) {
            errs.push(
                "budget_alerts.thresholds",
                Some(&b.url),
                "one to eight percentages from 1 to 100",
            );
            return None;
        }
        Some(BudgetAlerts {
            url,
            secret,
            thresholds,
        })
    });
    LimitSections {
        tiers,
        tier_priorities,
        tenant_weights,
        teams,
        tenants,
        time_zone_offset_s,
        budget_alerts,
    }
}

/// A price in currency units → micro-units; every amount must be a finite number ≥ 0.
pub(crate) fn price(p: &RawPrice, path: &str, at: Option<&S<String>>, errs: &mut Collector) -> Option<Price> {
    let mut ok = true;
    let mut micros = |v: Option<f64>, name: &str| -> Option<u64> {
        let v = v?;
        if !v.is_finite() || !(0.0..=1e9).contains(&v) {
            errs.push(
                format!("{path}.{name}"),
                at,
                format!("{v} is not a price (a number from 0 to 1e9)"),
            );
            ok = false;
            return None;
        }
        Some((v * 1_000_000.0).round() as u64)
    };
    let input = micros(p.input, "input");
    let output = micros(p.output, "output");
    let cached_input = micros(p.cached_input, "cached_input");
    let cache_write = micros(p.cache_write, "cache_write");
    let per_request = micros(p.per_request, "per_request");
    if !ok {
        return None;
    }
    let input = input.unwrap_or(0);
    Some(Price {
        input,
        output: output.unwrap_or(0),
        // Without their own price, cached tokens cost what input tokens cost.
        cached_input: cached_input.unwrap_or(input),
        cache_write: cache_write.unwrap_or(input),
        per_request: per_request.unwrap_or(0),
    })
}

/// Parses limits given at run time (the admin API), with the same names as in the config file.
pub fn parse_limits(raw: &crate::raw::RawLimits) -> Result<Vec<LimitSpec>, Vec<String>> {
    let mut errs = Collector(Vec::new());
    let specs = limits(raw, "limits", None, &mut errs);
    if errs.0.is_empty() {
        Ok(specs)
    } else {
        Err(errs
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect())
    }
}

/// Parses readable limit names (`requests_per_minute`, `cost_per_month`, `…_burst`,
/// `…_on_outage`).
pub(crate) fn limits(
    raw: &crate::raw::RawLimits,
    path: &str,
    at: Option<&S<String>>,
    errs: &mut Collector,
) -> Vec<LimitSpec> {
    use crate::raw::RawLimitValue;
    let mut out = Vec::new();
    for (name, value) in raw {
        if name.ends_with("_burst") || name.ends_with("_on_outage") {
            continue;
        }
        let value = match value {
            RawLimitValue::Number(v) => *v,
            RawLimitValue::Word(w) => {
                errs.push(format!("{path}.{name}"), at, format!("{w:?} is not a number"));
                continue;
            }
        };
        let (soft, plain) = match name.strip_prefix("soft_") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        let Some((metric, window)) = plain.split_once("_per_") else {
            errs.push(
                format!("{path}.{name}"),
                at,
                "not a limit name like requests_per_minute",
            );
            continue;
        };
        let metric = match metric {
            "requests" => Metric::Requests,
            "tokens" => Metric::Tokens,
            "input_tokens" => Metric::InputTokens,
            "output_tokens" => Metric::OutputTokens,
            "cost" => Metric::Cost,
            _ => {
                errs.push(
                    format!("{path}.{name}"),
                    at,
                    "counts requests, tokens, input_tokens, output_tokens or cost",
                );
                continue;
            }
        };
        let window = match window {
            "second" => Window::Second,
            "minute" => Window::Minute,
            "hour" => Window::Hour,
            "day" => Window::Day,
            "month" => Window::Month,
            _ => {
                errs.push(
                    format!("{path}.{name}"),
                    at,
                    "the window is second, minute, hour, day or month",
                );
                continue;
            }
        };
        if metric == Metric::Cost && window.is_rate() {
            errs.push(
                format!("{path}.{name}"),
                at,
                "cost limits are budgets: per day or per month",
            );
            continue;
        }
        if !value.is_finite() || value < 0.0 || (metric != Metric::Cost && value.fract() != 0.0) {
            errs.push(
                format!("{path}.{name}"),
                at,
                format!("{value} is not a limit (a whole number ≥ 0; cost in currency units)"),
            );
            continue;
        }
        let amount = if metric == Metric::Cost {
            (value * 1_000_000.0).round() as u64
        } else {
            value as u64
        };
        let burst = match raw.get(&format!("{name}_burst")) {
            Some(RawLimitValue::Number(b)) if window.is_rate() && b.is_finite() && *b >= 1.0 => *b as u64,
            Some(_) => {
                errs.push(
                    format!("{path}.{name}_burst"),
                    at,
                    "a burst applies to a per-second, -minute or -hour limit and is a number ≥ 1",
                );
                amount
            }
            None => amount,
        };
        let on_outage = match raw.get(&format!("{name}_on_outage")) {
            None => None,
            Some(RawLimitValue::Word(w)) if outage_policy(w).is_some() => outage_policy(w),
            Some(_) => {
                errs.push(
                    format!("{path}.{name}_on_outage"),
                    at,
                    "the outage policy is local, open or closed",
                );
                None
            }
        };
        if soft && metric != Metric::Cost {
            errs.push(
                format!("{path}.{name}"),
                at,
                "only budgets (cost_per_day, cost_per_month) can be soft",
            );
            continue;
        }
        out.push(LimitSpec {
            metric,
            window,
            amount,
            burst,
            soft,
            on_outage,
        });
    }
    for (name, suffix) in raw.keys().filter_map(|k| {
        k.strip_suffix("_burst")
            .map(|n| (n, "_burst"))
            .or_else(|| k.strip_suffix("_on_outage").map(|n| (n, "_on_outage")))
    }) {
        if !raw.contains_key(name) {
            errs.push(
                format!("{path}.{name}{suffix}"),
                at,
                format!("there is no {name} limit for this"),
            );
        }
    }
    out
}

/// `local`, `open` or `closed`.
pub(crate) fn outage_policy(word: &str) -> Option<OutagePolicy> {
    match word {
        "local" => Some(OutagePolicy::Local),
        "open" => Some(OutagePolicy::Open),
        "closed" => Some(OutagePolicy::Closed),
        _ => None,
    }
}

/// `UTC`, `Z` or `±HH:MM` → seconds east of UTC.
fn time_zone(raw: Option<&S<String>>, errs: &mut Collector) -> i32 {
    let Some(tz) = raw else { return 0 };
    let v = tz.value.trim();
    if v.eq_ignore_ascii_case("utc") || v == "Z" {
        return 0;
    }
    let parsed = (|| {
        let sign = match v.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = v.get(1..)?.split_once(':')?;
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
    })();
    parsed.unwrap_or_else(|| {
        errs.push(
            "time_zone",
            Some(tz),
            format!("{v:?} is not UTC or an offset like +02:00"),
        );
        0
    })
}
