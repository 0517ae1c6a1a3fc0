//! Resident memory against the in-process tier's budget: `N` small entries (default 1 000 000,
//! a short answer each, distinct keys in a few tenants) into a tier of `MiB` (default 256), and
//! the process's RSS before and after, against the bytes the tier says it holds. An answer is
//! kept whole (an OpenAI chat body, as a whole answer is stored) or, with `chat`, in canonical
//! form (as a stream's is).
//! `cargo run --release -p sluice-cache --example memory [N] [MiB] [padding bytes per answer] [whole|chat]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use sluice_cache::{Answer, CacheKey, Entry, KeyParts, MemoryTier, Scope, Whole};
use sluice_config::CacheScope;
use sluice_providers::chat::{ChatResponse, Part};

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let pad: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let chat = args.next().is_some_and(|a| a == "chat");
    let padding = "x".repeat(pad);
    let before = rss();
    let tier = MemoryTier::new(mib << 20, 100);
    let tenants: Vec<Arc<str>> = (0..16).map(|t| Arc::from(format!("tenant-{t}"))).collect();
    let key_id: Arc<str> = Arc::from("k");
    for i in 0..n {
        let scope = Scope::of(CacheScope::Tenant, Some(&tenants[i % 16]), None, &key_id);
        let body = format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"question {i}\"}}]}}");
        let key = CacheKey::new(
            &scope,
            &KeyParts {
                route: "r",
                policy_version: "v",
                endpoint: "chat",
                model: "m",
                headers: &[],
                body: body.as_bytes(),
            },
        );
        let text = format!("A short answer to question number {i}.{padding}");
        let answer = if chat {
            Answer::Chat(ChatResponse {
                id: format!("chatcmpl-{i}"),
                model: "m".into(),
                content: vec![Part::Text(text)],
                stop_reason: None,
                stop_sequence: None,
                usage: Default::default(),
            })
        } else {
            let body = format!(
                r#"{{"id":"chatcmpl-{i}","object":"chat.completion","created":1767225600,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":8,"completion_tokens":8,"total_tokens":16}}}}"#
            );
            Answer::Whole(Whole {
                wire: sluice_providers::Wire::OpenAi,
                bytes: bytes::Bytes::from(body),
                usage: Default::default(),
            })
        };
        tier.insert(
            key,
            Arc::new(Entry::new(answer, 1, Duration::from_secs(3600), Duration::ZERO)),
        );
    }
    let after = rss();
    let grown = after.saturating_sub(before);
    println!(
        "{n} {} entries into {mib} MiB: tier holds {} entries, {:.1} MiB by its measure; RSS grew {:.1} MiB ({:.0} % of the budget)",
        if chat { "canonical" } else { "whole" },
        tier.entries(),
        tier.bytes() as f64 / 1048576.0,
        grown as f64 / 1048576.0,
        grown as f64 * 100.0 / (mib << 20) as f64
    );
}
