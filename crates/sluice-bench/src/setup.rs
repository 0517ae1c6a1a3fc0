//! What every section's setup shares: the bench key, chat request bodies of a given size, and
//! the run's directory (removed afterwards, or kept).

use std::path::PathBuf;

pub(crate) const KEY: &str = "sk-sluice-bench-0000000000000000000000000000";

pub(crate) enum Dir {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Kept(#[allow(dead_code)] PathBuf),
}

/// A section's directory for its files and process logs: removed afterwards, or kept with
/// `SLUICE_BENCH_KEEP` set. Returns its path and the guard that removes it.
pub(crate) fn run_dir(prefix: &str) -> anyhow::Result<(PathBuf, Dir)> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let path = dir.path().to_owned();
    let guard = if std::env::var_os("SLUICE_BENCH_KEEP").is_some() {
        Dir::Kept(dir.keep())
    } else {
        Dir::Temp(dir)
    };
    Ok((path, guard))
}

/// The chat request every proxy section sends, padded in the user turn to `size` bytes: a system
/// prompt, a user turn, a token cap and a temperature (the shape of a typical short request).
pub(crate) fn chat_body(size: usize, model: &str) -> String {
    let body = |content: &str| {
        serde_json::json!({"model": model, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": content}], "max_tokens": 16, "temperature": 0.2})
        .to_string()
    };
    let base = "Write one short sentence about the sea.";
    let pad = size.saturating_sub(body(base).len());
    body(&format!("{base}{}", " ".repeat(pad)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_chat_body_is_the_size_asked_for_and_names_the_model() {
        for size in [250, 1024, 32_768] {
            let body = super::chat_body(size, "mock-gpt");
            assert_eq!(body.len(), size);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["model"], "mock-gpt");
            assert_eq!(v["messages"][0]["role"], "system");
            assert_eq!(v["max_tokens"], 16);
        }
        // Smaller than the shape itself: the shape, unpadded.
        assert!(super::chat_body(10, "m").len() > 10);
    }
}
