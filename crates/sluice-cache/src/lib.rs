//! The response cache: what an entry's key is made of, and where entries live.
//!
//! A key is built from a [`Scope`], which cannot be made without a tenant (a key without a
//! tenant is its own tenant), and a SHA-256 of everything else that shapes the answer: the
//! route and its policy version, the endpoint, the model alias after routing and degradation,
//! the headers that change the answer, and the request's canonical form ([`canonical`]). Two
//! scopes never share a key: the scope is part of the key itself, not only of its hash.
//!
//! Entries hold the canonical answer, so a hit is written again in the client's own format
//! (and as a stream for a streaming client). The in-process tier ([`MemoryTier`]) holds them
//! within a byte budget, each for its route's TTL; the Redis tier ([`SharedTier`]) shares them
//! with every instance using the same Redis, and is never an error for a caller.
//!
//! The gateway's cache stage (lookup, before the queue) and response stage (store, after the
//! answer's end) use this crate; it knows nothing of HTTP.

pub mod canonical;
mod flight;
mod key;
mod memory;
pub mod semantic;
mod shared;
mod tape;
mod tiers;

pub use canonical::{Canonical, canonical};
pub use flight::{Flights, Following, Joined, Leading};
pub use key::{CacheKey, KeyDigest, KeyParts, Scope, WireKey};
pub use memory::{Answer, Body, Entry, MemoryTier, Whole};
pub use shared::{Note, PROBE_EVERY, PurgeFilter, SemanticNote, SharedMetrics, SharedTier};
pub use tape::{Read, Tape, TapeEnd, TapeWriter};
pub use tiers::{InputSlot, Purged, Storing, Tiers};
