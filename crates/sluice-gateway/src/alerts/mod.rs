//! Alert webhooks: budget alerts — when a request's spend crosses a threshold of a budget (hard
//! or soft), once per budget, threshold and window — and the alert rules' breaches and
//! recoveries (`rules.rs`), POSTed off the request path, signed, and retried a few times on
//! failure.
//!
//! The body is JSON; `x-sluice-signature: sha256=<hex>` is the HMAC-SHA256 of the body with the
//! configured secret, and `x-sluice-timestamp` the time it was signed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::upstream::client::HttpClient;
use sluice_limits::Crossing;

pub mod feed;
pub mod rules;

/// Attempts per alert, and the pause before each retry.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> Vec<u8> { k.iter().map(|b| b ^ byte).collect() };
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// One alert to send.
#[derive(Debug)]
pub struct Alert {
    pub what: Payload,
    pub url: http::Uri,
    pub secret: Option<String>,
}

/// What an alert says.
#[derive(Debug)]
pub enum Payload {
    /// A budget's threshold crossed.
    Budget {
        crossing: Crossing,
        currency: std::sync::Arc<str>,
    },
    /// An alert rule's breach or recovery (its JSON, `sent_at` added when sent).
    Rule(serde_json::Value),
}

/// Hands alerts to the sending task; never blocks the request path.
#[derive(Debug, Clone)]
pub struct AlertSender {
    tx: mpsc::UnboundedSender<Alert>,
}

impl AlertSender {
    pub fn start(client: std::sync::Arc<HttpClient>) -> AlertSender {
        let (tx, mut rx) = mpsc::unbounded_channel::<Alert>();
        tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                let client = client.clone();
                tokio::spawn(deliver(client, alert));
            }
        });
        AlertSender { tx }
    }

    pub fn send(&self, alert: Alert) {
        let _ = self.tx.send(alert);
    }
}

fn body(alert: &Alert, now: i64) -> Vec<u8> {
    let (c, currency) = match &alert.what {
        Payload::Budget { crossing, currency } => (crossing, currency),
        Payload::Rule(v) => {
            let mut v = v.clone();
            v["sent_at"] = json!(chrono::DateTime::from_timestamp(now, 0).map(|t| t.to_rfc3339()));
            return serde_json::to_vec(&v).unwrap_or_default();
        }
    };
    let v = json!({
        "type": "budget_threshold_crossed",
        "scope": c.scope.as_str(),
        "id": c.id,
        "budget": c.spec.name(),
        "soft": c.spec.soft,
        "threshold_percent": c.threshold,
        "limit_micros": c.spec.amount,
        "spent_micros": c.used,
        "currency": currency,
        "window_start": chrono::DateTime::from_timestamp(c.window_start, 0).map(|t| t.to_rfc3339()),
        "sent_at": chrono::DateTime::from_timestamp(now, 0).map(|t| t.to_rfc3339()),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

async fn deliver(client: std::sync::Arc<HttpClient>, alert: Alert) {
    let now = chrono::Utc::now().timestamp();
    let payload = Bytes::from(body(&alert, now));
    for (attempt, pause) in std::iter::once(Duration::ZERO).chain(BACKOFF).enumerate() {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let mut req = http::Request::post(alert.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-sluice-timestamp", now.to_string());
        if let Some(secret) = &alert.secret {
            req = req.header(
                "x-sluice-signature",
                format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &payload))),
            );
        }
        let Ok(req) = req.body(Full::new(payload.clone())) else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => return,
            outcome => tracing::warn!(
                attempt = attempt + 1,
                url = %alert.url,
                status = ?outcome.as_ref().ok().and_then(|r| r.as_ref().ok()).map(|r| r.status().as_u16()),
                "budget alert not delivered"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
