//! Helpers the resilience and breaker tests share: a deployment line, the chat request, and a
//! mock's request count.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;

pub fn deployment(name: &str, base: &str) -> String {
    deployment_yaml(name, base, "")
}

pub fn ask() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
}

pub fn requests(m: &MockServer) -> u64 {
    m.stats().requests.load(Ordering::Relaxed)
}
