//! What the guardrails cost (BENCHMARKS.md): the personal-data and credential pass per KiB,
//! the injection screen and the whole input set on a 4 KiB prompt, and the streaming window
//! over an answer arriving four characters at a time.
//!
//!   cargo bench -p sluice-guard --bench guard

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_guard::{Normalize, Normalized, Released, Window, builtin_matcher, normalize, screen};

include!("support/prompt.rs");

fn bench(c: &mut Criterion) {
    let text = prompt();
    let m = builtin_matcher().unwrap();
    let mut g = c.benchmark_group("guard");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("pii_and_secrets_pass", |b| {
        b.iter(|| black_box(m.find_all(black_box(&text))))
    });
    g.bench_function("injection_screen", |b| {
        b.iter(|| black_box(screen(black_box(&text), "")))
    });
    g.bench_function("input_set", |b| {
        b.iter(|| {
            let mut seen = Normalized::default();
            let t = normalize(black_box(&text), Normalize::default(), &mut seen);
            let hits = m.find_all(&t);
            let s = screen(&t, &seen.smuggled);
            black_box((hits, s))
        })
    });
    g.bench_function("window_4_chars_a_piece", |b| {
        let pieces: Vec<String> = text
            .chars()
            .collect::<Vec<_>>()
            .chunks(4)
            .map(|c| c.iter().collect())
            .collect();
        b.iter(|| {
            let mut w = Window::new(m.clone());
            let mut out = Released::default();
            for p in &pieces {
                w.push(p, false, &mut out);
            }
            w.push("", true, &mut out);
            black_box(out)
        })
    });
    g.bench_function("window_new", |b| b.iter(|| black_box(Window::new(m.clone()))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
