//! `sluice guard eval ROWS.jsonl`: the shipped guardrails' verdict on each labelled row — the
//! injection screen's score and signals, the personal data and credentials found — and the
//! detection and false-positive rates per category and split, so anyone can re-score the
//! defaults (GUARDRAILS.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use sluice_guard::eval::{Row, Verdict, tally, verdict};

pub struct EvalArgs {
    pub rows: PathBuf,
    /// The injection threshold (default: the shipped one).
    pub threshold: Option<f32>,
    /// One JSON object per row, then one per tally.
    pub json: bool,
    /// Also score each row with the classifier head over its embedding (from this model
    /// directory); a row fires when the screen or the classifier does.
    pub classifier: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let matcher = sluice_guard::builtin_matcher().context("the built-in patterns did not compile")?;
    let threshold = args
        .threshold
        .unwrap_or(sluice_config::DEFAULT_INJECTION_THRESHOLD as f32);
    let text = std::fs::read_to_string(&args.rows).with_context(|| format!("cannot read {}", args.rows.display()))?;
    let mut scored: Vec<(Row, Verdict)> = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Row =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a row", args.rows.display(), n + 1))?;
        let v = verdict(&matcher, &row.text);
        scored.push((row, v));
    }
    if let Some(dir) = &args.classifier {
        let head = sluice_guard::head::Head::shipped().context("the shipped classifier head does not read")?;
        let model = sluice_embed::MiniLm::load(dir)
            .with_context(|| format!("cannot load the embedding model from {}", dir.display()))?;
        for chunk in scored.chunks_mut(32) {
            let texts: Vec<&str> = chunk.iter().map(|(r, _)| r.text.as_str()).collect();
            let embeddings = model.embed(&texts)?;
            for ((_, v), e) in chunk.iter_mut().zip(embeddings) {
                let s = head.score(&e);
                v.classifier = Some((s, s >= head.threshold));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (row, v) in &scored {
        let found: Vec<String> = v.found.iter().map(|(k, s)| format!("{}:{s}", k.name())).collect();
        if args.json {
            let line = serde_json::json!({
                "category": row.category, "split": row.split, "injection": row.injection,
                "score": v.score, "fired": v.fires(threshold), "signals": v.signals,
                "classifier": v.classifier.map(|(s, _)| s),
                "found": found, "expect": row.expect,
            });
            writeln!(out, "{line}")?;
        } else {
            let fired = if v.fires(threshold) { "FIRES" } else { "-" };
            writeln!(
                out,
                "{:<22} {:<5} score {:.2} {fired:<5} {:?} {:?}  {}",
                row.category,
                row.split.as_deref().unwrap_or("test"),
                v.score,
                v.signals,
                found,
                row.text.chars().take(80).collect::<String>().replace('\n', " ")
            )?;
        }
    }
    // With `--json` every line is one JSON object: the rows, the threshold, the tallies.
    if args.json {
        writeln!(out, "{}", serde_json::json!({ "threshold": threshold }))?;
    } else {
        writeln!(out)?;
        writeln!(out, "threshold {threshold:.2}")?;
    }
    for ((split, category), t) in tally(&scored, threshold) {
        let pct = |a: u32, b: u32| {
            if b == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}%", 100.0 * f64::from(a) / f64::from(b))
            }
        };
        if args.json {
            let line = serde_json::json!({
                "split": split, "category": category, "positives": t.positives, "caught": t.caught,
                "negatives": t.negatives, "false_alarms": t.false_alarms, "values": t.values, "values_found": t.values_found,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{split:<5} {category:<22} detected {:>6} of {:>4}   false positives {:>6} of {:>4} rows   values found {:>6} of {:>4}",
                pct(t.caught, t.positives),
                t.positives,
                pct(t.false_alarms, t.negatives + t.positives),
                t.negatives + t.positives,
                pct(t.values_found, t.values),
                t.values,
            )?;
        }
    }
    Ok(())
}
