//! The load generator: `oha`, open-loop at a fixed rate with coordinated-omission correction, or
//! closed-loop flat out for the throughput ceiling. Its JSON summary is all we read.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub oha: &'a Path,
    pub core: usize,
    pub url: String,
    pub body: &'a Path,
    pub key: &'a str,
    /// `Some(rate)`: open-loop at `rate` requests/s; `None`: as fast as `connections` allow.
    pub rate: Option<u32>,
    pub connections: u32,
    pub duration: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub success_rate: f64,
    pub requests_per_sec: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub summary: Summary,
    pub latency_percentiles: Percentiles,
    pub first_byte_percentiles: Option<Percentiles>,
    #[serde(default)]
    pub status_code_distribution: std::collections::BTreeMap<String, u64>,
    /// Requests that got no HTTP answer, by error.
    #[serde(default)]
    pub error_distribution: std::collections::BTreeMap<String, u64>,
}

impl Outcome {
    /// Requests answered with 200.
    pub fn ok_requests(&self) -> u64 {
        self.status_code_distribution.get("200").copied().unwrap_or(0)
    }
    pub fn p50_us(&self) -> f64 {
        self.latency_percentiles.p50.unwrap_or(f64::NAN) * 1e6
    }
    pub fn p99_us(&self) -> f64 {
        self.latency_percentiles.p99.unwrap_or(f64::NAN) * 1e6
    }
}

pub fn run(load: &Load<'_>) -> anyhow::Result<Outcome> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(load.core.to_string()).arg(load.oha);
    cmd.args(["--no-tui", "--output-format", "json", "-m", "POST"]);
    cmd.arg("-z").arg(format!("{}ms", load.duration.as_millis()));
    cmd.arg("-c").arg(load.connections.to_string());
    if let Some(rate) = load.rate {
        cmd.arg("-q").arg(rate.to_string()).arg("--latency-correction");
    }
    cmd.arg("-D").arg(load.body);
    cmd.arg("-H").arg("content-type: application/json");
    cmd.arg("-H").arg(format!("authorization: Bearer {}", load.key));
    cmd.arg(&load.url);
    let out = cmd.output().with_context(|| format!("run {}", load.oha.display()))?;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let outcome: Outcome = serde_json::from_slice(&out.stdout).context("parse oha's JSON")?;
    if outcome.ok_requests() == 0 {
        bail!(
            "no request succeeded against {}: {:?}",
            load.url,
            outcome.status_code_distribution
        );
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of `oha 1.16 --output-format json` (open loop, 50/s, 300 ms): the fields the
    /// report reads must parse, in seconds.
    #[test]
    fn reads_ohas_json_summary() {
        let o: Outcome = serde_json::from_str(include_str!("../tests/fixtures/oha-1.16.json")).unwrap();
        assert_eq!(o.ok_requests(), 15);
        assert!((o.summary.requests_per_sec - 49.745).abs() < 0.01);
        assert!((o.p50_us() - 248.708).abs() < 0.01);
        assert!((o.p99_us() - 794.653).abs() < 0.01);
        let fb = o.first_byte_percentiles.unwrap();
        assert!((fb.p50.unwrap() * 1e6 - 217.842).abs() < 0.01);
    }
}
