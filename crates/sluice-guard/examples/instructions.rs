//! Instructions per call of the guard library's input work on the benchmark's 4 KiB prompt, for
//! a count that does not move with the machine's load (valgrind). Run `N` calls of one part:
//!
//!   cargo build --release -p sluice-guard --example instructions
//!   valgrind --tool=callgrind target/release/examples/instructions set 50   # and 0; subtract
//!
//! Parts: `pii` (the pass), `screen`, `set` (normalise, pass, screen), and the screen's views
//! one by one (`fold`, `looks`, `decoded`, `unspaced`, `lower`). `scripts/bench-guard.sh` does
//! the subtraction.

#![allow(clippy::unwrap_used)]

use sluice_guard::{Normalize, Normalized, builtin_matcher, normalize, screen};
use std::hint::black_box;

include!("../benches/support/prompt.rs");

fn main() {
    let text = prompt();
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let m = builtin_matcher().unwrap();
    let _ = screen("warm", "");
    for _ in 0..n {
        match what.as_str() {
            "pii" => {
                black_box(m.find_all(black_box(&text)));
            }
            "screen" => {
                black_box(screen(black_box(&text), ""));
            }
            "fold" => {
                black_box(sluice_guard::fold::fold(black_box(&text)));
            }
            "looks" => {
                black_box(sluice_guard::fold::looks_encoded(black_box(&text)));
            }
            "decoded" => {
                black_box(sluice_guard::fold::decoded(black_box(&text)));
            }
            "unspaced" => {
                let f = sluice_guard::fold::fold(&text);
                black_box(sluice_guard::fold::unspaced(black_box(&f)));
            }
            "lower" => {
                black_box(black_box(&text).to_ascii_lowercase());
            }
            _ => {
                let mut seen = Normalized::default();
                let t = normalize(black_box(&text), Normalize::default(), &mut seen);
                black_box((m.find_all(&t), screen(&t, &seen.smuggled)));
            }
        }
    }
}
