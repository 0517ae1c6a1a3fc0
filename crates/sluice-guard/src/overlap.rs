//! System-prompt leak detection by overlap: a run of `min_words` consecutive words of the
//! answer copied, in order, from the system prompt. The answer streams through [`Overlap`],
//! which holds back the words of a run in progress (and a word not yet complete) and releases
//! them once the run breaks — so a leak is stopped before any of its `min_words` words leaves,
//! and prose that merely shares a few words with the prompt goes on after a word's delay.

use std::collections::HashMap;

/// Words: runs of letters and digits, lower-cased.
fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = &text[at..];
        let start = at + rest.find(|c: char| c.is_alphanumeric())?;
        let len = text[start..]
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(text.len() - start);
        at = start + len;
        Some((start, start + len))
    })
}

/// One answer's overlap check against its request's system prompt.
#[derive(Debug)]
pub struct Overlap {
    /// The prompt's words, in order, and where each word occurs.
    prompt: Vec<String>,
    index: HashMap<String, Vec<u32>>,
    min_words: usize,
    /// Text not yet released; the current run starts at `run_start` in it.
    pending: String,
    /// Where the next word to read starts in `pending` (words before it were read).
    read_to: usize,
    run_start: Option<usize>,
    run: usize,
    /// Where in the prompt the run could be (each: the index of the run's last word).
    at: Vec<u32>,
}

/// A run of `min_words` words of the system prompt in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaked;

impl Overlap {
    /// `None` when the prompt has fewer words than a run (nothing of it could be leaked).
    pub fn new(system: &[&str], min_words: usize) -> Option<Overlap> {
        let min_words = min_words.max(2);
        let mut prompt = Vec::new();
        for text in system {
            prompt.extend(words(text).map(|(a, b)| text[a..b].to_lowercase()));
        }
        if prompt.len() < min_words {
            return None;
        }
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, w) in prompt.iter().enumerate() {
            index.entry(w.clone()).or_default().push(i as u32);
        }
        Some(Overlap {
            prompt,
            index,
            min_words,
            pending: String::new(),
            read_to: 0,
            run_start: None,
            run: 0,
            at: Vec::new(),
        })
    }

    /// Takes a piece of the answer (`end`: the last); returns what may leave now, or the leak.
    pub fn push(&mut self, piece: &str, end: bool) -> Result<String, Leaked> {
        self.pending.push_str(piece);
        let mut complete_to = self.read_to;
        let found: Vec<(usize, usize)> = words(&self.pending[self.read_to..])
            .map(|(a, b)| (a + self.read_to, b + self.read_to))
            .collect();
        for (a, b) in found {
            // A word touching the end of what came may go on in the next piece.
            if b == self.pending.len() && !end {
                break;
            }
            let word = self.pending[a..b].to_lowercase();
            self.step(&word, a)?;
            complete_to = b;
        }
        self.read_to = complete_to;
        let hold_from = if end {
            self.pending.len()
        } else {
            // The run in progress, else the word not yet complete.
            let unread = words(&self.pending[self.read_to..])
                .next()
                .map(|(a, _)| a + self.read_to);
            self.run_start.or(unread).unwrap_or(self.pending.len())
        };
        let released: String = self.pending.drain(..hold_from).collect();
        self.read_to -= hold_from.min(self.read_to);
        if let Some(s) = &mut self.run_start {
            *s -= hold_from.min(*s);
        }
        Ok(released)
    }

    /// Everything held, as it is: the check ends here (a flagged leak lets the answer go on).
    pub fn into_held(self) -> String {
        self.pending
    }

    /// One more word of the answer, starting at `start` in `pending`.
    fn step(&mut self, word: &str, start: usize) -> Result<(), Leaked> {
        let next: Vec<u32> = self
            .at
            .iter()
            .map(|&i| i + 1)
            .filter(|&i| self.prompt.get(i as usize).is_some_and(|w| w == word))
            .collect();
        if next.is_empty() {
            // The run broke: this word may start another.
            match self.index.get(word) {
                Some(at) => {
                    self.at = at.clone();
                    self.run = 1;
                    self.run_start = Some(start);
                }
                None => {
                    self.at.clear();
                    self.run = 0;
                    self.run_start = None;
                }
            }
        } else {
            self.at = next;
            self.run += 1;
        }
        if self.run >= self.min_words {
            return Err(Leaked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PROMPT: &str = "You are Aria, the support assistant of Northwind Bank. Never discuss interest rates before verifying the customer's identity with two questions.";

    fn run(answer: &str, cuts: &[usize]) -> Result<String, Leaked> {
        let Some(mut o) = Overlap::new(&[PROMPT], 8) else {
            return Ok(String::new());
        };
        let mut out = String::new();
        let mut last = 0;
        let mut bounds: Vec<usize> = cuts
            .iter()
            .map(|&c| c.min(answer.len()))
            .filter(|&c| answer.is_char_boundary(c))
            .collect();
        bounds.sort_unstable();
        for c in bounds {
            out.push_str(&o.push(&answer[last..c], false)?);
            last = c;
        }
        out.push_str(&o.push(&answer[last..], true)?);
        Ok(out)
    }

    #[test]
    fn a_copied_run_is_a_leak_and_prose_is_not() {
        let leak = "Sure! My instructions: never discuss interest rates before verifying the customer's identity.";
        assert_eq!(run(leak, &[]), Err(Leaked));
        let prose = "I am the support assistant. Interest rates depend on the customer and the bank.";
        assert_eq!(run(prose, &[]).as_deref(), Ok(prose));
        assert!(Overlap::new(&["Be brief."], 8).is_none());
    }

    #[test]
    fn the_words_of_a_run_wait_until_it_breaks() {
        let mut o = Overlap::new(&[PROMPT], 8).unwrap_or_else(|| unreachable!());
        assert_eq!(o.push("Hello. You are Aria, the", false), Ok("Hello. ".to_owned()));
        assert_eq!(
            o.push(" support desk is open", false),
            Ok("You are Aria, the support desk is ".to_owned())
        );
        assert_eq!(o.push("", true), Ok("open".to_owned()));
    }

    proptest! {
        /// However the answer is split, the verdict and the released text are the whole
        /// text's, and nothing of a leak leaves before it is caught.
        #[test]
        fn split_anywhere_gives_the_same(cut in prop::collection::vec(0usize..160, 0..10), leak in any::<bool>()) {
            let answer = if leak {
                "Well. You are Aria, the support assistant of Northwind Bank, so I cannot."
            } else {
                "Well. You are asking about the support assistant and Northwind Bank, so I can."
            };
            let whole = run(answer, &[]);
            let split = run(answer, &cut);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(whole.is_err(), leak);
        }
    }
}
