//! Sluice's guardrails as a library: detection of personal data and credentials with typed
//! placeholders ([`redact`]), input normalisation, the prompt-injection screen, the streaming hold-back [`Window`] that lets a stream out only
//! once no rule can still match across the next piece, and the validators behind them.
//!
//! This crate does no IO and knows nothing of HTTP, config files or the gateway: the gateway's
//! guard stages compile it from the config and run it on the request and the answer.

pub mod eval;
pub mod fold;
pub mod head;
pub mod injection;
pub mod kind;
pub mod matcher;
pub mod normalize;
pub mod overlap;
pub mod patterns;
pub mod redact;
pub mod repeat;
pub mod validate;
pub mod window;

pub use injection::{Screen, screen};
pub use kind::{Family, Kind};
pub use matcher::{Hit, Label, Matcher, MatcherError};
pub use normalize::{Normalize, Normalized, normalize};
pub use overlap::{Leaked, Overlap};
pub use redact::{Placeholders, builtin_matcher, redact};
pub use repeat::Repetition;
pub use window::{Released, Window};
