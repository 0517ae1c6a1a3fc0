//! How an upstream attempt — or the attempts loop — failed: one typed value that retry, the
//! breaker, the fallback chain and the metric labels all read, so no behaviour hangs on the
//! spelling of an error code.

use sluice_config::{FallbackReason, OnInvalid};
use sluice_providers::ErrorClass;

use crate::upstream::health::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection to the upstream.
    Connect,
    /// The connection failed before a response.
    Connection,
    /// No response headers within the first-byte timeout (or the time left).
    Timeout,
    /// The response body did not finish in time.
    BodyTimeout,
    /// The connection dropped while the body arrived.
    Dropped,
    /// A success the adapter could not read.
    Malformed,
    /// The upstream answered with an error, classified by its adapter.
    Upstream(ErrorClass),
    /// The deployment cannot serve this endpoint.
    Unsupported,
    /// The upstream request could not be built.
    Internal,
    /// Every deployment is out (breakers open, `Retry-After` pauses).
    NoHealthyDeployment,
    /// Every deployment is at its concurrency limit and no place freed in time.
    AtCapacity,
    /// The request's deadline passed before an upstream answered.
    OutOfTime,
    /// The answer failed its JSON check (the route's output schema or the request's
    /// `response_format`); what the route does about it.
    InvalidOutput(OnInvalid),
}

impl Failure {
    /// The error class of a stream that ends this way after its headers went out (the log's
    /// `error_class` and the errors metric).
    pub fn stream_class(self) -> &'static str {
        match self {
            Failure::Malformed => "upstream_rejected",
            Failure::Upstream(ErrorClass::Overloaded) => "upstream_overloaded",
            Failure::Upstream(ErrorClass::RateLimited) => "upstream_rate_limited",
            Failure::Timeout | Failure::BodyTimeout | Failure::OutOfTime => "upstream_timeout",
            _ => "upstream_unavailable",
        }
    }

    /// Whether another attempt may help.
    pub fn retryable(self) -> bool {
        match self {
            Failure::Connect | Failure::Connection | Failure::Timeout => true,
            Failure::Upstream(class) => class.is_retryable(),
            Failure::InvalidOutput(then) => then == OnInvalid::Retry,
            _ => false,
        }
    }

    /// What it says about the deployment's health. The caller's own mistakes, an upstream's
    /// rate limit and the gateway's own refusals say nothing.
    pub fn health(self) -> Outcome {
        match self {
            Failure::Connect
            | Failure::Connection
            | Failure::Timeout
            | Failure::BodyTimeout
            | Failure::Dropped
            | Failure::Malformed
            | Failure::Upstream(
                ErrorClass::Server
                | ErrorClass::Overloaded
                | ErrorClass::Auth
                | ErrorClass::NotFound
                | ErrorClass::QuotaExceeded,
            ) => Outcome::Failure,
            _ => Outcome::Neutral,
        }
    }

    /// The fallback reason it is, if a fallback chain can help with it.
    pub fn fallback_reason(self) -> Option<FallbackReason> {
        Some(match self {
            Failure::Timeout | Failure::BodyTimeout | Failure::OutOfTime => FallbackReason::Timeout,
            Failure::NoHealthyDeployment => FallbackReason::OpenCircuit,
            Failure::AtCapacity => FallbackReason::Capacity,
            Failure::Upstream(ErrorClass::RateLimited | ErrorClass::QuotaExceeded) => FallbackReason::RateLimit,
            Failure::Upstream(ErrorClass::ContextLength) => FallbackReason::ContextLength,
            Failure::Upstream(ErrorClass::ContentPolicy) => FallbackReason::ContentPolicy,
            Failure::Connect
            | Failure::Connection
            | Failure::Dropped
            | Failure::Malformed
            | Failure::Upstream(
                ErrorClass::Server | ErrorClass::Overloaded | ErrorClass::Auth | ErrorClass::NotFound,
            ) => FallbackReason::Error,
            Failure::InvalidOutput(OnInvalid::Retry | OnInvalid::Fallback) => FallbackReason::InvalidOutput,
            Failure::Upstream(ErrorClass::InvalidRequest)
            | Failure::Unsupported
            | Failure::Internal
            | Failure::InvalidOutput(OnInvalid::Error | OnInvalid::Pass) => {
                return None;
            }
        })
    }

    /// The attempt's outcome label (metrics and the log line's `attempts`).
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect | Failure::Connection => "connect_error",
            Failure::Timeout | Failure::BodyTimeout | Failure::OutOfTime => "timeout",
            Failure::Dropped => "dropped",
            Failure::Malformed => "malformed",
            Failure::Upstream(class) => class.as_str(),
            Failure::Unsupported => "refused",
            Failure::Internal => "internal",
            Failure::NoHealthyDeployment => "no_healthy_deployment",
            Failure::AtCapacity => "at_capacity",
            Failure::InvalidOutput(_) => "invalid_output",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reads_the_same_everywhere() {
        // (failure, retryable, counts against health, falls back for)
        let check = |f: Failure, retry: bool, sick: bool, reason: Option<FallbackReason>| {
            assert_eq!(f.retryable(), retry, "{f:?} retryable");
            assert_eq!(f.health() == Outcome::Failure, sick, "{f:?} health");
            assert_eq!(f.fallback_reason(), reason, "{f:?} fallback");
        };
        use FallbackReason as R;
        check(Failure::Connect, true, true, Some(R::Error));
        check(Failure::Timeout, true, true, Some(R::Timeout));
        check(Failure::BodyTimeout, false, true, Some(R::Timeout));
        check(Failure::Dropped, false, true, Some(R::Error));
        check(Failure::Malformed, false, true, Some(R::Error));
        check(Failure::Upstream(ErrorClass::Server), true, true, Some(R::Error));
        check(Failure::Upstream(ErrorClass::Overloaded), true, true, Some(R::Error));
        check(
            Failure::Upstream(ErrorClass::RateLimited),
            true,
            false,
            Some(R::RateLimit),
        );
        check(
            Failure::Upstream(ErrorClass::QuotaExceeded),
            false,
            true,
            Some(R::RateLimit),
        );
        check(Failure::Upstream(ErrorClass::Auth), false, true, Some(R::Error));
        check(Failure::Upstream(ErrorClass::InvalidRequest), false, false, None);
        check(
            Failure::Upstream(ErrorClass::ContextLength),
            false,
            false,
            Some(R::ContextLength),
        );
        check(
            Failure::Upstream(ErrorClass::ContentPolicy),
            false,
            false,
            Some(R::ContentPolicy),
        );
        check(Failure::Unsupported, false, false, None);
        check(Failure::NoHealthyDeployment, false, false, Some(R::OpenCircuit));
        check(Failure::AtCapacity, false, false, Some(R::Capacity));
        check(Failure::OutOfTime, false, false, Some(R::Timeout));
        // A deployment that answered with invalid JSON is not sick.
        check(
            Failure::InvalidOutput(OnInvalid::Retry),
            true,
            false,
            Some(R::InvalidOutput),
        );
        check(
            Failure::InvalidOutput(OnInvalid::Fallback),
            false,
            false,
            Some(R::InvalidOutput),
        );
        check(Failure::InvalidOutput(OnInvalid::Error), false, false, None);
    }
}
