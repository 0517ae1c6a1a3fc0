//! The semantic cache's per-lookup work: a search of one partition holding 10 000 and 100 000
//! prompts (384-dimension vectors), by brute force and through the graph, and the hit check
//! (reading a prompt's features and comparing two).
//!
//! Before searching a graph it prints how long the graph took to build and its recall: of 200
//! queries near a stored prompt (its vector plus noise, similarity about 0.9), the share whose
//! graph answer is the brute-force answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// An index of `n` prompts in one partition, searched through a graph above `graph_above`.
fn filled(n: u64, graph_above: usize) -> SemanticIndex {
    let index = SemanticIndex::new(200_000, graph_above);
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
    // The graph is built by a worker thread: wait for it (the gateway never does).
    index.settle();
    index
}

/// `unit(seed)` moved by noise to about 0.9 similarity: a paraphrase of a stored prompt.
fn near(seed: u64) -> Vec<f32> {
    let noise = unit(seed ^ 0x5EED_5EED_5EED_5EED);
    let mut v: Vec<f32> = unit(seed).iter().zip(&noise).map(|(a, b)| a + 0.484 * b).collect();
    let n = dot(&v, &v).sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// Of 200 queries near stored prompts: the share whose best answer from `graph` is the one
/// from `brute`, the brute-force answers' mean similarity, and each index's mean time per
/// search (each query a new one, as in the gateway: the caches are colder than in the loop).
fn recall(brute: &SemanticIndex, graph: &SemanticIndex, n: u64) -> (f64, f32, [Duration; 2]) {
    let partition = key("t", "partition");
    let (mut same, mut similarity, mut took) = (0, 0.0, [Duration::ZERO; 2]);
    for q in 0..200u64 {
        let v = near(q * (n / 200) + 7);
        let started = Instant::now();
        let exact = brute.search(&partition, &v, 0.0, 1);
        took[0] += started.elapsed();
        let started = Instant::now();
        let found = graph.search(&partition, &v, 0.0, 1);
        took[1] += started.elapsed();
        similarity += exact[0].similarity;
        if found.first().map(|c| &c.entry) == Some(&exact[0].entry) {
            same += 1;
        }
    }
    (f64::from(same) / 200.0, similarity / 200.0, took.map(|t| t / 200))
}

fn search(c: &mut Criterion) {
    const SIZES: [u64; 2] = [10_000, 100_000];
    /// Far below 10 000: both graph runs are searched through their graph.
    const GRAPH: usize = 1_000;
    // Built on first use, so that a run filtered to other benchmarks builds none (a graph of
    // 100 000 prompts takes minutes).
    let brute: [OnceLock<SemanticIndex>; 2] = Default::default();
    let graph: [OnceLock<SemanticIndex>; 2] = Default::default();
    let partition = key("t", "partition");
    let mut g = c.benchmark_group("semantic_search");
    for (how, indexes) in [("brute", &brute), ("graph", &graph)] {
        for (i, n) in SIZES.into_iter().enumerate() {
            // A query like no stored prompt: nothing reaches the threshold.
            let q = unit(n + 1);
            g.bench_with_input(BenchmarkId::new(how, n), &n, |b, &n| {
                let index = indexes[i].get_or_init(|| {
                    if how == "brute" {
                        return filled(n, usize::MAX);
                    }
                    let started = Instant::now();
                    let index = filled(n, GRAPH);
                    let built = started.elapsed();
                    let exact = brute[i].get_or_init(|| filled(n, usize::MAX));
                    let (share, similarity, took) = recall(exact, &index, n);
                    println!(
                        "semantic graph at {n} prompts: built in {built:.1?}; of 200 queries near \
                         a stored prompt (similarity {similarity:.3} on average), {:.1}% answered \
                         as by brute force; {:.2?} each through the graph, {:.2?} by brute force",
                        share * 100.0,
                        took[1],
                        took[0],
                    );
                    index
                });
                b.iter(|| index.search(&partition, &q, 0.7, 4));
            });
        }
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
