//! What an entry holds: the answer (canonical, whole as its client got it, or another
//! endpoint's body), what it cost, when it was stored and how long it lives, and its size in
//! the tier's measure.

use std::time::{Duration, SystemTime};

use sluice_providers::chat::{ChatResponse, Part};
use sluice_providers::{Usage, Wire};

/// What an entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A chat answer in canonical form (written again in each client's format when replayed):
    /// a stream's, put together from its events.
    Chat(ChatResponse),
    /// A whole chat answer as its client got it: replayed as it is (with an id of its own) to
    /// a client of the same format that does not stream, read into canonical form for any
    /// other. Storing it costs no reading.
    Whole(Whole),
    /// Any other endpoint's whole answer as the client got it (completions, embeddings,
    /// predictions): replayed as it is.
    Body(Body),
}

/// A whole answer body.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub content_type: Option<String>,
    pub bytes: bytes::Bytes,
    pub usage: Usage,
}

/// A whole chat answer's body, in the format of the client that got it.
#[derive(Debug, Clone, PartialEq)]
pub struct Whole {
    pub wire: Wire,
    pub bytes: bytes::Bytes,
    pub usage: Usage,
}

impl Answer {
    pub fn usage(&self) -> Usage {
        match self {
            Answer::Chat(c) => c.usage,
            Answer::Body(b) => b.usage,
            Answer::Whole(w) => w.usage,
        }
    }
}

/// A stored answer.
#[derive(Debug)]
pub struct Entry {
    pub answer: Answer,
    /// What the answer cost when it was made, in micro-units (what a hit saves).
    pub cost_micros: u64,
    pub stored_at: SystemTime,
    /// How long it is served.
    pub ttl: Duration,
    /// How much longer it is kept, for a fallback chain's `cache` step.
    pub stale: Duration,
    bytes: u32,
}

/// What an entry takes beyond its text: its key (in its slot), its table place, the entry
/// and its allocations. Measured with `examples/memory.rs` (BENCHMARKS.md): ~420 bytes for a
/// body kept whole, ~570 for an answer in canonical form (more allocations), whatever the
/// text's size; weighed a little above, resident memory grows by 95–100 % of the budget.
const OVERHEAD: usize = 440;
const CANONICAL_OVERHEAD: usize = 600;

impl Entry {
    pub fn new(mut answer: Answer, cost_micros: u64, ttl: Duration, stale: Duration) -> Entry {
        // A body kept in an allocation of its own size: a slice of a larger buffer (a
        // connection's read buffer) would keep all of it, past what the entry is weighed as.
        match &mut answer {
            Answer::Whole(Whole { bytes, .. }) | Answer::Body(Body { bytes, .. }) => {
                *bytes = bytes::Bytes::copy_from_slice(bytes);
            }
            Answer::Chat(c) => fitted(c),
        }
        let bytes = weigh(&answer);
        Entry {
            answer,
            cost_micros,
            stored_at: SystemTime::now(),
            ttl,
            stale,
            bytes,
        }
    }

    /// How much longer it is kept (served, then stale), from now.
    pub fn remaining(&self) -> Duration {
        let age = self.stored_at.elapsed().unwrap_or_default();
        self.ttl.saturating_add(self.stale).saturating_sub(age)
    }

    /// Whether it is at most `within` old.
    pub fn younger_than(&self, within: Duration) -> bool {
        self.stored_at.elapsed().is_ok_and(|age| age <= within)
    }

    /// Its size in the cache's measure: the answer's text, tool calls and ids, and a fixed
    /// overhead.
    pub fn bytes(&self) -> u32 {
        self.bytes
    }
}

fn weigh(a: &Answer) -> u32 {
    let a = match a {
        Answer::Chat(c) => c,
        Answer::Body(b) => {
            let n = OVERHEAD + allocated(b.bytes.len()) + b.content_type.as_ref().map_or(0, String::len);
            return u32::try_from(n).unwrap_or(u32::MAX);
        }
        Answer::Whole(w) => return u32::try_from(OVERHEAD + allocated(w.bytes.len())).unwrap_or(u32::MAX),
    };
    let mut n = CANONICAL_OVERHEAD + a.id.len() + a.model.len();
    n += a.stop_sequence.as_ref().map_or(0, String::len);
    for p in &a.content {
        n += match p {
            Part::Text(t) => allocated(t.len()),
            Part::ToolUse { id, name, input } => id.len() + name.len() + input.to_string().len(),
            _ => 64,
        };
    }
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The room an allocation of `n` bytes takes: allocators hand out sizes in classes four to a
/// doubling (`1 280`, `1 536`, `1 792`, `2 048`, …), so up to a quarter more than asked.
fn allocated(n: usize) -> usize {
    if n <= 16 {
        return 16;
    }
    let step = (n.next_power_of_two() / 8).max(16);
    n.div_ceil(step) * step
}

/// An answer's text in allocations of its own size (put together from a stream's pieces, a
/// string may have room for twice its text).
fn fitted(answer: &mut ChatResponse) {
    answer.id.shrink_to_fit();
    answer.model.shrink_to_fit();
    for p in &mut answer.content {
        if let Part::Text(t) = p {
            t.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::allocated;

    #[test]
    fn allocations_are_weighed_by_their_size_class() {
        assert_eq!(allocated(1), 16);
        assert_eq!(allocated(100), 112);
        assert_eq!(allocated(1024), 1024);
        assert_eq!(allocated(1025), 1280);
        assert_eq!(allocated(1284), 1536);
        assert_eq!(allocated(8540), 10_240);
        assert!((1..100_000).all(|n| allocated(n) >= n && allocated(n) <= n + n / 4 + 16));
    }
}
