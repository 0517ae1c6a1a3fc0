//! `sluice cache eval` on the shipped labelled pairs with the shipped defaults: the semantic
//! cache's false-hit rate stays at or under 1 %, most paraphrases hit, and the hit check is what
//! keeps near-misses out (without it, most of them would be answered from the cache).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn eval(args: &[&str]) -> (Vec<Value>, Value) {
    let out = Command::new(BIN)
        .args(["cache", "eval"])
        .args(args)
        .arg("--model-dir")
        .arg(root().join("models/all-minilm-l6-v2"))
        .output()
        .expect("sluice runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.pop().unwrap()["summary"].clone();
    (lines, summary)
}

#[test]
fn the_shipped_defaults_keep_false_hits_under_one_percent_on_the_labelled_pairs() {
    let pairs = root().join("crates/sluice-cache/eval/pairs.jsonl");
    let (lines, summary) = eval(&[pairs.to_str().unwrap(), "--json"]);
    assert!(lines.len() >= 300, "{} pairs", lines.len());
    let checked = &summary["checked"];
    let unchecked = &summary["unchecked"];
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    assert!(f(checked, "false_hit_rate") <= 0.01, "{summary}");
    assert!(f(checked, "hit_rate") >= 0.80, "{summary}");
    // What the check buys: at the same threshold, without it, most near-misses would hit.
    assert!(f(unchecked, "false_hit_rate") >= 0.30, "{summary}");
}

#[test]
fn a_missing_pairs_file_or_model_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["cache", "eval", "/nonexistent.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jsonl"));
    let pairs = root().join("crates/sluice-cache/eval/pairs.jsonl");
    let out = Command::new(BIN)
        .args(["cache", "eval", pairs.to_str().unwrap(), "--model-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/fetch-models.sh"));
}
