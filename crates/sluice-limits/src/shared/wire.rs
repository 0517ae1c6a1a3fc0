//! What goes over the wire to Redis: cell key parts, hash slots, and the shapes of its answers.

use sluice_config::{Metric, Window};

use crate::terms::{Standing, now_ns};

/// What the store answered to an admission.
pub(super) enum Answer {
    Taken(Vec<Standing>),
    Refused {
        index: usize,
        retry_s: Option<u64>,
        standings: Vec<Standing>,
    },
}

#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    #[error("the answer came after the deadline")]
    Late,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Link(#[from] sluice_store::redis::RedisFailure),
    #[error("unexpected answer: {0}")]
    Shape(String),
}

pub(super) fn now_us() -> i64 {
    (now_ns() / 1_000) as i64
}

/// Braces would change the hash tag; `%` keeps the escape unambiguous.
pub(super) fn escape(id: &str) -> std::borrow::Cow<'_, str> {
    if id.contains(['{', '}', '%']) {
        id.replace('%', "%25").replace('{', "%7B").replace('}', "%7D").into()
    } else {
        id.into()
    }
}

/// Redis Cluster's slot of a key: CRC16 of its hash tag.
pub(super) fn slot(key: &str) -> u16 {
    let tag = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}').map(|len| &key[open + 1..open + 1 + len]))
        .filter(|t| !t.is_empty())
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % 16384
}

pub(super) fn metric_str(m: Metric) -> &'static str {
    match m {
        Metric::Requests => "requests",
        Metric::Tokens => "tokens",
        Metric::InputTokens => "input_tokens",
        Metric::OutputTokens => "output_tokens",
        Metric::Cost => "cost",
    }
}

pub(super) fn window_str(w: Window) -> &'static str {
    match w {
        Window::Second => "second",
        Window::Minute => "minute",
        Window::Hour => "hour",
        Window::Day => "day",
        Window::Month => "month",
    }
}

pub(super) fn ints(v: redis::Value) -> Result<Vec<i64>, StoreError> {
    match v {
        redis::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                redis::Value::Int(n) => Ok(n),
                other => Err(StoreError::Shape(format!("{other:?}"))),
            })
            .collect(),
        other => Err(StoreError::Shape(format!("{other:?}"))),
    }
}
