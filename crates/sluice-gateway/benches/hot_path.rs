//! Micro-benchmarks of the gateway's per-request decisions: key lookup and route matching, and
//! what a finished request's stage histograms cost (its metrics with every stage timed, and
//! with none).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use sluice_gateway::keys::{KeyTable, hash_key};
use sluice_gateway::stages::routing::{RouteInput, decide};
use sluice_gateway::state::LiveState;

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("key_lookup");
    for n in [10usize, 100_000] {
        let yaml: Vec<sluice_config::KeyConfig> = (0..n)
            .map(|i| sluice_config::KeyConfig {
                id: format!("k{i}"),
                hash: hash_key(&format!("sk-sluice-{i:040}")),
                tenant: Some("t".into()),
                team: None,
                user: None,
                tier: None,
                models: None,
                routes: None,
                expires_at: None,
                limits: Vec::new(),
                user_limits: Vec::new(),
                trust_user: false,
                priority_header: false,
            })
            .collect();
        let (table, _) = KeyTable::build(&yaml, &[]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer sk-sluice-{:040}", n / 2)).unwrap(),
        );
        let now = chrono::Utc::now();
        g.bench_with_input(BenchmarkId::new("authenticate", n), &headers, |b, h| {
            b.iter(|| table.authenticate(h, now).unwrap())
        });
    }
    g.finish();
}

fn routing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("route_match");
    for n in [1usize, 50] {
        let mut yaml = String::from(
            "deployments:\n  - { name: d, provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: up }\nmodels:\n  - { name: chat, deployments: [d] }\nroutes:\n",
        );
        for i in 0..n.saturating_sub(1) {
            yaml.push_str(&format!(
                "  - name: r{i}\n    match: {{ teams: [team{i}], headers: {{ x-task: t{i} }} }}\n"
            ));
        }
        yaml.push_str("  - name: last\n    match: { paths: [\"/v1/*\"] }\n");
        let config = sluice_config::load_str(&yaml, &|_| None).unwrap();
        let snap = runtime.block_on(LiveState::new().build(config)).unwrap();
        let key = sluice_config::KeyConfig {
            id: "k".into(),
            hash: hash_key("sk-sluice-x"),
            tenant: None,
            team: Some("other".into()),
            user: None,
            tier: None,
            models: None,
            routes: None,
            expires_at: None,
            limits: Vec::new(),
            user_limits: Vec::new(),
            trust_user: false,
            priority_header: false,
        };
        let (table, _) = KeyTable::build(&[key], &[]);
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-sluice-x"));
        h.insert("x-task", HeaderValue::from_static("none"));
        let caller = table.authenticate(&h, chrono::Utc::now()).unwrap();
        g.bench_function(BenchmarkId::new("decide_last_of", n), |b| {
            b.iter(|| {
                let input = RouteInput {
                    path: "/v1/chat/completions",
                    model: "chat",
                    caller: &caller,
                    headers: &h,
                    metadata: &[],
                };
                decide(&snap, &input).unwrap().model_index
            })
        });
    }
    g.finish();
}

fn stage_histograms(c: &mut Criterion) {
    use sluice_gateway::meter::{Meter, Report};
    use sluice_gateway::timing::{Lapped, Stage, StageTimes};
    let telemetry = sluice_gateway::telemetry::Telemetry::with_writer(None, 16).unwrap();
    let (route, model) = (std::sync::Arc::from("default"), std::sync::Arc::from("chat"));
    let meter = Meter::resolve(&route, &model);
    let mut all = StageTimes::default();
    for (i, stage) in Stage::ALL.iter().enumerate() {
        let secs = 0.000_01 * (i + 1) as f64;
        all.set(*stage, Lapped { secs, end: secs * 2.0 });
    }
    let none = StageTimes::default();
    let mut g = c.benchmark_group("finish_metrics");
    for (name, stages) in [("no_stage_times", &none), ("nine_stage_times", &all)] {
        let report = Report {
            status: 200,
            total_s: 0.01,
            ttfb_s: Some(0.005),
            ttft_s: None,
            tpot_s: None,
            stages,
            cost_micros: 12,
            prompt_tokens: 30,
            completion_tokens: 16,
        };
        g.bench_function(name, |b| b.iter(|| meter.observe(&telemetry.metrics, &report)));
    }
    g.finish();
}

criterion_group!(benches, keys, routing, stage_histograms);
criterion_main!(benches);
