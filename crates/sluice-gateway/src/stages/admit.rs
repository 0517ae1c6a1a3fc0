//! Admission: the request's estimated cost reserved against every limit that applies to its
//! caller, route and model — or a refusal with the limit's name, `Retry-After` and OpenAI's
//! `x-ratelimit-*` standing. The reservation is an owned guard, settled once with the real
//! usage by finish (or, if it is dropped unsettled, as one request that used nothing).

use std::sync::Arc;

use sluice_config::{LimitSpec, Metric};
use sluice_providers::InboundRequest;

use crate::alerts::AlertSender;
use crate::error::{ErrorKind, GatewayError};
use crate::finish::admission::{Admission, AlertRoute};
use crate::flow::Decision;
use crate::flow::Flow;
use crate::keys::Caller;
use crate::state::Snapshot;
use sluice_limits::{Limits, Need, RuntimeLimits, Scope};

/// What admission reads besides the request: the limiter, the limits set at run time (admin
/// API), and where budget alerts go.
#[derive(Debug, Clone, Copy)]
pub struct Limiting<'a> {
    pub limiter: &'a Limits,
    pub runtime: &'a RuntimeLimits,
    pub alerts: &'a AlertSender,
}

/// Output tokens reserved for a request that does not say how many it wants.
const DEFAULT_OUTPUT_RESERVATION: u64 = 1024;

/// Every limit that applies to this caller, route and model, with whose it is.
fn applicable(
    runtime: &RuntimeLimits,
    snap: &Snapshot,
    caller: &Caller,
    decision: &Decision<'_>,
    inbound: &InboundRequest,
) -> Result<Vec<(Scope, Arc<str>, LimitSpec)>, GatewayError> {
    let c = &snap.config;
    let mut out = Vec::new();
    let mut add = |scope: Scope, id: &Arc<str>, specs: &[LimitSpec]| {
        out.extend(specs.iter().map(|s| (scope, id.clone(), *s)));
    };
    match runtime.key_specs.get(caller.key_id.as_ref()) {
        Some(set) => add(Scope::Key, &caller.key_id, set),
        None => add(Scope::Key, &caller.key_id, &caller.limits),
    }
    if let Some(tier) = caller.tier.as_deref().and_then(|t| c.tiers.get(t)) {
        add(Scope::Key, &caller.key_id, tier);
    }
    if let Some(team) = &caller.team {
        if let Some(set) = runtime.team_specs.get(team.as_ref()) {
            add(Scope::Team, team, set);
        } else if let Some(l) = c.teams.get(team.as_ref()) {
            add(Scope::Team, team, l);
        }
    }
    if let Some(tenant) = &caller.tenant
        && let Some(l) = c.tenants.get(tenant.as_ref())
    {
        add(Scope::Tenant, tenant, l);
    }
    add(Scope::Model, &decision.model.name, &decision.model.limits);
    add(Scope::Route, &decision.route.name, &decision.route.config.limits);
    let user_limits: &[LimitSpec] = match runtime.user_specs.get(caller.key_id.as_ref()) {
        Some(set) => set,
        None => &caller.user_limits,
    };
    if !user_limits.is_empty() {
        // The request's `user` only counts for a key trusted to set it; else the key's own.
        let named = if caller.trust_user {
            inbound.view.user.as_deref().filter(|u| !u.is_empty())
        } else {
            None
        };
        if let Some(user) = named.or(caller.user.as_deref()) {
            if user.len() > MAX_USER_BYTES {
                return Err(GatewayError::new(
                    ErrorKind::BadRequest,
                    "invalid_value",
                    format!("The user is longer than {MAX_USER_BYTES} bytes."),
                )
                .with_param("user"));
            }
            let id: Arc<str> = Arc::from(format!("{}/{user}", caller.key_id));
            add(Scope::User, &id, user_limits);
        }
    }
    Ok(out)
}

/// The longest end-user name that keys a limit.
const MAX_USER_BYTES: usize = 256;

