//! `debug_rewrite`: the test response stage. It holds back the last `hold_chars` characters
//! of the answer's text and replaces `from` with `to` in what it releases — a character
//! leaves only once `hold_chars` more have arrived after it (or the answer ended). A match
//! is never split: the window is at least as long as `from`, and a match across the release
//! point waits whole.

use std::sync::Arc;

use sluice_config::DebugRewriteConfig;
use sluice_providers::chat::Delta;

use super::HoldsText;

#[derive(Debug, Clone)]
pub struct RewriteConfig {
    hold: usize,
    from: Arc<str>,
    to: Arc<str>,
}

impl RewriteConfig {
    pub fn new(c: &DebugRewriteConfig) -> RewriteConfig {
        RewriteConfig {
            hold: c.hold_chars,
            from: c.from.as_str().into(),
            to: c.to.as_str().into(),
        }
    }

    pub fn start(&self) -> Rewrite {
        Rewrite {
            config: self.clone(),
            pending: String::new(),
        }
    }
}

/// One answer's window.
pub struct Rewrite {
    config: RewriteConfig,
    /// Text received, not yet released (at most `hold` characters plus one event's text).
    pending: String,
}

impl HoldsText for Rewrite {
    fn pending(&mut self) -> &mut String {
        &mut self.pending
    }

    /// Releases all but the last `hold` characters (all of them at the end).
    fn release(&mut self, all: bool, out: &mut Vec<Delta>) {
        let chars = self.pending.chars().count();
        let keep = if all { 0 } else { self.config.hold.min(chars) };
        let mut cut = self
            .pending
            .char_indices()
            .nth(chars - keep)
            .map_or(self.pending.len(), |(i, _)| i);
        let from = &*self.config.from;
        if let Some((at, _)) = self
            .pending
            .match_indices(from)
            .find(|(at, _)| *at < cut && at + from.len() > cut)
        {
            cut = at; // the match waits whole
        }
        if cut == 0 {
            return;
        }
        let released: String = self.pending.drain(..cut).collect();
        out.push(Delta::Text(released.replace(from, &self.config.to)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::ResponseStage;

    fn run(hold: usize, from: &str, to: &str, pieces: &[&str]) -> Vec<String> {
        let mut s = RewriteConfig::new(&DebugRewriteConfig {
            hold_chars: hold,
            from: from.into(),
            to: to.into(),
        })
        .start();
        let mut seen = Vec::new();
        for p in pieces {
            let mut out = Vec::new();
            s.on_event(Delta::Text((*p).to_owned()), &mut out).unwrap();
            seen.push(out.iter().map(text).collect());
        }
        let mut out = Vec::new();
        s.finish(&mut out).unwrap();
        seen.push(out.iter().map(text).collect());
        seen
    }

    fn text(d: &Delta) -> String {
        match d {
            Delta::Text(t) => t.clone(),
            _ => String::new(),
        }
    }

    #[test]
    fn holds_the_window_and_rewrites_a_match_split_across_pieces() {
        let check = |hold, pieces: &[&str], expected: &[&str]| {
            assert_eq!(run(hold, "secret", "[gone]", pieces), expected, "{pieces:?}");
        };
        check(3, &["abcdef"], &["abc", "def"]);
        check(6, &["the sec", "ret is", " out"], &["t", "he ", "[gone] ", "is out"]);
        check(0, &["a secret", " b"], &["a [gone]", " b", ""]);
        // A match across the release point waits whole; multi-byte text is cut on characters.
        check(6, &["ééé secr", "et"], &["éé", "é ", "[gone]"]);
        check(6, &["xsecretx"], &["x", "[gone]x"]);
    }
}
