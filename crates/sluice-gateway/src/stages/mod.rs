//! The stages of the request's walk after routing, each a small unit that takes exactly the
//! typed inputs it needs and returns `Result<Flow<T>, GatewayError>` (see [`crate::flow`]).
//! A route's [`RoutePlan`] holds the ones its config turns on, built with the snapshot; a
//! stage the route does not use is its no-op value, so the walk has no `if enabled` branches.
//!
//! Stages never import the spine or each other; only the spine composes them.

pub mod admit;
pub mod degrade;
pub mod predict;
pub mod queue;

use std::sync::Arc;

use sluice_config::RouteConfig;

/// The stages a route runs after routing, compiled with the snapshot.
#[derive(Debug)]
pub struct RoutePlan {
    pub degrade: degrade::DegradeStage,
    pub predict: predict::PredictStage,
    pub queue: queue::QueueStage,
    /// The response stages, over the answer on its way out.
    pub answer: crate::response::AnswerPlan,
}

impl RoutePlan {
    pub fn build(route: &RouteConfig, queue: &Arc<crate::queue::RouteQueue>) -> RoutePlan {
        RoutePlan {
            degrade: degrade::DegradeStage::new(&route.degrade),
            predict: predict::PredictStage::new(route.prediction.as_ref()),
            queue: queue::QueueStage::new(route.queue, queue),
            answer: crate::response::AnswerPlan::new(route),
        }
    }
}
