//! One pass over a text for every pattern a guard set holds: a leftmost-first multi-pattern
//! regex finds candidates (its literal prefilter skips text that cannot start one), the
//! validators decide them, and an anchored lazy DFA over the same patterns says where a match
//! could still be growing at the end of a partial text — what a stream must hold back.

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::meta::{self, Regex};
use regex_automata::{Anchored, Input, PatternID};
use regex_syntax::hir::{Capture, Hir, HirKind, Look, Repetition};

use crate::kind::Kind;
use crate::validate;

/// Who a pattern belongs to: its kind and the index of its rule in the caller's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub kind: Kind,
    pub rule: u32,
}

/// One finding: a labelled span of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub label: Label,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("pattern {index} is not a valid pattern: {message}")]
    Pattern { index: usize, message: String },
}

/// Every pattern of a guard set, compiled once with the config.
#[derive(Debug)]
pub struct Matcher {
    regex: Regex,
    dfa: DFA,
    labels: Vec<Label>,
    /// The first private-key pattern: a key whose end marker never comes is found from its
    /// header to the text's end (see [`Matcher::truncated_key`]).
    private_key: Option<PatternID>,
    /// Warm DFA caches for the next streams: a lazy DFA builds its states as it meets them,
    /// and a stream starting cold would pay for that again every time.
    caches: std::sync::Mutex<Vec<DfaCache>>,
}

/// How many warm caches a matcher keeps.
const WARM_CACHES: usize = 16;

