//! Upstream: the attempts a request makes at a model's deployments — balancing, the circuit
//! breaker and health, retries and their budget, the fallback chain's steps, capacity scraping
//! — and how an attempt's end is classified ([`failure::Failure`]).
//!
//! Upstream never imports the spine or the stages; the spine composes them.

pub mod attempt;
pub mod balance;
pub mod budget;
pub mod client;
pub mod dispatch;
pub mod failure;
pub mod fallback;
pub mod health;
pub mod scrape;
mod send;
