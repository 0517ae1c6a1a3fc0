//! A semantic hit's check. Cosine similarity alone merges near-misses — "capital of France" and
//! "capital of Germany", "5 km" and "50 km", "USD to EUR" and "EUR to USD" sit closer than many
//! paraphrases. So the parts of a question that change its answer are read from both texts,
//! and a similar entry is a hit only when they agree: numbers, quoted strings, code-like
//! tokens, names, negation, what goes from where to where, the format and language asked for,
//! units, opposite words (largest / smallest, before / after, buy / sell), and a word or two
//! swapped in an otherwise identical question ("bake bread" / "bake cookies").
//!
//! A word-level pass with small word lists ([`words`]), microseconds per prompt. It errs
//! towards a miss: a miss costs one upstream call, a wrong hit a wrong answer. Where a
//! paraphrase may drop a detail (a unit, a name), only a *swap* counts — each text having one
//! the other lacks.

mod words;

use std::collections::BTreeSet;

use words::{COMMON, DIRECTIONAL, FORMATS, LANGUAGES, NEGATIONS, NUMBER_WORDS, POLES, STOP, UNITS};

/// What in a text must agree for a stored answer to fit it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Numbers, normalised ("1,000" → "1000", "five" → "5"), sorted.
    numbers: Vec<String>,
    /// Quoted spans, lowercased.
    quoted: Vec<String>,
    /// The text lowercased, runs of non-alphanumerics as one space (quoted spans are looked
    /// for in it).
    flat: String,
    /// Tokens with code characters (`^[a-z]+$`, `x->y`, `table_a`), as written.
    symbols: BTreeSet<String>,
    /// Capitalised words and acronyms (not common sentence starters), lowercased.
    names: BTreeSet<String>,
    /// Every word, lowercased, in order.
    seq: Vec<String>,
    words: BTreeSet<String>,
    negated: bool,
    /// The first content word after each direction word, by the word's kind (`from`, `to`,
    /// `than`).
    after: BTreeSet<(&'static str, String)>,
    formats: BTreeSet<&'static str>,
    languages: BTreeSet<&'static str>,
    units: BTreeSet<&'static str>,
    /// (group, polarity) of opposite-prone words.
    poles: BTreeSet<(&'static str, bool)>,
}

/// Why two texts do not ask the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disagreement {
    Numbers,
    Quoted,
    Symbols,
    Names,
    Negation,
    Order,
    Format,
    Language,
    Units,
    Opposites,
    Swapped,
}

impl Disagreement {
    pub fn as_str(self) -> &'static str {
        match self {
            Disagreement::Numbers => "numbers",
            Disagreement::Quoted => "quoted",
            Disagreement::Symbols => "symbols",
            Disagreement::Names => "names",
            Disagreement::Negation => "negation",
            Disagreement::Order => "order",
            Disagreement::Format => "format",
            Disagreement::Language => "language",
            Disagreement::Units => "units",
            Disagreement::Opposites => "opposites",
            Disagreement::Swapped => "swapped",
        }
    }
}

fn lookup<'a>(table: &'a [(&'a str, &'a str)], w: &str) -> Option<&'a str> {
    table.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

/// A number as written, normalised: no thousands separators, no trailing decimal zeros.
fn number(raw: &str) -> String {
    let mut s: String = raw.chars().filter(|c| *c != ',' && *c != '_').collect();
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_owned()
    }
}

/// Lowercase, runs of anything but letters and digits as one space.
fn flatten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_owned()
}

