//! Runaway generation: an answer whose end is one span said over and over. The last 2 KiB of
//! the answer are checked every 256 bytes (and at the end) for a suffix made of one span — of
//! at most 512 bytes — repeated at least `min_repeats` times and covering at least `min_bytes`:
//! the prefix function of the reversed tail gives every suffix's smallest period in one pass.

const TAIL: usize = 2048;
const EVERY: usize = 256;
const MAX_PERIOD: usize = 512;

/// One answer's repetition check.
#[derive(Debug)]
pub struct Repetition {
    min_repeats: usize,
    min_bytes: usize,
    tail: Vec<u8>,
    /// Bytes seen since the last check.
    unchecked: usize,
    /// Bytes of the answer seen in all.
    seen: usize,
}

impl Repetition {
    pub fn new(min_repeats: usize, min_bytes: usize) -> Repetition {
        Repetition {
            min_repeats: min_repeats.max(2),
            min_bytes: min_bytes.max(1),
            tail: Vec::with_capacity(TAIL),
            unchecked: 0,
            seen: 0,
        }
    }

    /// Takes a piece of the answer; `Some(keep)` when the answer has run away: keep the first
    /// `keep` bytes of `piece` (up to the end of the span's first saying when that is in this
    /// piece; what went out before stays out), cut the rest.
    pub fn push(&mut self, piece: &str, end: bool) -> Option<usize> {
        // A large piece (a whole answer) is read as if it came in checks' worth of bytes, so
        // a loop is found as soon as it would be on a stream.
        let mut at = 0;
        while at < piece.len() || (at == 0 && end) {
            let mut to = (at + EVERY).min(piece.len());
            while !piece.is_char_boundary(to) {
                to += 1;
            }
            let last = to == piece.len();
            if let Some(keep) = self.step(&piece[at..to], end && last) {
                return Some(at + keep);
            }
            if last {
                break;
            }
            at = to;
        }
        None
    }

    fn step(&mut self, piece: &str, end: bool) -> Option<usize> {
        self.seen += piece.len();
        self.tail.extend_from_slice(piece.as_bytes());
        if self.tail.len() > TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
        self.unchecked += piece.len();
        if self.unchecked < EVERY && !end {
            return None;
        }
        self.unchecked = 0;
        let (start, period) = self.runaway()?;
        // Keep up to the end of the span's first saying (as an offset into the whole answer).
        let from_end = self.tail.len() - start - period;
        let keep_total = self.seen - from_end;
        let piece_start = self.seen - piece.len();
        let keep = keep_total.saturating_sub(piece_start).min(piece.len());
        // On a character boundary.
        let keep = (0..=keep).rev().find(|&k| piece.is_char_boundary(k)).unwrap_or(0);
        Some(keep)
    }

    /// The start (in the tail) and period of the longest repeated suffix that counts.
    fn runaway(&self) -> Option<(usize, usize)> {
        let r: Vec<u8> = self.tail.iter().rev().copied().collect();
        let n = r.len();
        let mut pi = vec![0usize; n];
        let mut best = None;
        for i in 1..n {
            let mut k = pi[i - 1];
            while k > 0 && r[i] != r[k] {
                k = pi[k - 1];
            }
            if r[i] == r[k] {
                k += 1;
            }
            pi[i] = k;
            let len = i + 1;
            let period = len - k;
            if period <= MAX_PERIOD && len >= self.min_bytes && len / period >= self.min_repeats {
                best = Some((n - len, period));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(text: &str, piece: usize) -> Option<usize> {
        let mut r = Repetition::new(4, 256);
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        for (i, chunk) in chars.chunks(piece).enumerate() {
            let s: String = chunk.iter().collect();
            let end = (i + 1) * piece >= chars.len();
            if let Some(keep) = r.push(&s, end) {
                return Some(at + keep);
            }
            at += s.len();
        }
        None
    }

    #[test]
    fn a_loop_is_cut_soon_after_it_starts() {
        let intro = "Here is the answer. ";
        let looped = format!("{intro}{}", "I am sorry, I cannot do that. ".repeat(400));
        // Found once the loop covers `min_bytes`, at the next check: within 256 + 256 bytes
        // (and a span) of its start.
        for piece in [1, 7, 64, 300] {
            let cut = feed(&looped, piece).unwrap_or(usize::MAX);
            assert!(
                cut > intro.len() && cut <= intro.len() + 256 + 256 + 30 + piece,
                "{piece}: {cut}"
            );
        }
        // Whole, it is cut where a stream would be.
        let mut r = Repetition::new(4, 256);
        let cut = r.push(&looped, true).unwrap_or(usize::MAX);
        assert!(cut > intro.len() && cut <= intro.len() + 256 + 256 + 30, "{cut}");
        assert!(feed(&"ha".repeat(400), 5).is_some());
    }

    #[test]
    fn ordinary_text_is_not_a_loop() {
        let table = format!("| a | b | c |\n{}\n", "| --- | --- | --- |");
        let prose = "Rivers carry water from the hills to the sea, and along the way they shape valleys, feed \
                     farms and give cities their water. "
            .to_owned()
            + "Each river is different: some are fast, some are slow, and some dry up in summer. ";
        for text in [
            table.repeat(3),
            prose.repeat(2),
            (1..200).map(|i| format!("{i}. item\n")).collect(),
        ] {
            assert_eq!(feed(&text, 9), None, "{text}");
        }
    }
}
