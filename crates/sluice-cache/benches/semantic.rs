//! The semantic cache's per-lookup work: a brute-force search of one partition holding 10 000
//! and 100 000 prompts (384-dimension vectors), and the hit check (reading a prompt's features
//! and comparing two).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice_cache::semantic::{Features, SemanticIndex, dot};
use sluice_cache::{CacheKey, KeyParts, Scope};
use sluice_config::CacheScope;

fn key(tenant: &str, body: &str) -> CacheKey {
    let (t, k): (Arc<str>, Arc<str>) = (Arc::from(tenant), Arc::from("k"));
    CacheKey::new(
        &Scope::of(CacheScope::Tenant, Some(&t), None, &k),
        &KeyParts {
            route: "r",
            policy_version: "v",
            endpoint: "chat",
            model: "m",
            headers: &[],
            body: body.as_bytes(),
        },
    )
}

/// A unit vector from a seed (a cheap generator: the search does not care what they mean).
fn unit(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..384)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn search(c: &mut Criterion) {
    let mut g = c.benchmark_group("semantic_search");
    for n in [10_000u64, 100_000] {
        let index = SemanticIndex::new(200_000);
        let partition = key("t", "partition");
        let features = Features::of("What is the capital of France?");
        for i in 0..n {
            index.insert(
                partition.clone(),
                key("t", &i.to_string()),
                &unit(i),
                features.clone(),
                Duration::from_secs(3600),
            );
        }
        let q = unit(n + 1);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| index.search(&partition, &q, 0.7, 4));
        });
    }
    g.finish();
}

fn check(c: &mut Criterion) {
    let (a, b) = (
        "How do I get from Heathrow Airport to central London by train, and how long does it take?",
        "What's the fastest way to get to central London from Heathrow by train, and how long is it?",
    );
    c.bench_function("semantic_features_30_words", |bench| bench.iter(|| Features::of(a)));
    let (fa, fb) = (Features::of(a), Features::of(b));
    c.bench_function("semantic_agree", |bench| bench.iter(|| fa.agree(&fb)));
}

criterion_group!(benches, search, check);
criterion_main!(benches);