/// The spans between matching quotes: "…", “…”, `…`, and '…' where the quote opens a word,
/// flattened.
fn quoted(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let close = match chars[i] {
            '"' => Some('"'),
            '“' => Some('”'),
            '`' => Some('`'),
            '‘' => Some('’'),
            '\'' if i == 0 || !chars[i - 1].is_alphanumeric() => Some('\''),
            _ => None,
        };
        if let Some(close) = close
            && let Some(len) = chars[i + 1..].iter().position(|c| *c == close)
        {
            let inner: String = chars[i + 1..i + 1 + len].iter().collect();
            let end = i + 1 + len;
            // A closing single quote must end a word (not "don't").
            let ends_word = chars.get(end + 1).is_none_or(|c| !c.is_alphanumeric());
            let flat = flatten(&inner);
            if !flat.is_empty() && (close != '\'' || ends_word) {
                out.push(flat);
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
    out.sort();
    out
}

/// Whitespace-separated tokens with a character code uses, trailing punctuation trimmed.
fn symbols(text: &str) -> BTreeSet<String> {
    const CODE: &[char] = &[
        '^', '$', '*', '+', '=', '<', '>', '[', ']', '{', '}', '|', '\\', '/', '~', '@', '&', '_', '%',
    ];
    text.split_whitespace()
        .map(|t| {
            t.trim_end_matches(['.', ',', '?', '!', ':', ';', ')'])
                .trim_start_matches('(')
        })
        .filter(|t| t.chars().any(|c| CODE.contains(&c)) && t.chars().any(char::is_alphanumeric))
        .map(str::to_owned)
        .collect()
}

/// The text's words: runs of letters, digits and the characters inside words and numbers
/// (`'`, `_`, `.`/`,` between digits, `+`/`#` after a C: C++, C#), with whether each starts a
/// sentence.
fn words(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut sentence_start = true;
    let mut starts = true;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let prev = cur.chars().last();
        let inner = match c {
            '\'' | '’' | '_' => prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric),
            '.' | ',' => prev.is_some_and(|p| p.is_ascii_digit()) && next.is_some_and(|n| n.is_ascii_digit()),
            '+' | '#' => prev.is_some_and(|p| p.eq_ignore_ascii_case(&'c')) && cur.len() <= 2,
            _ => false,
        };
        if c.is_alphanumeric() || inner {
            if cur.is_empty() {
                starts = sentence_start;
            }
            cur.push(if c == '’' { '\'' } else { c });
            sentence_start = false;
        } else {
            if !cur.is_empty() {
                out.push((std::mem::take(&mut cur), starts));
            }
            if matches!(c, '.' | '?' | '!' | ':' | ';' | '\n') {
                sentence_start = true;
            }
            if c == '→' {
                out.push(("→".to_owned(), false));
            }
        }
    }
    if !cur.is_empty() {
        out.push((cur, starts));
    }
    out
}

/// A word that carries meaning (not a function word or a common sentence starter).
fn content(w: &str) -> bool {
    !STOP.contains(&w) && !COMMON.contains(&w) && !w.starts_with(|c: char| c.is_ascii_digit())
}

