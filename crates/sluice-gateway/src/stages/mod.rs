//! The stages of the request's walk after routing, each a small unit that takes exactly the
//! typed inputs it needs and returns `Result<Flow<T>, GatewayError>` (see [`crate::flow`]).
//! A route's [`RoutePlan`] holds the ones its config turns on, built with the snapshot; a
//! stage the route does not use is its no-op value, so the walk has no `if enabled` branches.
//!
//! Stages never import the spine or each other; only the spine composes them.

pub mod admit;
pub mod auth;
pub mod cache;
pub mod degrade;
pub mod guard;
pub mod predict;
pub mod queue;
pub mod routing;

use std::sync::Arc;

use sluice_config::Config;

use crate::state::{RouteRuntime, Snapshot};

/// The stages a route runs after routing, compiled with the snapshot.
#[derive(Debug)]
pub struct RoutePlan {
    pub degrade: degrade::DegradeStage,
    pub predict: predict::PredictStage,
    pub guard: guard::GuardStage,
    pub cache: cache::CacheStage,
    pub queue: queue::QueueStage,
    /// The response stages, over the answer on its way out.
    pub answer: crate::response::AnswerPlan,
    /// The metric series of this route with each model (resolved on first use).
    pub meters: crate::meter::RouteMeters,
}

/// Every route's plan, in the snapshot's route order: built with the snapshot and served with
/// it (see `Serving`), so a request never runs one config's route with another's stages.
#[derive(Debug)]
pub struct Plans(Box<[RoutePlan]>);

impl Plans {
    pub fn build(snap: &Snapshot) -> Arc<Plans> {
        let tenants = crate::guard::TenantDeny::build(&snap.config);
        Arc::new(Plans(
            snap.routes
                .iter()
                .map(|r| RoutePlan::build(r, &snap.config, &tenants))
                .collect(),
        ))
    }

    /// The plan of one of the snapshot's routes (`None` only for another snapshot's route).
    pub fn of(&self, route: &RouteRuntime) -> Option<&RoutePlan> {
        self.0.get(route.index)
    }
}

impl RoutePlan {
    pub fn build(runtime: &RouteRuntime, config: &Config, tenants: &Arc<crate::guard::TenantDeny>) -> RoutePlan {
        let (route, queue) = (&runtime.config, &runtime.queue);
        // External hooks are called through the route's own pool.
        let client = Some(&runtime.clients[0]);
        let guards = crate::guard::Guards::build(route.guard.as_ref(), &route.name, &config.version, client);
        RoutePlan {
            degrade: degrade::DegradeStage::new(&route.degrade),
            predict: predict::PredictStage::new(route.prediction.as_ref()),
            guard: guard::GuardStage::new(guards.clone(), tenants.clone()),
            cache: cache::CacheStage::new(route, config),
            queue: queue::QueueStage::new(route.queue, queue),
            answer: crate::response::AnswerPlan::new(route, guards.as_ref()),
            meters: crate::meter::RouteMeters::new(config.models.len()),
        }
    }
}
