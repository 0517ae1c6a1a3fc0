//! Single flight: concurrent identical misses send one upstream request. The first miss of a
//! key leads (its answer is stored as usual); the misses that arrive while it is in the air
//! follow — they wait for it to land and then look the key up again. However the leader ends —
//! stored, failed, its client gone — its [`Leading`] guard is dropped and the followers wake:
//! after a stored answer they hit; after anything else one of them leads the next attempt (one
//! new upstream request, not one each) and the rest follow it.
//!
//! The map of flights is sharded by the key's digest; a shard's lock is held for one map
//! operation, never across an await.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::key::CacheKey;
use crate::tape::{Tape, TapeWriter};

const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Flight {
    landed: AtomicBool,
    notify: Notify,
    /// A streaming leader's answer as it arrives (for streaming followers).
    tape: Option<Arc<Tape>>,
}

/// Keys hash as their digest's head (already spread evenly), folded once more by `foldhash`.
type Map = foldhash::HashMap<CacheKey, Arc<Flight>>;
type Shard = Mutex<Map>;

/// The flights in the air in this process.
#[derive(Debug, Clone)]
pub struct Flights {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Shard]>,
    /// Followers waiting now.
    waiting: AtomicI64,
}

/// What a miss does: lead the flight for its key, or follow the one in the air.
#[derive(Debug)]
pub enum Joined {
    Lead(Leading),
    Follow(Following),
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
                waiting: AtomicI64::new(0),
            }),
        }
    }
}

impl Flights {
    fn shard(&self, key: &CacheKey) -> MutexGuard<'_, Map> {
        let shard = &self.inner.shards[key.shard() % SHARDS];
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leads the flight for `key` when none is in the air, else follows it. A leader that
    /// `streams` keeps a tape of its answer for followers that stream too.
    pub fn join(&self, key: &CacheKey, streams: bool) -> Joined {
        let mut shard = self.shard(key);
        if let Some(flight) = shard.get(key) {
            return Joined::Follow(Following {
                flight: flight.clone(),
                flights: self.clone(),
            });
        }
        let tape = streams.then(|| Arc::new(Tape::default()));
        let flight = Arc::new(Flight {
            tape: tape.clone(),
            ..Flight::default()
        });
        shard.insert(key.clone(), flight.clone());
        Joined::Lead(Leading {
            key: key.clone(),
            flight,
            flights: self.clone(),
            tape: tape.map(TapeWriter),
        })
    }

    /// Followers waiting now.
    pub fn waiting(&self) -> i64 {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Flights in the air now.
    pub fn in_air(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The leader's guard: dropping it lands the flight (after the answer is stored, or when the
/// leader gives up) and wakes its followers.
#[derive(Debug)]
pub struct Leading {
    key: CacheKey,
    flight: Arc<Flight>,
    flights: Flights,
    /// The tape's pen, until the response stage that writes it takes it (left here, it breaks
    /// the tape when the leader gives up).
    tape: Option<TapeWriter>,
}

impl Leading {
    /// The pen of this flight's tape (a streaming leader's), for the stage that sees its answer.
    pub fn take_tape(&mut self) -> Option<TapeWriter> {
        self.tape.take()
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        {
            let mut shard = self.flights.shard(&self.key);
            if shard.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                shard.remove(&self.key);
            }
        }
        self.flight.landed.store(true, Ordering::Release);
        self.flight.notify.notify_waiters();
    }
}

/// A follower's ticket.
#[derive(Debug)]
pub struct Following {
    flight: Arc<Flight>,
    flights: Flights,
}

/// Counts a follower as waiting while it is.
struct Waiting<'a>(&'a AtomicI64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Following {
    /// The leader's answer as it arrives, when the leader streams.
    pub fn tape(&self) -> Option<Arc<Tape>> {
        self.flight.tape.clone()
    }

    /// Resolves once the streaming leader's tape has its first event or its end (counted as
    /// waiting meanwhile); `None` when the leader does not stream.
    pub async fn tape_started(&self) -> Option<Arc<Tape>> {
        let tape = self.flight.tape.clone()?;
        let waiting = &self.flights.inner.waiting;
        waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(waiting);
        tape.clone().changed(0).await;
        Some(tape)
    }

    /// Resolves once the flight has landed (at once if it already has).
    pub async fn landed(self) {
        let waiting = &self.flights.inner.waiting;
        waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(waiting);
        let notified = self.flight.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.flight.landed.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    fn key(body: &str) -> CacheKey {
        crate::key::test_key(None, body)
    }

    #[tokio::test]
    async fn followers_wake_when_the_leader_lands_and_the_next_miss_leads_again() {
        let flights = Flights::default();
        let Joined::Lead(leading) = flights.join(&key("a"), false) else {
            panic!("the first miss leads")
        };
        let Joined::Lead(_other) = flights.join(&key("b"), false) else {
            panic!("another key is another flight")
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match flights.join(&key("a"), false) {
                Joined::Follow(f) => tokio::spawn(f.landed()),
                Joined::Lead(_) => panic!("a flight is in the air"),
            })
            .collect();
        while flights.waiting() < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(leading);
        for f in followers {
            tokio::time::timeout(Duration::from_secs(5), f).await.unwrap().unwrap();
        }
        assert_eq!(flights.waiting(), 0);
        assert_eq!(flights.in_air(), 1, "only b's flight is left");
        assert!(
            matches!(flights.join(&key("a"), false), Joined::Lead(_)),
            "a landed flight is gone"
        );
        // A follower that arrives after the landing does not wait.
        let Joined::Lead(l) = flights.join(&key("c"), false) else {
            panic!()
        };
        let Joined::Follow(late) = flights.join(&key("c"), false) else {
            panic!()
        };
        drop(l);
        tokio::time::timeout(Duration::from_secs(5), late.landed())
            .await
            .unwrap();
    }
}