impl Matcher {
    /// Compiles `patterns` (in priority order: where two match at one place, the first valid
    /// one wins).
    pub fn new<S: AsRef<str>>(patterns: &[(Label, S)]) -> Result<Matcher, MatcherError> {
        let texts: Vec<&str> = patterns.iter().map(|(_, p)| p.as_ref()).collect();
        for (index, p) in texts.iter().enumerate() {
            Regex::new(p).map_err(|e| MatcherError::Pattern {
                index,
                message: e.to_string(),
            })?;
        }
        let regex = Regex::new_many(&texts).map_err(|e| MatcherError::Pattern {
            index: 0,
            message: e.to_string(),
        })?;
        // The liveness DFA reads the same patterns with Unicode word boundaries dropped (a lazy
        // DFA has none; without them a pattern matches more, so it holds at least as long).
        let mut hirs = Vec::with_capacity(texts.len());
        for (index, p) in texts.iter().enumerate() {
            let hir = regex_syntax::Parser::new()
                .parse(p)
                .map_err(|e| MatcherError::Pattern {
                    index,
                    message: e.to_string(),
                })?;
            hirs.push(loosen(&hir));
        }
        let nfa = regex_automata::nfa::thompson::Compiler::new()
            .build_many_from_hir(&hirs)
            .map_err(|e| MatcherError::Pattern {
                index: 0,
                message: e.to_string(),
            })?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .starts_for_each_pattern(false)
                    // Never give up on a busy cache: clear it and go on.
                    .minimum_cache_clear_count(None)
                    .cache_capacity(512 << 10),
            )
            .build_from_nfa(nfa)
            .map_err(|e| MatcherError::Pattern {
                index: 0,
                message: e.to_string(),
            })?;
        Ok(Matcher {
            regex,
            dfa,
            private_key: patterns
                .iter()
                .position(|(l, _)| l.kind == Kind::PrivateKey)
                .and_then(|i| PatternID::new(i).ok()),
            labels: patterns.iter().map(|(l, _)| *l).collect(),
            caches: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The labels, in pattern order.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Every finding in a whole text (what a stream of it finds, however it is split).
    pub fn find_all(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.scan(None, text, (0, text.len()), true, &mut hits);
        hits
    }

    /// Findings in `text[from..]` that are decided: a candidate starting before `settled`
    /// (where no match can still be growing) and not ending at the text's end — unless `eos`,
    /// when the text is whole. Pushes them in order and returns how far the text is decided:
    /// the end of the last finding or the start of the first undecided candidate, whichever
    /// is further, but never past `settled` unless a finding reaches further.
    pub(crate) fn scan(
        &self,
        mut cache: Option<&mut meta::Cache>,
        text: &str,
        (from, settled): (usize, usize),
        eos: bool,
        out: &mut Vec<Hit>,
    ) -> usize {
        let mut at = from;
        // A whole text with a private key that never ends: the key runs from its header to
        // the end, unless a finding that starts earlier runs over the header (as one match
        // of a pattern ending in `(?s:.)*` would have been passed over).
        let mut truncated = if eos { self.truncated_key(text, from) } else { None };
        while at < text.len() {
            let input = Input::new(text).range(at..);
            let found = match cache.as_deref_mut() {
                Some(c) => self.regex.search_with(c, &input),
                None => self.regex.search(&input),
            };
            let Some(m) = found else {
                break;
            };
            if truncated.is_some_and(|(start, _)| m.start() >= start) {
                break;
            }
            let undecided = !eos && (m.start() >= settled || m.end() == text.len());
            if undecided {
                return settled.min(m.start()).max(at);
            }
            match self.decide(text, m.start(), m.pattern(), m.end()) {
                Some(hit) => {
                    out.push(hit);
                    at = hit.end.max(m.start() + 1);
                    if truncated.is_some_and(|(start, _)| hit.end > start) {
                        truncated = self.truncated_key(text, hit.end);
                    }
                }
                None => at = next_char(text, m.start()),
            }
        }
        if let Some((start, label)) = truncated {
            out.push(Hit {
                label,
                start,
                end: text.len(),
            });
        }
        if eos {
            text.len()
        } else {
            settled.max(at).min(text.len())
        }
    }

    /// The first private-key header in `text[from..]` with no end marker after it (a complete
    /// key is passed over), and the label it is found under.
    fn truncated_key(&self, text: &str, from: usize) -> Option<(usize, Label)> {
        static HEADER: std::sync::LazyLock<Option<Regex>> =
            std::sync::LazyLock::new(|| Regex::new("-----BEGIN[A-Z0-9 ]{0,24}PRIVATE KEY-----").ok());
        let pid = self.private_key?;
        let label = *self.labels.get(pid.as_usize())?;
        let header = HEADER.as_ref()?;
        let mut at = from;
        while let Some(h) = header.search(&Input::new(text).range(at..)) {
            let whole = Input::new(text).range(h.start()..).anchored(Anchored::Pattern(pid));
            match self.regex.search(&whole) {
                Some(key) => at = key.end(),
                None => return Some((h.start(), label)),
            }
        }
        None
    }

    /// The first valid finding at `start`: the regex's candidate, else each later pattern's
    /// own match there.
    fn decide(&self, text: &str, start: usize, first: PatternID, end: usize) -> Option<Hit> {
        if let Some(hit) = self.valid(text, start, end, first) {
            return Some(hit);
        }
        (first.as_usize() + 1..self.labels.len()).find_map(|p| {
            let pid = PatternID::new(p).ok()?;
            let input = Input::new(text).range(start..).anchored(Anchored::Pattern(pid));
            let m = self.regex.search(&input)?;
            self.valid(text, start, m.end(), pid)
        })
    }

    fn valid(&self, text: &str, start: usize, end: usize, pid: PatternID) -> Option<Hit> {
        let label = *self.labels.get(pid.as_usize())?;
        let (start, end) = validate::check(label.kind, text, start, end)?;
        Some(Hit { label, start, end })
    }

    /// A warm cache for a stream (a new one when none is free).
    pub(crate) fn dfa_cache(&self) -> DfaCache {
        let warm = self
            .caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        warm.unwrap_or_else(|| self.dfa.create_cache())
    }

    /// A stream's cache, back for the next one.
    pub(crate) fn give_back(&self, cache: DfaCache) {
        let mut caches = self.caches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if caches.len() < WARM_CACHES {
            caches.push(cache);
        }
    }

    /// The anchored start state after byte `before` (`None`: the text's start), from the
    /// stream's table (a cache clear makes the table's states stale: it is then refilled).
    fn start(&self, cache: &mut DfaCache, starts: &mut StartTable, before: Option<u8>) -> Option<LazyStateID> {
        if starts.clears != cache.clear_count() {
            starts.states = [None; 257];
            starts.clears = cache.clear_count();
        }
        let slot = before.map_or(256, usize::from);
        if let Some(s) = starts.states[slot] {
            return Some(s);
        }
        let config = regex_automata::util::start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(before);
        let s = self.dfa.start_state(cache, &config).ok()?;
        if starts.clears == cache.clear_count() {
            starts.states[slot] = Some(s);
        }
        Some(s)
    }

    /// Moves `hold` forward to the first place in `text` from which a match could still be
    /// growing at the text's end (`text.len()` when there is none). A place once ruled out
    /// stays ruled out however the text goes on, so the work is done once per place.
    pub(crate) fn hold(&self, cache: &mut DfaCache, text: &str, hold: &mut Hold) {
        let bytes = text.as_bytes();
        while hold.at < text.len() {
            if !text.is_char_boundary(hold.at) {
                hold.at += 1;
                continue;
            }
            let run = match hold.run {
                Some(run) => Some(run),
                None => {
                    let before = hold.at.checked_sub(1).map(|i| bytes[i]);
                    self.start(cache, &mut hold.starts, before).map(|s| (s, hold.at))
                }
            };
            // A DFA that cannot go on (never, as built) holds rather than lets a match out.
            let Some((mut state, mut fed)) = run else {
                return;
            };
            while fed < bytes.len() && !state.is_dead() {
                match self.dfa.next_state(cache, state, bytes[fed]) {
                    Ok(s) => state = s,
                    Err(_) => return,
                }
                // A match from here (reported a byte late): the regex must look at it.
                if state.is_match() {
                    hold.run_matched = true;
                    if hold.candidate.is_none_or(|c| c > hold.at) {
                        hold.candidate = Some(hold.at);
                    }
                }
                fed += 1;
            }
            if state.is_dead() {
                hold.at += 1;
                hold.run = None;
                hold.run_matched = false;
            } else {
                hold.run = Some((state, fed));
                return;
            }
        }
    }
}

/// A stream's anchored start states by the byte before (256: none), valid while the DFA's
/// cache has not been cleared since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartTable {
    states: [Option<LazyStateID>; 257],
    clears: usize,
}

impl Default for StartTable {
    fn default() -> StartTable {
        StartTable {
            states: [None; 257],
            clears: 0,
        }
    }
}

/// Where a stream's undecided text starts, and the DFA's run from there.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Hold {
    pub at: usize,
    /// The state after feeding the text up to `.1`.
    pub run: Option<(LazyStateID, usize)>,
    /// The first place whose run reached a match: text before it holds no match, and goes
    /// out without the regex looking at it.
    pub candidate: Option<usize>,
    /// The run in progress has passed a match.
    pub run_matched: bool,
    pub starts: StartTable,
}