impl Features {
    /// Reads a text's features.
    pub fn of(text: &str) -> Features {
        let mut f = Features {
            quoted: quoted(text),
            flat: flatten(text),
            symbols: symbols(text),
            ..Features::default()
        };
        let read = words(text);
        let mut direction: Option<&'static str> = None;
        for (word, starts) in &read {
            let lower = word.to_lowercase();
            let lower = lower.strip_suffix("'s").unwrap_or(&lower);
            let mut plain: String = lower.chars().filter(|c| *c != '\'').collect();
            if plain.starts_with(|c: char| c.is_ascii_digit()) {
                plain.retain(|c| c != ',');
            }
            f.seq.push(plain.clone());
            f.words.insert(plain.clone());
            if NEGATIONS.contains(&plain.as_str()) || lower.ends_with("n't") {
                f.negated = true;
            }
            // The first content word after a direction word.
            if let Some(kind) = direction
                && !STOP.contains(&plain.as_str())
            {
                f.after.insert((kind, plain.clone()));
                direction = None;
            }
            if let Some((_, kind)) = DIRECTIONAL.iter().find(|(w, _)| *w == plain) {
                direction = Some(kind);
                continue;
            }
            // A number, maybe glued to its unit ("5km").
            let digits: String = lower
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
                .collect();
            if digits.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                f.numbers.push(number(&digits));
                if let Some(u) = lookup(UNITS, &lower[digits.len()..]) {
                    f.units.insert(u);
                }
                continue;
            }
            if let Some(n) = lookup(NUMBER_WORDS, &plain) {
                f.numbers.push(n.to_owned());
            }
            if let Some(u) = lookup(UNITS, &plain) {
                f.units.insert(u);
            }
            if let Some(fmt) = lookup(FORMATS, &plain) {
                f.formats.insert(fmt);
            }
            if let Some(l) = LANGUAGES.iter().find(|l| **l == plain) {
                f.languages.insert(l);
            }
            for (w, group, pole) in POLES {
                if *w == plain {
                    f.poles.insert((group, *pole));
                }
            }
            // Formats, units and languages have checks of their own.
            let own_check = lookup(FORMATS, &plain).is_some()
                || lookup(UNITS, &plain).is_some()
                || f.languages.contains(plain.as_str());
            let capital = word.chars().next().is_some_and(char::is_uppercase);
            let acronym =
                word.chars().filter(|c| c.is_alphabetic()).count() >= 2 && word.chars().all(|c| !c.is_lowercase());
            let common = COMMON.contains(&plain.as_str());
            if !own_check
                && !common
                && (acronym || capital)
                && !(*starts && capital && !acronym && STOP.contains(&plain.as_str()))
            {
                f.names.insert(plain);
            }
        }
        f.numbers.sort();
        f
    }

    /// Whether a stored answer to `self`'s text fits `other`'s: `Ok`, or the first thing that
    /// differs.
    pub fn agree(&self, other: &Features) -> Result<(), Disagreement> {
        use Disagreement::*;
        let (a, b) = (self, other);
        if a.numbers != b.numbers {
            return Err(Numbers);
        }
        let quotes_in = |x: &Features, y: &Features| x.quoted.iter().all(|q| contains_words(&y.flat, q));
        if !quotes_in(a, b) || !quotes_in(b, a) {
            return Err(Quoted);
        }
        if a.symbols != b.symbols {
            return Err(Symbols);
        }
        // A paraphrase may drop a name ("the US" / "American"); a name in place of another is
        // another question.
        let lacks = |x: &Features, y: &Features| x.names.iter().any(|n| !y.words.contains(n));
        if lacks(a, b) && lacks(b, a) {
            return Err(Names);
        }
        if a.negated != b.negated {
            return Err(Negation);
        }
        if a.languages != b.languages {
            return Err(Language);
        }
        if !a.units.is_subset(&b.units) && !b.units.is_subset(&a.units) {
            return Err(Units);
        }
        if a.formats != b.formats {
            return Err(Format);
        }
        // A group of opposites both texts use must lean the same way ("quick" alone is filler;
        // "largest" against "smallest" is another question).
        let leans = |f: &Features, group: &str| -> Vec<bool> {
            f.poles.iter().filter(|(g, _)| *g == group).map(|(_, p)| *p).collect()
        };
        if a.poles.iter().any(|(g, _)| {
            let (x, y) = (leans(a, g), leans(b, g));
            !y.is_empty() && x != y
        }) {
            return Err(Opposites);
        }
        // From/to/than swapped: a word one text has after `to` comes elsewhere in the other,
        // which has another word there that the first has elsewhere.
        let (ma, mb) = (moved(a, b), moved(b, a));
        if ma.iter().any(|(k, wa)| mb.iter().any(|(l, wb)| k == l && wa != wb)) {
            return Err(Order);
        }
        if swapped(&a.seq, &b.seq) {
            return Err(Swapped);
        }
        Ok(())
    }
}