fn need_for(snap: &Snapshot, decision: &Decision<'_>, input: u64, output: u64) -> Need {
    let price = decision
        .model
        .deployments
        .iter()
        .filter_map(|&d| snap.deployments.get(d).and_then(|d| d.price))
        .max_by_key(|p| p.cost_micros(input, 0, 0, output));
    Need {
        requests: 1,
        input_tokens: input,
        output_tokens: output,
        cost: price.map_or(0, |p| p.cost_micros(input, 0, 0, output)),
    }
}

/// Reserve the request's estimated cost against the caller's limits, or refuse it.
///
/// Token and cost limits first use a byte-length upper bound on the prompt's tokens (a token
/// is rarely under three bytes of JSON text); only when that bound would refuse is the prompt
/// counted with the tokenizer — on a blocking thread when it is large — and tried again.
pub async fn admit(
    limiting: &Limiting<'_>,
    snap: &Snapshot,
    caller: &Caller,
    decision: &Decision<'_>,
    inbound: &InboundRequest,
) -> Result<Flow<Admission>, GatewayError> {
    let limits = applicable(limiting.runtime, snap, caller, decision, inbound)?;
    if limits.is_empty() {
        return Ok(Flow::Next(Admission::default()));
    }
    let counts_tokens = limits.iter().any(|(_, _, s)| s.metric != Metric::Requests);
    let output = inbound.view.max_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVATION);
    let need = if counts_tokens {
        need_for(snap, decision, (inbound.body.len() as u64).div_ceil(3), output)
    } else {
        Need {
            requests: 1,
            ..Need::default()
        }
    };
    let tz = snap.config.time_zone_offset_s;
    let mut reserved = need;
    let mut result = limiting.limiter.admit(&limits, &need, tz).await;
    if let Err(refusal) = &result
        && refusal.spec.metric != Metric::Requests
    {
        let exact = crate::stream::tokens::count_off_thread(inbound.body.clone()).await;
        if exact < need.input_tokens {
            reserved = need_for(snap, decision, exact, output);
            result = limiting.limiter.admit(&limits, &reserved, tz).await;
        }
    }
    match result {
        Ok((reservation, info)) => Ok(Flow::Next(Admission {
            reservation: Some(reservation),
            info,
            reserved,
            alerts: snap.config.budget_alerts.as_ref().map(|config| AlertRoute {
                sender: limiting.alerts.clone(),
                config: config.clone(),
                currency: snap.currency.clone(),
            }),
        })),
        Err(refusal) if refusal.unavailable => Err(GatewayError::new(
            ErrorKind::Unavailable,
            "limits_store_unavailable",
            format!(
                "The shared limits store is unreachable and the {} limit {} refuses requests until it is back.",
                refusal.scope.as_str(),
                refusal.spec.name()
            ),
        )
        .with_param(refusal.spec.name())
        .with_retry_after(Some(1))),
        Err(refusal) => {
            let name = refusal.spec.name();
            let budget = refusal.spec.metric == Metric::Cost;
            let amount = if budget {
                format!("{:.2} {}", refusal.spec.amount as f64 / 1e6, snap.currency)
            } else {
                refusal.spec.amount.to_string()
            };
            let (code, what) = if budget {
                ("budget_exceeded", "budget")
            } else {
                ("rate_limit_exceeded", "limit")
            };
            let message = match refusal.retry_after_s {
                Some(s) => format!(
                    "The {} {what} {name} ({amount}) is reached; try again in {s} s.",
                    refusal.scope.as_str()
                ),
                None => format!(
                    "This request alone is larger than the {} {what} {name} ({amount}).",
                    refusal.scope.as_str()
                ),
            };
            let mut err = GatewayError::new(ErrorKind::RateLimited, code, message)
                .with_param(name)
                .with_retry_after(refusal.retry_after_s.map(|s| s.max(1)));
            err.rate = Some(Box::new(refusal.info));
            if refusal.retry_after_s.is_none() {
                err = err.with_status(http::StatusCode::BAD_REQUEST).no_retry();
            }
            Err(err)
        }
    }
}
