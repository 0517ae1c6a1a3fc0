//! Metric handles resolved once, not per request: a [`Meter`] holds the series one route and
//! model pair reports to (requests answered 200, latency, first byte, a stream's first token and time per token, cost, tokens, each stage's
//! time). A route's plan holds a meter per model of its snapshot; each series in it is resolved
//! the first time it is reported to and kept (a `OnceLock`: one atomic load from then on), so a
//! request does no `Family` lookup and takes no lock to report — the histograms are lock-free
//! ([`sluice_telemetry::Histogram`]). Series appear on first use, as before.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use sluice_telemetry::Histogram;

use crate::telemetry::{Metrics, ModelLabel, RequestLabels, RouteModel, StageLabels, TokenLabels};
use crate::timing::{Stage, StageTimes};

/// The series of one route and model pair, each resolved the first time it is reported to (so a
/// series appears exactly when it would with a lookup per request: a stage never run, or a
/// first byte never seen, has none).
#[derive(Debug)]
pub struct Meter {
    pub labels: RouteModel,
    ok: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
    ttfb: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    tpot: OnceLock<Histogram>,
    cost: OnceLock<Counter>,
    prompt: OnceLock<Counter>,
    completion: OnceLock<Counter>,
    stages: [OnceLock<Histogram>; Stage::ALL.len()],
}

impl Meter {
    /// The pair's meter, nothing resolved yet. A request whose pair has no meter of its plan
    /// (one a fallback alias answered, or that never matched a route) uses a fresh one, which
    /// does the `Family` lookups a request used to do.
    pub fn resolve(route: &Arc<str>, model: &Arc<str>) -> Meter {
        Meter {
            labels: RouteModel {
                route: route.clone(),
                model: model.clone(),
            },
            ok: OnceLock::new(),
            duration: OnceLock::new(),
            ttfb: OnceLock::new(),
            ttft: OnceLock::new(),
            tpot: OnceLock::new(),
            cost: OnceLock::new(),
            prompt: OnceLock::new(),
            completion: OnceLock::new(),
            stages: Stage::ALL.map(|_| OnceLock::new()),
        }
    }

    /// Whether this meter is the pair's (the same `Arc`s as the snapshot's names).
    pub fn is_for(&self, route: &Arc<str>, model: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.labels.route, route) && Arc::ptr_eq(&self.labels.model, model)
    }

    fn tokens(&self, m: &Metrics, kind: &'static str) -> Counter {
        m.tokens.get_or_create_owned(&TokenLabels {
            route: self.labels.route.clone(),
            model: self.labels.model.clone(),
            kind,
        })
    }

    fn requests(&self, m: &Metrics, status: u16) -> Counter {
        m.requests.get_or_create_owned(&RequestLabels {
            route: self.labels.route.clone(),
            model: self.labels.model.clone(),
            status,
        })
    }

    /// One finished request of this pair.
    pub fn observe(&self, m: &Metrics, report: &Report<'_>) {
        let l = &self.labels;
        if report.status == 200 {
            self.ok.get_or_init(|| self.requests(m, 200)).inc();
        } else {
            self.requests(m, report.status).inc();
        }
        self.duration
            .get_or_init(|| m.duration.get_or_create_owned(l))
            .observe(report.total_s);
        if let Some(t) = report.ttfb_s {
            self.ttfb.get_or_init(|| m.ttfb.get_or_create_owned(l)).observe(t);
        }
        let model = || ModelLabel { model: l.model.clone() };
        if let Some(t) = report.ttft_s {
            self.ttft
                .get_or_init(|| m.ttft.get_or_create_owned(&model()))
                .observe(t);
        }
        if let Some(t) = report.tpot_s {
            self.tpot
                .get_or_init(|| m.tpot.get_or_create_owned(&model()))
                .observe(t);
        }
        for (stage, t) in report.stages.iter() {
            if let Some(slot) = self.stages.get(stage as usize) {
                slot.get_or_init(|| {
                    m.stages.get_or_create_owned(&StageLabels {
                        route: l.route.clone(),
                        stage: stage.as_str(),
                    })
                })
                .observe(t);
            }
        }
        if report.cost_micros > 0 {
            self.cost
                .get_or_init(|| m.cost.get_or_create_owned(l))
                .inc_by(report.cost_micros);
        }
        if report.prompt_tokens > 0 {
            self.prompt
                .get_or_init(|| self.tokens(m, "prompt"))
                .inc_by(report.prompt_tokens);
        }
        if report.completion_tokens > 0 {
            self.completion
                .get_or_init(|| self.tokens(m, "completion"))
                .inc_by(report.completion_tokens);
        }
    }
}

/// What a finished request reports to its pair's series.
#[derive(Debug)]
pub struct Report<'a> {
    pub status: u16,
    pub total_s: f64,
    pub ttfb_s: Option<f64>,
    /// A stream's first content token, and its time per output token after it.
    pub ttft_s: Option<f64>,
    pub tpot_s: Option<f64>,
    pub stages: &'a StageTimes,
    pub cost_micros: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One route's meters, one slot per model of the snapshot, each resolved on first use.
#[derive(Debug)]
pub struct RouteMeters {
    by_model: Box<[OnceLock<Arc<Meter>>]>,
}

impl RouteMeters {
    pub fn new(models: usize) -> RouteMeters {
        RouteMeters {
            by_model: (0..models).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The meter of this route and the snapshot's model `index` (`None` for an index the
    /// snapshot does not have).
    pub fn get(&self, index: usize, route: &Arc<str>, model: &Arc<str>) -> Option<Arc<Meter>> {
        let slot = self.by_model.get(index)?;
        Some(slot.get_or_init(|| Arc::new(Meter::resolve(route, model))).clone())
    }
}
