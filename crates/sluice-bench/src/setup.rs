//! What every section's setup shares: the bench key, chat request bodies of a given size, and
//! the run's directory (removed afterwards, or kept).

use std::path::PathBuf;

pub(crate) const KEY: &str = "sk-sluice-bench-0000000000000000000000000000";

pub(crate) enum Dir {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Kept(#[allow(dead_code)] PathBuf),
}

pub(crate) fn chat_body(size: usize) -> String {
    let base = serde_json::json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": ""}]})
        .to_string();
    let pad = size.saturating_sub(base.len());
    serde_json::json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "x".repeat(pad)}]})
        .to_string()
}
