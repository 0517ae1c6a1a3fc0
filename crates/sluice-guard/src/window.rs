//! The streaming hold-back window: text arrives in pieces; what leaves is decided text only —
//! nothing a pattern could still match across the next piece. A piece of ordinary prose is
//! held back only from where a match could still be growing (the last word, a number in
//! progress), not by a fixed length; a credential's prefix (`-----BEGIN … PRIVATE KEY-----`)
//! holds until its end. However the text is split, the findings are the same as for the whole
//! text (a property test holds it to that).

use std::sync::Arc;

use regex_automata::hybrid::dfa::Cache as DfaCache;

use crate::matcher::{Hit, Hold, Matcher};

/// The most text a window holds: past it, what is held is decided as if the text ended there.
pub const MAX_HOLD_BYTES: usize = 64 * 1024;

/// One stream's window over a [`Matcher`].
#[derive(Debug)]
pub struct Window {
    matcher: Arc<Matcher>,
    /// The DFA's cache (taken back by the matcher when the window is dropped).
    cache: Option<DfaCache>,
    /// Held text, after `ctx` bytes of released text kept for look-behind (`\b`, a validator's
    /// look at the character before).
    buf: String,
    ctx: usize,
    hold: Hold,
    /// The longest hold so far (bytes), for the metrics.
    peak: usize,
}

/// What one piece released: text, and the findings in it (offsets into `text`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    pub text: String,
    pub hits: Vec<Hit>,
}

