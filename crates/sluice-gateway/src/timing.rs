//! Per-stage timing: the walk marks the end of each stage it ran, in one place (the spine), and
//! finish reports the times — a `stages` object in the log line (ms), the
//! `sluice_stage_duration_seconds{route,stage}` histogram, and, where the route asks, a
//! `server-timing` response header. A stage the request did not run has no time.

use std::fmt::Write as _;
use std::time::Instant;

use sluice_telemetry::json::Object;

/// The stages the walk times, in walk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Auth,
    /// Reading and checking the body.
    Read,
    /// Route decision and degradation.
    Route,
    Predict,
    /// Limits and the ledger's intent.
    Admit,
    /// The input guardrails: normalisation, screening, redaction.
    Guard,
    /// The response cache's lookup.
    Cache,
    Queue,
    /// The attempts loop (and fallbacks) up to the answer's headers.
    UpstreamTtfb,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Auth,
        Stage::Read,
        Stage::Route,
        Stage::Predict,
        Stage::Admit,
        Stage::Guard,
        Stage::Cache,
        Stage::Queue,
        Stage::UpstreamTtfb,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Auth => "auth",
            Stage::Read => "read",
            Stage::Route => "route",
            Stage::Predict => "predict",
            Stage::Admit => "admit",
            Stage::Guard => "guard",
            Stage::Cache => "cache",
            Stage::Queue => "queue",
            Stage::UpstreamTtfb => "upstream_ttfb",
        }
    }
}

/// Each stage's time in one request, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes([Option<f64>; Stage::ALL.len()]);

impl StageTimes {
    pub fn set(&mut self, stage: Stage, seconds: f64) {
        self.0[stage as usize] = Some(seconds);
    }

    /// The stages run, in walk order, with their seconds.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, f64)> + '_ {
        Stage::ALL.iter().zip(self.0).filter_map(|(s, t)| t.map(|t| (*s, t)))
    }

    /// The `server-timing` header value: `auth;dur=0.004, route;dur=0.011, …` (ms).
    pub fn server_timing(&self) -> String {
        let mut out = String::with_capacity(160);
        for (stage, t) in self.iter() {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{};dur={:.3}", stage.as_str(), t * 1000.0);
        }
        out
    }
}

impl StageTimes {
    /// `{"auth":0.004,"route":0.011,…}` in ms, rounded to the µs (the log line's `stages`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::begin(out);
        for (stage, t) in self.iter() {
            o.f64(stage.as_str(), (t * 1_000_000.0).round() / 1000.0);
        }
    }
}

/// The walk's stopwatch: each lap is the time since the last mark.
#[derive(Debug)]
pub struct Lap(Instant);

impl Lap {
    pub fn start() -> Lap {
        Lap(Instant::now())
    }

    /// Seconds since the last lap, and starts the next one.
    pub fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let t = now.saturating_duration_since(self.0).as_secs_f64();
        self.0 = now;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stages_run_are_reported_in_walk_order() {
        let mut t = StageTimes::default();
        t.set(Stage::UpstreamTtfb, 0.0125);
        t.set(Stage::Auth, 0.000_004);
        let mut json = Vec::new();
        t.write_json(&mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"auth":0.004,"upstream_ttfb":12.5}"#
        );
        assert_eq!(t.server_timing(), "auth;dur=0.004, upstream_ttfb;dur=12.500");
        assert_eq!(StageTimes::default().server_timing(), "");
    }
}
