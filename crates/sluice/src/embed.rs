//! `sluice embed`: the gateway's own sentence embeddings (the in-process all-MiniLM-L6-v2 the
//! semantic cache and the injection classifier run) for texts read from standard input — one
//! per line, as a JSON string or an object with a `text` member, else the line as it is — one
//! JSON array per text on standard output. Offline tools (the injection head's training
//! script) use it, so what they learn on is what the gateway computes.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;

/// How many texts go through the model at once.
const BATCH: usize = 32;

pub fn run(model_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = model_dir.unwrap_or_else(sluice_embed::default_dir);
    let model = sluice_embed::MiniLm::load(&dir)
        .with_context(|| format!("cannot load the embedding model from {}", dir.display()))?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<String>, out: &mut dyn Write| -> anyhow::Result<()> {
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        for v in model.embed(&texts)? {
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")?;
        }
        batch.clear();
        Ok(())
    };
    for line in stdin.lines() {
        batch.push(text_of(&line?));
        if batch.len() == BATCH {
            flush(&mut batch, &mut out)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// A line's text: a JSON string, an object's `text`, or the line itself.
fn text_of(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => match o.get("text") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => line.to_owned(),
        },
        _ => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::text_of;

    #[test]
    fn a_line_is_a_string_an_object_or_itself() {
        assert_eq!(text_of(r#""a \"quoted\" text""#), r#"a "quoted" text"#);
        assert_eq!(text_of(r#"{"text": "hi", "split": "train"}"#), "hi");
        assert_eq!(text_of("plain words"), "plain words");
        assert_eq!(text_of("12"), "12");
    }
}
