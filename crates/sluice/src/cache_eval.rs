//! `sluice cache eval PAIRS.jsonl`: the semantic cache's decision on each labelled pair with a
//! route's settings (or the shipped defaults), and the hit and false-hit rates by threshold
//! with and without the hit check — so anyone can audit the defaults.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice_cache::semantic::eval::{Pair, Rates, Scored, Settings, best_threshold, rates};
use sluice_config::{DEFAULT_EMBEDDER_PATH, DEFAULT_SEMANTIC_MIN_CHARS, DEFAULT_SEMANTIC_THRESHOLD};

pub struct EvalArgs {
    pub pairs: PathBuf,
    pub config: Option<PathBuf>,
    pub route: Option<String>,
    pub model_dir: Option<PathBuf>,
    /// One JSON object per pair, then one for the summary.
    pub json: bool,
}

/// The settings and model directory: the route's, the config's, or the defaults.
fn settings(args: &EvalArgs) -> anyhow::Result<(Settings, PathBuf)> {
    let mut s = Settings {
        threshold: DEFAULT_SEMANTIC_THRESHOLD as f32,
        verify: true,
        min_chars: DEFAULT_SEMANTIC_MIN_CHARS as usize,
    };
    let mut dir = PathBuf::from(DEFAULT_EMBEDDER_PATH);
    if let Some(path) = &args.config {
        let config = sluice_config::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        dir = config.embedder.path.clone();
        let routes = config.routes.iter();
        let semantic = match &args.route {
            Some(name) => routes
                .filter(|r| &r.name == name)
                .find_map(|r| r.policy.cache.as_ref()?.semantic.clone())
                .with_context(|| format!("route {name:?} has no semantic cache"))?,
            None => routes
                .filter_map(|r| r.policy.cache.as_ref()?.semantic.clone())
                .next()
                .context("no route in the config has a semantic cache")?,
        };
        s = Settings {
            threshold: semantic.threshold,
            verify: semantic.verify,
            min_chars: semantic.min_chars,
        };
    }
    if let Some(d) = &args.model_dir {
        dir.clone_from(d);
    }
    Ok((s, dir))
}

fn read_pairs(path: &Path) -> anyhow::Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a pair", path.display(), n + 1)))
        .collect()
}

/// Embeds both sides of every pair and scores them.
pub fn score(pairs: Vec<Pair>, dir: &Path, min_chars: usize) -> anyhow::Result<Vec<Scored>> {
    let model = sluice_embed::MiniLm::load(dir)?;
    let mut scored = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(16) {
        let texts: Vec<&str> = chunk.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
        let v = model.embed(&texts)?;
        for (p, ab) in chunk.iter().zip(v.chunks(2)) {
            if let [a, b] = ab {
                scored.push(Scored::new(p.clone(), a, b, min_chars));
            }
        }
    }
    Ok(scored)
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let (s, dir) = settings(args)?;
    let scored = score(read_pairs(&args.pairs)?, &dir, s.min_chars)?;
    let mut out = std::io::stdout().lock();
    for p in &scored {
        let check = match p.agreement {
            Ok(()) => "agree",
            Err(d) => d.as_str(),
        };
        let decision = if p.hit(s) { "hit" } else { "miss" };
        let right = p.hit(s) == p.pair.same;
        if args.json {
            let line = serde_json::json!({"a": p.pair.a, "b": p.pair.b, "same": p.pair.same, "kind": p.pair.kind,
                "similarity": p.similarity, "check": check, "decision": decision, "right": right});
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{:.3}  {decision:<4}  {check:<9}  {:<5}  {:<10}  {} | {}",
                p.similarity,
                if right { "ok" } else { "WRONG" },
                if p.pair.same { "same" } else { p.pair.kind.as_str() },
                p.pair.a,
                p.pair.b
            )?;
        }
    }
    let at = |verify| rates(&scored, Settings { verify, ..s });
    let best = |verify| best_threshold(&scored, verify, s.min_chars, 0.01);
    if args.json {
        let r = |r: Option<Rates>| {
            r.map(|r| serde_json::json!({"threshold": r.threshold, "hit_rate": r.hit_rate, "false_hit_rate": r.false_hit_rate}))
        };
        let summary = serde_json::json!({"summary": {
            "pairs": scored.len(), "threshold": s.threshold, "verify": s.verify, "min_chars": s.min_chars,
            "checked": r(Some(at(true))), "unchecked": r(Some(at(false))),
            "best_checked": r(best(true)), "best_unchecked": r(best(false)),
        }});
        writeln!(out, "{summary}")?;
        return Ok(());
    }
    let same = scored.iter().filter(|p| p.pair.same).count();
    writeln!(
        out,
        "\n{} pairs ({same} paraphrases, {} near-misses); threshold {:.2}, check {}, min_chars {}",
        scored.len(),
        scored.len() - same,
        s.threshold,
        if s.verify { "on" } else { "off" },
        s.min_chars
    )?;
    writeln!(
        out,
        "\nthreshold   hit rate (checked / unchecked)   false hits (checked / unchecked)"
    )?;
    for t in (60..=98).step_by(2) {
        let t = t as f32 / 100.0;
        let (c, u) = (
            rates(
                &scored,
                Settings {
                    threshold: t,
                    verify: true,
                    ..s
                },
            ),
            rates(
                &scored,
                Settings {
                    threshold: t,
                    verify: false,
                    ..s
                },
            ),
        );
        writeln!(
            out,
            "  {t:.2}      {:5.1} % / {:5.1} %                 {:5.1} % / {:5.1} %",
            c.hit_rate * 100.0,
            u.hit_rate * 100.0,
            c.false_hit_rate * 100.0,
            u.false_hit_rate * 100.0
        )?;
    }
    for (name, b) in [("checked", best(true)), ("unchecked", best(false))] {
        match b {
            Some(b) => writeln!(
                out,
                "best {name} threshold with at most 1 % false hits: {:.2} ({:.1} % hits, {:.1} % false hits)",
                b.threshold,
                b.hit_rate * 100.0,
                b.false_hit_rate * 100.0
            )?,
            None => writeln!(out, "best {name} threshold: none keeps false hits at or under 1 %")?,
        }
    }
    Ok(())
}