impl Hold {
    /// Starts over at `at` (the text before it is decided).
    pub fn restart(&mut self, at: usize) {
        self.at = at;
        self.run = None;
        self.run_matched = false;
    }

    /// The text before `cut` is gone: offsets move back.
    pub fn shift(&mut self, cut: usize) {
        self.at -= cut;
        if let Some((_, fed)) = &mut self.run {
            *fed -= cut;
        }
        if let Some(c) = &mut self.candidate {
            *c = c.saturating_sub(cut);
        }
    }
}

/// `hir` without its Unicode word-boundary assertions.
fn loosen(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Look(
            Look::WordUnicode
            | Look::WordUnicodeNegate
            | Look::WordStartUnicode
            | Look::WordEndUnicode
            | Look::WordStartHalfUnicode
            | Look::WordEndHalfUnicode,
        ) => Hir::empty(),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            sub: Box::new(loosen(&r.sub)),
            ..r.clone()
        }),
        HirKind::Capture(c) => Hir::capture(Capture {
            sub: Box::new(loosen(&c.sub)),
            ..c.clone()
        }),
        HirKind::Concat(v) => Hir::concat(v.iter().map(loosen).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(loosen).collect()),
        _ => hir.clone(),
    }
}

fn next_char(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(text.len(), |c| at + c.len_utf8())
}
