//! The route queue stage: a place among the route's running requests, by priority (a header
//! the key may set, else its tier) and in turn by tenant (weighted).

use std::sync::Arc;
use std::time::Instant;

use sluice_config::QueueConfig;

use crate::error::{ErrorKind, GatewayError};
use crate::flow::Flow;
use crate::keys::Caller;
use crate::state::Snapshot;
use crate::state::queue::{Permit, RouteQueue, Turned};
use crate::timing::Stage;

/// Priority from a header the key may set, else the key's tier, else 5 (of 0–9).
fn priority(snap: &Snapshot, caller: &Caller, headers: &http::HeaderMap) -> u8 {
    let asked = caller
        .priority_header
        .then(|| {
            headers
                .get(sluice_providers::names::X_SLUICE_PRIORITY)?
                .to_str()
                .ok()?
                .trim()
                .parse::<u8>()
                .ok()
        })
        .flatten()
        .filter(|p| *p <= 9);
    asked
        .or_else(|| {
            caller
                .tier
                .as_deref()
                .and_then(|t| snap.config.tier_priorities.get(t))
                .copied()
        })
        .unwrap_or(5)
}

/// The route's queue, when it has one: at most `max_concurrency` running, the rest waiting by
/// priority and in turn by tenant. A route without one has the no-op stage.
#[derive(Debug)]
pub struct QueueStage {
    queue: Option<(QueueConfig, Arc<RouteQueue>)>,
}

impl QueueStage {
    pub fn new(config: Option<QueueConfig>, live: &Arc<RouteQueue>) -> QueueStage {
        QueueStage {
            queue: config.map(|c| (c, live.clone())),
        }
    }

    /// The stage's timer, when the route has a queue.
    pub fn timed(&self) -> Option<Stage> {
        self.queue.as_ref().map(|_| Stage::Queue)
    }

    /// Waits for a place among the route's running requests, or gives up (503 with
    /// `Retry-After`) when the queue is full or the wait too long. The place is held until the
    /// response ends (streams included).
    pub async fn run(
        &self,
        snap: &Snapshot,
        caller: &Caller,
        headers: &http::HeaderMap,
        deadline: Instant,
    ) -> Result<Flow<Option<Permit>>, GatewayError> {
        let Some((cfg, queue)) = &self.queue else {
            return Ok(Flow::Next(None));
        };
        let tenant = caller.tenant.as_ref().unwrap_or(&caller.key_id);
        let weight = caller
            .tenant
            .as_deref()
            .and_then(|t| snap.config.tenant_weights.get(t))
            .copied()
            .unwrap_or(1);
        let priority = priority(snap, caller, headers);
        match queue.acquire(cfg, priority, (tenant, weight), deadline).await {
            Ok(p) => Ok(Flow::Next(Some(p))),
            Err(turned) => {
                let (code, message) = match turned {
                    Turned::Timeout => (
                        "queue_timeout",
                        "The route is at capacity and the request waited as long as it may.",
                    ),
                    _ => ("queue_full", "The route is at capacity and its queue is full."),
                };
                Err(GatewayError::new(ErrorKind::Unavailable, code, message).with_retry_after(Some(1)))
            }
        }
    }
}
