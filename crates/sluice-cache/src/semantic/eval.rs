//! Auditing the semantic cache's decisions on labelled prompt pairs (`sluice cache eval`): each
//! pair's similarity and check, the decision a route's settings make, and the hit and
//! false-hit rates by threshold with and without the check.

use serde::Deserialize;

use super::vector::dot;
use super::verify::{Disagreement, Features};

/// A labelled pair: `same` when a stored answer to `a` is a right answer to `b`.
#[derive(Debug, Clone, Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub same: bool,
    #[serde(default)]
    pub kind: String,
}

/// A pair, scored.
#[derive(Debug, Clone)]
pub struct Scored {
    pub pair: Pair,
    pub similarity: f32,
    /// The check's verdict on the pair (whatever the similarity).
    pub agreement: Result<(), Disagreement>,
    /// Shorter than the route's `min_chars`: never looked up.
    pub too_short: bool,
}

/// The settings a decision is made with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub threshold: f32,
    pub verify: bool,
    pub min_chars: usize,
}

impl Scored {
    /// Scores a pair whose texts embed as `va` and `vb`.
    pub fn new(pair: Pair, va: &[f32], vb: &[f32], min_chars: usize) -> Scored {
        let agreement = Features::of(&pair.a).agree(&Features::of(&pair.b));
        let too_short = pair.a.chars().count() < min_chars || pair.b.chars().count() < min_chars;
        Scored {
            similarity: dot(va, vb),
            agreement,
            too_short,
            pair,
        }
    }

    /// Whether `b` would be answered with `a`'s stored answer.
    pub fn hit(&self, s: Settings) -> bool {
        !self.too_short && self.similarity >= s.threshold && (!s.verify || self.agreement.is_ok())
    }
}

/// Rates at one setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub threshold: f32,
    /// Paraphrases answered from the cache, of all paraphrases.
    pub hit_rate: f64,
    /// Near-misses answered from the cache (a wrong answer), of all near-misses.
    pub false_hit_rate: f64,
}

pub fn rates(scored: &[Scored], s: Settings) -> Rates {
    let share = |same: bool| {
        let all: Vec<&Scored> = scored.iter().filter(|p| p.pair.same == same).collect();
        let hits = all.iter().filter(|p| p.hit(s)).count();
        if all.is_empty() {
            0.0
        } else {
            hits as f64 / all.len() as f64
        }
    };
    Rates {
        threshold: s.threshold,
        hit_rate: share(true),
        false_hit_rate: share(false),
    }
}

/// The threshold with the highest hit rate whose false-hit rate is at most `max_false` (of
/// those, the highest: the widest margin against near-misses), trying thresholds from 0.50 to 0.99 in steps of 0.01.
pub fn best_threshold(scored: &[Scored], verify: bool, min_chars: usize, max_false: f64) -> Option<Rates> {
    (50..100)
        .map(|t| {
            rates(
                scored,
                Settings {
                    threshold: t as f32 / 100.0,
                    verify,
                    min_chars,
                },
            )
        })
        .filter(|r| r.false_hit_rate <= max_false)
        .max_by(|a, b| {
            a.hit_rate
                .total_cmp(&b.hit_rate)
                .then(a.threshold.total_cmp(&b.threshold))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(a: &str, b: &str, same: bool, similarity: f32) -> Scored {
        let mut s = Scored::new(
            Pair {
                a: a.into(),
                b: b.into(),
                same,
                kind: String::new(),
            },
            &[1.0],
            &[1.0],
            0,
        );
        s.similarity = similarity;
        s
    }

    #[test]
    fn rates_and_the_best_threshold_follow_the_labels() {
        let set = [
            scored("How do I reset my password?", "Steps to reset my password", true, 0.90),
            scored("Why is the sky blue?", "why is the sky blue", true, 0.97),
            scored("Capital of France?", "Capital of Germany?", false, 0.93),
            scored("Best pizza dough recipe", "Best bread dough recipe", false, 0.85),
        ];
        let plain = |t| Settings {
            threshold: t,
            verify: false,
            min_chars: 0,
        };
        assert_eq!(rates(&set, plain(0.8)).false_hit_rate, 1.0);
        assert_eq!(rates(&set, plain(0.95)).hit_rate, 0.5);
        // Without the check only 0.94+ keeps near-misses out (one paraphrase is left); with it,
        // 0.86 does, and 0.86–0.90 keep both paraphrases: the highest is chosen.
        let unchecked = best_threshold(&set, false, 0, 0.0).unwrap();
        assert_eq!((unchecked.threshold, unchecked.hit_rate), (0.97, 0.5));
        let checked = best_threshold(&set, true, 0, 0.0).unwrap();
        assert_eq!((checked.threshold, checked.hit_rate), (0.90, 1.0));
    }
}
