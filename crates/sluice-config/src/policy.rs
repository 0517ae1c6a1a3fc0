//! A route's policy (timeouts, body cap, attempts, unsupported parameters, retry, server
//! timing): the route's own value, else `defaults:`, else the built-in default.

use std::time::Duration;

use crate::collect::{Collector, positive, ranged};
use crate::raw::{RawPolicy, S};
use crate::types::*;

/// Built-in route policy defaults, suited to 200 ms–30 s inference and minutes-long streams.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_TOTAL_TIMEOUT_MS: u64 = 600_000;
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Resolves one policy: the route's own value, else `defaults`, else the built-in default.
pub(crate) fn policy(
    own: &RawPolicy,
    defaults: &RawPolicy,
    path: &str,
    (server_max_body, model_names): (u64, &[&str]),
    errs: &mut Collector,
) -> RoutePolicy {
    let pick = |a: &Option<S<u64>>, b: &Option<S<u64>>| a.clone().or_else(|| b.clone());
    let ms = |v: Option<S<u64>>, d: u64, name: &str, e: &mut Collector| {
        Duration::from_millis(positive(v.as_ref(), d, &format!("{path}.{name}"), e))
    };
    let max_body = positive(
        pick(&own.max_body_bytes, &defaults.max_body_bytes).as_ref(),
        server_max_body,
        &format!("{path}.max_body_bytes"),
        errs,
    );
    if max_body > server_max_body {
        let at = pick(&own.max_body_bytes, &defaults.max_body_bytes);
        errs.push(
            format!("{path}.max_body_bytes"),
            at.as_ref(),
            format!("must not exceed server.max_body_bytes ({server_max_body})"),
        );
    }
    RoutePolicy {
        connect_timeout: ms(
            pick(&own.connect_timeout_ms, &defaults.connect_timeout_ms),
            DEFAULT_CONNECT_TIMEOUT_MS,
            "connect_timeout_ms",
            errs,
        ),
        first_byte_timeout: ms(
            pick(&own.first_byte_timeout_ms, &defaults.first_byte_timeout_ms),
            DEFAULT_FIRST_BYTE_TIMEOUT_MS,
            "first_byte_timeout_ms",
            errs,
        ),
        total_timeout: ms(
            pick(&own.total_timeout_ms, &defaults.total_timeout_ms),
            DEFAULT_TOTAL_TIMEOUT_MS,
            "total_timeout_ms",
            errs,
        ),
        stream_idle_timeout: ms(
            pick(&own.stream_idle_timeout_ms, &defaults.stream_idle_timeout_ms),
            DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            "stream_idle_timeout_ms",
            errs,
        ),
        max_body_bytes: max_body,
        max_attempts: ranged(
            pick(&own.max_attempts, &defaults.max_attempts).as_ref(),
            1,
            1,
            10,
            &format!("{path}.max_attempts"),
            errs,
        ) as u32,
        drop_unsupported: match own.unsupported_params.as_ref().or(defaults.unsupported_params.as_ref()) {
            None => false,
            Some(v) if v.value == "reject" => false,
            Some(v) if v.value == "drop" => true,
            Some(v) => {
                errs.push(
                    format!("{path}.unsupported_params"),
                    Some(v),
                    format!("{:?} is not one of reject, drop", v.value),
                );
                false
            }
        },
        forward_params: own
            .forward_params
            .clone()
            .or_else(|| defaults.forward_params.clone())
            .unwrap_or_default(),
        retry: crate::resilience::retry(own.retry.as_ref(), defaults.retry.as_ref(), path, errs),
        server_timing: own
            .server_timing
            .as_ref()
            .or(defaults.server_timing.as_ref())
            .is_some_and(|v| v.value),
        cache: crate::cache::policy(own.cache.as_ref(), defaults.cache.as_ref(), (path, model_names), errs),
    }
}
