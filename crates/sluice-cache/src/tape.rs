//! A streaming leader's answer as it arrives, for the streaming followers of its flight: they
//! read it from the start and then live, event by event, while the leader's client gets it —
//! not after it ends. The leader's response stage writes it ([`TapeWriter`]); however the
//! answer ends — whole, or cut short, failed, or its client gone — the tape says so, and a
//! writer dropped before the end marks it broken.

use std::sync::{Arc, Mutex, PoisonError};

use sluice_providers::chat::Delta;
use tokio::sync::Notify;

/// How a tape ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeEnd {
    /// The answer ended well; what it cost when it was made.
    Whole { cost_micros: u64 },
    /// The answer will not be whole (an error, a cut, the leader's client gone).
    Broken,
}

#[derive(Debug, Default)]
struct State {
    deltas: Vec<Delta>,
    end: Option<TapeEnd>,
}

/// The answer's events so far, and its end once it came.
#[derive(Debug, Default)]
pub struct Tape {
    state: Mutex<State>,
    notify: Notify,
}

/// What a reader finds from where it is.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Events it has not read yet.
    Deltas(Vec<Delta>),
    /// It has read them all, and the tape has ended.
    End(TapeEnd),
    /// Nothing new yet.
    Nothing,
}

impl Tape {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, d: &Delta) {
        let mut s = self.state();
        if s.end.is_none() {
            s.deltas.push(d.clone());
        }
        drop(s);
        self.notify.notify_waiters();
    }

    fn end(&self, end: TapeEnd) {
        let mut s = self.state();
        if s.end.is_none() {
            s.end = Some(end);
        }
        drop(s);
        self.notify.notify_waiters();
    }

    /// What there is to read after the first `from` events.
    pub fn read(&self, from: usize) -> Read {
        let s = self.state();
        if s.deltas.len() > from {
            return Read::Deltas(s.deltas[from..].to_vec());
        }
        match s.end {
            Some(end) => Read::End(end),
            None => Read::Nothing,
        }
    }

    /// Resolves once there is more to read than the first `from` events, or an end.
    pub async fn changed(self: Arc<Self>, from: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.read(from) != Read::Nothing {
                return;
            }
            notified.await;
        }
    }
}

/// The leader's pen: every event goes on the tape; [`TapeWriter::finish`] ends it whole, and
/// dropping it before that ends it broken.
#[derive(Debug)]
pub struct TapeWriter(pub(crate) Arc<Tape>);

impl TapeWriter {
    pub fn push(&self, d: &Delta) {
        self.0.push(d);
    }

    pub fn finish(self, cost_micros: u64) {
        self.0.end(TapeEnd::Whole { cost_micros });
    }
}

impl Drop for TapeWriter {
    fn drop(&mut self) {
        self.0.end(TapeEnd::Broken);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn readers_get_every_event_live_and_the_end() {
        let tape = Arc::new(Tape::default());
        let writer = TapeWriter(tape.clone());
        writer.push(&Delta::Text("a".into()));
        let reader = {
            let tape = tape.clone();
            tokio::spawn(async move {
                let (mut seen, mut at) = (Vec::new(), 0);
                loop {
                    match tape.read(at) {
                        Read::Deltas(d) => {
                            at += d.len();
                            seen.extend(d);
                        }
                        Read::End(end) => return (seen, end),
                        Read::Nothing => tape.clone().changed(at).await,
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        writer.push(&Delta::Text("b".into()));
        writer.finish(7);
        let (seen, end) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, vec![Delta::Text("a".into()), Delta::Text("b".into())]);
        assert_eq!(end, TapeEnd::Whole { cost_micros: 7 });
    }

    #[tokio::test]
    async fn a_writer_dropped_before_the_end_breaks_the_tape() {
        let tape = Arc::new(Tape::default());
        let writer = TapeWriter(tape.clone());
        writer.push(&Delta::Text("a".into()));
        drop(writer);
        assert_eq!(tape.read(1), Read::End(TapeEnd::Broken));
        // Nothing is written after the end.
        tape.push(&Delta::Text("late".into()));
        assert_eq!(tape.read(1), Read::End(TapeEnd::Broken));
    }
}
