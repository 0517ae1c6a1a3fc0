//! Embedding latency on this machine: `N` (default 500) 30-word prompts, one at a time, p50
//! and p99 in milliseconds. For the one-core figure:
//! `RAYON_NUM_THREADS=1 taskset -c 0 cargo run --release -p sluice-embed --example latency`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let model = sluice_embed::MiniLm::load(&sluice_embed::default_dir()).expect("scripts/fetch-models.sh first");
    let words = [
        "order",
        "blender",
        "jar",
        "cracked",
        "replacement",
        "refund",
        "arrange",
        "quickly",
        "week",
        "arrived",
        "please",
        "help",
        "account",
        "password",
        "reset",
        "billing",
        "invoice",
        "shipping",
        "address",
        "change",
    ];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let prompt: Vec<&str> = (0..30).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        let prompt = prompt.join(" ");
        let t = Instant::now();
        model.embed(&[prompt.as_str()]).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "embed 30 words x {n}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
