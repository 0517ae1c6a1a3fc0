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

    /// The stage's span name in a trace.
    pub fn span_name(self) -> &'static str {
        match self {
            Stage::Auth => "sluice.auth",
            Stage::Read => "sluice.read",
            Stage::Route => "sluice.route",
            Stage::Predict => "sluice.predict",
            Stage::Admit => "sluice.admit",
            Stage::Guard => "sluice.guard",
            Stage::Cache => "sluice.cache",
            Stage::Queue => "sluice.queue",
            Stage::UpstreamTtfb => "sluice.upstream",
        }
    }
}

/// Each stage's time in one request, in seconds, and when it ended (seconds after the
/// request began: where its span sits in the request's trace).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    secs: [Option<f64>; Stage::ALL.len()],
    ends: [f64; Stage::ALL.len()],
}

impl StageTimes {
    pub fn set(&mut self, stage: Stage, lap: Lapped) {
        self.secs[stage as usize] = Some(lap.secs);
        self.ends[stage as usize] = lap.end;
    }

    /// The stages run, in walk order, with their seconds.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, f64)> + '_ {
        Stage::ALL.iter().zip(self.secs).filter_map(|(s, t)| t.map(|t| (*s, t)))
    }

    /// The stages run, in walk order: (stage, seconds, ended this many seconds after the start).
    pub fn spans(&self) -> impl Iterator<Item = (Stage, f64, f64)> + '_ {
        self.iter().map(|(s, t)| (s, t, self.ends[s as usize]))
    }

    /// When the last stage run ended, in seconds after the start.
    pub fn last_end(&self) -> f64 {
        self.spans().map(|(_, _, end)| end).fold(0.0, f64::max)
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
pub struct Lap {
    origin: Instant,
    last: Instant,
}

/// One lap: its seconds, and when it ended (seconds after the stopwatch started).
#[derive(Debug, Clone, Copy)]
pub struct Lapped {
    pub secs: f64,
    pub end: f64,
}

impl Lap {
    /// A stopwatch whose first lap began at `origin` (the request's start).
    pub fn from(origin: Instant) -> Lap {
        Lap { origin, last: origin }
    }

    /// The time since the last lap, and starts the next one.
    pub fn lap(&mut self) -> Lapped {
        let now = Instant::now();
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        Lapped {
            secs,
            end: now.saturating_duration_since(self.origin).as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stages_run_are_reported_in_walk_order() {
        let mut t = StageTimes::default();
        t.set(
            Stage::UpstreamTtfb,
            Lapped {
                secs: 0.0125,
                end: 0.013,
            },
        );
        t.set(
            Stage::Auth,
            Lapped {
                secs: 0.000_004,
                end: 0.000_004,
            },
        );
        let mut json = Vec::new();
        t.write_json(&mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"auth":0.004,"upstream_ttfb":12.5}"#
        );
        assert_eq!(t.server_timing(), "auth;dur=0.004, upstream_ttfb;dur=12.500");
        assert_eq!(StageTimes::default().server_timing(), "");
        assert_eq!(t.last_end(), 0.013);
        let spans: Vec<_> = t.spans().map(|(s, _, end)| (s, end)).collect();
        assert_eq!(spans, [(Stage::Auth, 0.000_004), (Stage::UpstreamTtfb, 0.013)]);
    }
}