impl Window {
    pub fn new(matcher: Arc<Matcher>) -> Window {
        Window {
            cache: Some(matcher.dfa_cache()),
            matcher,
            buf: String::new(),
            ctx: 0,
            hold: Hold::default(),
            peak: 0,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.buf.len() - self.ctx
    }

    /// The longest hold so far, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Takes one more piece; `end` says it is the last. Appends what is decided to `out`.
    pub fn push(&mut self, piece: &str, end: bool, out: &mut Released) {
        self.buf.push_str(piece);
        if self.hold.at < self.ctx {
            self.hold.restart(self.ctx);
        }
        let forced = self.buf.len() - self.ctx > MAX_HOLD_BYTES;
        let eos = end || forced;
        let settled = if eos {
            self.buf.len()
        } else {
            if let Some(cache) = self.cache.as_mut() {
                self.matcher.hold(cache, &self.buf, &mut self.hold);
            }
            self.hold.at
        };
        if settled == self.ctx && !eos {
            // Nothing is decided yet (a word, a number in progress): hold it all.
            self.peak = self.peak.max(self.buf.len() - self.ctx);
            return;
        }
        let decided = if !eos && self.hold.candidate.is_none_or(|c| c >= settled) {
            // No run from the decided text ever matched: it holds no finding.
            settled
        } else {
            let base = out.text.len();
            let first = out.hits.len();
            let decided = self
                .matcher
                .scan(None, &self.buf, (self.ctx, settled), eos, &mut out.hits);
            for h in &mut out.hits[first..] {
                h.start = h.start - self.ctx + base;
                h.end = h.end - self.ctx + base;
            }
            // What the regex left undecided it looks at again next time; so is a run still in
            // progress that has matched already.
            self.hold.candidate = if decided < settled {
                Some(decided)
            } else {
                self.hold
                    .run_matched
                    .then_some(self.hold.at)
                    .filter(|&at| at >= decided)
            };
            decided
        };
        out.text.push_str(&self.buf[self.ctx..decided]);
        self.peak = self.peak.max(self.buf.len() - decided);
        // Keep the last released character as context; drop what is before it.
        let keep_from = self.buf[..decided]
            .char_indices()
            .next_back()
            .map_or(decided, |(i, _)| i);
        self.buf.drain(..keep_from);
        self.ctx = decided - keep_from;
        if self.hold.at < decided || eos {
            // Inside a released finding (or the text ended): start over after it.
            self.hold.restart(decided);
        }
        self.hold.shift(keep_from);
        if eos && !end {
            // Forced: what was held is out; the window starts afresh.
            self.hold.restart(self.ctx);
            self.hold.candidate = None;
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            self.matcher.give_back(cache);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::kind::Kind;
    use crate::redact::builtin_matcher;

    /// The cut points of `cuts` that fall on characters of `text`, in order.
    fn bounds(text: &str, cuts: &[usize]) -> Vec<usize> {
        let mut b: Vec<usize> = cuts
            .iter()
            .map(|&c| c.min(text.len()))
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        b.sort_unstable();
        b
    }

    /// The findings of a text fed in pieces cut at `cuts`, as (kind, matched text).
    fn streamed(text: &str, cuts: &[usize]) -> (String, Vec<(Kind, String)>) {
        let mut w = Window::new(builtin_matcher().unwrap());
        let mut out = Released::default();
        let mut last = 0;
        let bounds = bounds(text, cuts);
        for c in bounds {
            w.push(&text[last..c], false, &mut out);
            last = c;
        }
        w.push(&text[last..], true, &mut out);
        let found = out
            .hits
            .iter()
            .map(|h| (h.label.kind, out.text[h.start..h.end].to_owned()))
            .collect();
        (out.text, found)
    }

    fn whole(text: &str) -> Vec<(Kind, String)> {
        builtin_matcher()
            .unwrap()
            .find_all(text)
            .iter()
            .map(|h| (h.label.kind, text[h.start..h.end].to_owned()))
            .collect()
    }

    #[test]
    fn holds_only_what_could_still_match() {
        let mut w = Window::new(builtin_matcher().unwrap());
        let mut out = Released::default();
        w.push("Write to me at bob", false, &mut out);
        // "bob" could become an address; the words before it cannot.
        assert_eq!(out.text, "Write to me at ");
        w.push("@example.com today", false, &mut out);
        assert_eq!(out.text, "Write to me at bob@example.com ");
        assert_eq!(out.hits.len(), 1);
        w.push("", true, &mut out);
        assert_eq!(out.text, "Write to me at bob@example.com today");
    }

    #[test]
    fn a_private_key_holds_until_its_end() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----";
        let text = format!("here: {key} done");
        let (_, found) = streamed(&text, &[10, 20, 40, 60, 75]);
        assert_eq!(found, vec![(Kind::PrivateKey, key.to_owned())]);
        // Cut off before its end, the rest of the text is the key.
        let cut = "x -----BEGIN PRIVATE KEY-----\nMIIEow";
        assert_eq!(whole(cut), vec![(Kind::PrivateKey, cut[2..].to_owned())]);
    }

    fn sample_text() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "bob@example.com",
            "Call +44 20 7946 0958 now",
            "card 4111 1111 1111 1111.",
            "Is 7411 a prime number?",
            "IBAN DE89 3704 0044 0532 0130 00 ok",
            "ssn 123-45-6789",
            "host 192.168.10.200 and 2001:db8::8a2e:370:7334",
            "AKIAQWERTYUIOPASDF23",
            "ghp_Zk3q9XvR2mT8wPbL7nYc4HdJ1aB2cD3eF4gH",
            " ",
            "é",
            "\n",
            "sk-proj-Zk3q9XvR2mT8wPbL7nYc4HdJ1aB2",
            "version 1.2.3.4.5",
            "(555) 123-4567",
            "06 12 34 56 78",
            "plain words here",
            "eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4",
            "-----BEGIN PRIVATE KEY-----",
            "abc",
            "-----END PRIVATE KEY-----",
            "aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYzq9XvR2mT8wP",
        ]);
        prop::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
    }

    /// Each finding's text is first released by the push that reports it: no part of a
    /// finding ever leaves before the finding is decided (a blocking rule stops it whole).
    fn released_with_its_finding(text: &str, cuts: &[usize]) -> bool {
        let mut w = Window::new(builtin_matcher().unwrap());
        let mut out = Released::default();
        let mut bounds = bounds(text, cuts);
        bounds.push(text.len());
        let mut last = 0;
        for (i, c) in bounds.iter().enumerate() {
            let before = out.text.len();
            let hits_before = out.hits.len();
            w.push(&text[last..*c], i + 1 == bounds.len(), &mut out);
            if out.hits[hits_before..].iter().any(|h| h.start < before) {
                return false;
            }
            last = *c;
        }
        true
    }

    #[test]
    fn a_unicode_word_boundary_pattern_streams_like_the_whole_text() {
        let label = crate::Label {
            kind: Kind::Denied,
            rule: 0,
        };
        let m = std::sync::Arc::new(Matcher::new(&[(label, r"(?i)\bfalcon\b")]).unwrap());
        for cuts in [vec![], vec![3], vec![9, 10, 11], vec![14]] {
            let text = "über Falcon, not falcons";
            let mut w = Window::new(m.clone());
            let mut out = Released::default();
            let mut last = 0;
            for c in cuts {
                w.push(&text[last..c], false, &mut out);
                last = c;
            }
            w.push(&text[last..], true, &mut out);
            let found: Vec<&str> = out.hits.iter().map(|h| &out.text[h.start..h.end]).collect();
            assert_eq!(found, ["Falcon"]);
        }
    }

    /// Texts where a cut-off private key meets another finding, split at every place: the
    /// window finds what the whole text has (a token running over the key's header takes it).
    #[test]
    fn a_cut_off_key_next_to_another_finding_reads_the_same_split_anywhere() {
        for text in [
            "eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4-----BEGIN PRIVATE KEY-----",
            "mail a@b.io -----BEGIN RSA PRIVATE KEY-----\nMIIEow 555-123-4567",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY----- then -----BEGIN PRIVATE KEY-----\nBBBB",
        ] {
            for cut in 0..=text.len() {
                if text.is_char_boundary(cut) {
                    assert_eq!(streamed(text, &[cut]).1, whole(text), "{text:?} cut at {cut}");
                }
            }
        }
        let cut = "mail a@b.io -----BEGIN RSA PRIVATE KEY-----\nMIIEow 555-123-4567";
        assert_eq!(
            whole(cut).last().map(|(k, v)| (*k, v.as_str())),
            Some((Kind::PrivateKey, &cut[12..])),
            "the key runs to the end, and what is inside it is the key's"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn a_finding_never_leaves_before_it_is_decided(text in sample_text(), cuts in prop::collection::vec(0usize..400, 0..12)) {
            prop_assert!(released_with_its_finding(&text, &cuts));
        }

        /// However a text is split, the window releases all of it, and finds what the whole
        /// text has.
        #[test]
        fn split_anywhere_finds_the_same(text in sample_text(), cuts in prop::collection::vec(0usize..400, 0..12)) {
            let (released, found) = streamed(&text, &cuts);
            prop_assert_eq!(&released, &text);
            prop_assert_eq!(found, whole(&text));
        }
    }
}
