//! Background reads of each deployment's server, off the request path. Capacity-aware
//! balancing's input: each deployment with a `metrics` URL has a task reading
//! its Prometheus endpoint (vLLM's `vllm:num_requests_waiting`, `vllm:gpu_cache_usage_perc` /
//! `vllm:kv_cache_usage_perc`; TGI's `tgi_queue_size`) every interval, off the request path.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::upstream::client::HttpClient;
use crate::upstream::health::DeploymentHealth;

/// The load a metrics page reports: waiting requests × 1000 + KV-cache use in ‰.
pub fn load(text: &str) -> Option<u64> {
    let mut waiting: Option<f64> = None;
    let mut cache: f64 = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or(name);
        match metric {
            "vllm:num_requests_waiting" | "tgi_queue_size" => *waiting.get_or_insert(0.0) += v,
            "vllm:gpu_cache_usage_perc" | "vllm:kv_cache_usage_perc" => cache = cache.max(v),
            _ => {}
        }
    }
    let waiting = waiting?;
    Some((waiting.max(0.0) * 1000.0) as u64 + (cache.clamp(0.0, 1.0) * 999.0) as u64)
}

/// Reads `url` every `every` into the deployment's health until the deployment is gone.
pub async fn run(client: Arc<HttpClient>, url: http::Uri, every: Duration, health: Weak<DeploymentHealth>) {
    loop {
        let Some(h) = health.upgrade() else { return };
        let req = http::Request::get(url.clone()).body(Full::new(Bytes::new()));
        if let Ok(req) = req {
            let answer = tokio::time::timeout(every.max(Duration::from_millis(500)), async {
                let resp = client.request(req).await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let body = resp.into_body().collect().await.ok()?.to_bytes();
                load(&String::from_utf8_lossy(&body))
            })
            .await;
            match answer {
                Ok(Some(l)) => h.set_reported_load(l),
                _ => tracing::debug!(url = %url, "metrics scrape failed"),
            }
        }
        drop(h);
        tokio::time::sleep(every).await;
    }
}

/// Active health checks: `GET url` every `every`; a 2xx counts as a success for the breaker, and
/// anything else (or no answer) as a failure. While the breaker is open nothing is recorded;
/// once its open time is over every check is a half-open probe (it needs no probe slot).
pub async fn check(
    client: Arc<HttpClient>,
    url: http::Uri,
    every: Duration,
    breaker: sluice_config::BreakerConfig,
    health: Weak<DeploymentHealth>,
    telemetry: Weak<crate::telemetry::Telemetry>,
    name: Arc<str>,
) {
    use crate::upstream::health::{BreakerState, Gate, Outcome};
    loop {
        tokio::time::sleep(every).await;
        let Some(h) = health.upgrade() else { return };
        let started = std::time::Instant::now();
        let ok = match http::Request::get(url.clone()).body(Full::new(Bytes::new())) {
            Ok(req) => matches!(
                tokio::time::timeout(every.min(Duration::from_secs(2)), client.request(req)).await,
                Ok(Ok(resp)) if resp.status().is_success()
            ),
            Err(_) => false,
        };
        let now = std::time::Instant::now();
        // A half-open breaker is probed by the check itself, whether or not requests hold its
        // probe slots: the check sends no caller's traffic, so it needs no slot.
        let record = match h.gate(&breaker, now) {
            Gate::Shut => h.state() == BreakerState::HalfOpen,
            Gate::Probe | Gate::Pass | Gate::Paused | Gate::Full => true,
        };
        if record {
            let outcome = if ok { Outcome::Success } else { Outcome::Failure };
            let t = h.record(&breaker, outcome, now - started, now);
            if let Some(tel) = telemetry.upgrade() {
                tel.breaker(&name, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_vllm_and_tgi_pages() {
        let vllm = "# HELP x\nvllm:num_requests_running{model_name=\"m\"} 3\nvllm:num_requests_waiting{model_name=\"m\"} 7\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n";
        assert_eq!(super::load(vllm), Some(7_499));
        assert_eq!(super::load("tgi_queue_size 2\n"), Some(2_000));
        assert_eq!(super::load("nothing_here 1\n"), None);
    }
}
