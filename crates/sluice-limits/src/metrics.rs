//! The shared store's counters: outages and the decisions taken while it was away.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sluice_config::OutagePolicy;

/// Metrics of the shared store.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// 1 while the shared store answers (0 when it is down; absent without one).
    pub up: Gauge,
    /// Decisions taken under an outage, by policy and outcome.
    pub decisions: Family<OutageLabels, Counter>,
    /// Store calls that failed or timed out.
    pub errors: Counter,
    /// Settlements given up after retries (their reservation expires with its window).
    pub lost_settlements: Counter,
    /// Instances sharing the store, as counted by their heartbeats (or as configured).
    pub instances: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutageLabels {
    pub policy: &'static str,
    pub decision: &'static str,
}

impl StoreMetrics {
    pub(crate) fn decision(&self, policy: OutagePolicy, admitted: bool) {
        self.decisions
            .get_or_create(&OutageLabels {
                policy: policy.as_str(),
                decision: if admitted { "admitted" } else { "refused" },
            })
            .inc();
    }
}