/// The (kind, word) pairs after direction words in `x` that `y` does not have, though it has
/// the word.
fn moved<'a>(x: &'a Features, y: &Features) -> Vec<(&'static str, &'a String)> {
    x.after
        .iter()
        .filter(|p| !y.after.contains(*p) && y.words.contains(&p.1))
        .map(|(k, w)| (*k, w))
        .collect()
}

/// `needle`'s words appear, in order and together, in `hay` (both flattened).
fn contains_words(hay: &str, needle: &str) -> bool {
    format!(" {hay} ").contains(&format!(" {needle} "))
}

/// The same question with a word or two (at most three) of meaning put in place of others:
/// what is left once the common beginning and end are taken off is, on both sides, a short
/// span holding a content word.
fn swapped(a: &[String], b: &[String]) -> bool {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    let suffix = ra.iter().rev().zip(rb.iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&ra[..ra.len() - suffix], &rb[..rb.len() - suffix]);
    let short = |m: &[String]| (1..=3).contains(&m.len()) && m.iter().any(|w| content(w));
    if !short(ma) || !short(mb) {
        return false;
    }
    // The same words in another order ("red and blue" / "blue and red") are not a swap.
    let (mut sa, mut sb) = (ma.to_vec(), mb.to_vec());
    sa.sort();
    sb.sort();
    sa != sb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str, expected: Result<(), Disagreement>) {
        assert_eq!(
            Features::of(a).agree(&Features::of(b)),
            expected,
            "{a:?} / {b:?}: {:?} / {:?}",
            Features::of(a),
            Features::of(b)
        );
    }

    #[test]
    fn paraphrases_agree() {
        for (a, b) in [
            ("What is the capital of France?", "Tell me the capital city of France"),
            ("how do I reset my password", "What are the steps to reset my password?"),
            ("Convert 5 km to miles", "How many miles is 5 kilometers?"),
            ("Give me five tips for better sleep", "What are 5 tips to sleep better?"),
            ("Explain recursion in Python", "explain recursion in python please"),
            ("Why is the sky blue?", "Quick question: why is the sky blue"),
            (
                "Summarize the plot of Hamlet in one paragraph",
                "Give a one-paragraph summary of Hamlet's plot",
            ),
            ("What's 1,000 divided by 8?", "What is 1000 divided by 8"),
            ("Convert USD to EUR", "How do I convert USD into EUR?"),
        ] {
            check(a, b, Ok(()));
        }
    }

    #[test]
    fn near_misses_disagree_on_what_changes_the_answer() {
        use Disagreement::*;
        for (a, b, why) in [
            (
                "What is the capital of France?",
                "What is the capital of Germany?",
                Names,
            ),
            ("Convert 5 km to miles", "Convert 50 km to miles", Numbers),
            ("Give me three tips for sleep", "Give me four tips for sleep", Numbers),
            ("Convert USD to EUR", "Convert EUR to USD", Order),
            ("Flights from London to Paris", "Flights from Paris to London", Order),
            (
                "Which foods contain gluten?",
                "Which foods don't contain gluten?",
                Negation,
            ),
            ("List the planets as JSON", "List the planets as YAML", Format),
            ("Say good morning in French", "Say good morning in Spanish", Language),
            (
                "What is 30 degrees in celsius?",
                "What is 30 degrees in fahrenheit?",
                Units,
            ),
            ("What is the largest ocean?", "What is the smallest ocean?", Opposites),
            (
                "What does the error 'connection refused' mean?",
                "What does the error 'connection reset' mean?",
                Quoted,
            ),
            ("translate hello to french", "translate hello to german", Language),
        ] {
            check(a, b, Err(why));
        }
    }

    #[test]
    fn numbers_are_read_in_their_written_forms() {
        let f = Features::of("Is 7,411 a prime? What about 3.50 and 0.5, or twelve?");
        assert_eq!(f.numbers, vec!["0.5", "12", "3.5", "7411"]);
        assert_eq!(Features::of("don't 'quote' me").quoted, vec!["quote"]);
        assert!(Features::of("It's John's car").quoted.is_empty());
    }
}
