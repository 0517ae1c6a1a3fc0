//! The policy stages of the spine that later capabilities fill in. Each takes exactly the typed
//! inputs it needs and returns a typed output; today each is a no-op, so the spine already has
//! its final shape and no `if enabled` branches.

use sluice_providers::InboundRequest;

use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::keys::Caller;
use crate::routing::Decision;
use crate::spine::Reply;

/// A reservation against every limit that applies; settled by finish. (Limits: not yet built.)
#[derive(Debug)]
pub struct Admission;

/// Reserve the request's estimated cost against the caller's limits, or refuse it.
pub fn admit(_caller: &Caller, _decision: &Decision<'_>, _inbound: &InboundRequest) -> Result<Admission, GatewayError> {
    Ok(Admission)
}

/// A place in the route's and deployment's concurrency budget. (Queues: not yet built.)
#[derive(Debug)]
pub struct QueuePermit;

/// Wait for capacity in priority order, or give up at the queue deadline.
pub async fn enqueue(_caller: &Caller, _decision: &Decision<'_>) -> Result<QueuePermit, GatewayError> {
    Ok(QueuePermit)
}

/// Screen the input: schema, size, injection, PII. (Guardrails: not yet built.)
pub fn guard_input(_decision: &Decision<'_>, _inbound: &InboundRequest) -> Result<(), GatewayError> {
    Ok(())
}

/// An answer from the cache, when there is one. (Cache: not yet built.)
pub fn cache_lookup(_caller: &Caller, _decision: &Decision<'_>, _inbound: &InboundRequest) -> Option<Reply> {
    None
}

/// Screen the output before it reaches the caller. (Guardrails: not yet built.)
pub fn guard_output(_decision: &Decision<'_>, upstream: Upstream) -> Result<Upstream, GatewayError> {
    Ok(upstream)
}
