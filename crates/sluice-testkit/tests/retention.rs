//! Retention: the periodic pass deletes ledger rows older than `ledger.retention_days` and
//! audit entries older than `admin.audit_retention_days` — and nothing younger.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use http::Method;
use serde_json::json;
use sluice_store::ledger::analytics::{Dim, Metric, Query, Span};
use sluice_store::ledger::{Entry, Intent, Settlement};
use sluice_testkit::*;

fn entries(id: &str, at: i64) -> [Entry<'static>; 2] {
    [
        Entry::Intent(Intent {
            id: id.to_owned().into(),
            instance: "old".into(),
            at,
            key: Some("k".into()),
            team: None,
            tenant: None,
            route: Some("default".into()),
            model: Some("chat".into()),
            reserved_tokens: 10,
            reserved_cost: 10,
        }),
        Entry::Settlement(Settlement {
            id: id.to_owned().into(),
            at: at + 5,
            deployment: None,
            model: None,
            status: 200,
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            cost: 1,
            currency: None,
            estimated: false,
            detail: Default::default(),
        }),
    ]
}

#[tokio::test]
async fn retention_deletes_what_is_older_than_it_keeps_and_nothing_else() {
    let mock = mock().await;
    let gw = TestGateway::start(&format!(
        "ledger: {{ retention_days: 2 }}\nadmin: {{ listen: \"127.0.0.1:0\", audit_retention_days: 2 }}\n{}",
        config_with(&mock)
    ))
    .await;
    let gateway = gw.running.as_ref().unwrap().gateway.clone();
    let ledger = gateway.ledger.clone().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    ledger
        .db()
        .apply(&entries("three-days-old", now - 3 * day))
        .await
        .unwrap();
    ledger.db().apply(&entries("one-day-old", now - day)).await.unwrap();
    // A fresh audit entry, which must stay.
    let r = gw
        .admin(Method::POST, "/admin/keys", Some(json!({"id": "fresh"})))
        .await;
    assert_eq!(r.status, 201);

    sluice_gateway::state::sweep::prune(&gateway).await;

    let q = Query {
        metric: Metric::Requests,
        by: Dim::Key,
        per: Span::Day,
        since_ms: 0,
        until_ms: i64::MAX,
        tz_offset_s: 0,
        top: None,
        tenant: None,
        only: Vec::new(),
    };
    let left: f64 = ledger
        .db()
        .analytics(&q)
        .await
        .unwrap()
        .iter()
        .filter_map(|p| p.value)
        .sum();
    assert_eq!(left, 1.0, "the three-day-old row is gone, the one-day-old one stays");
    let audit = gw.admin(Method::GET, "/admin/audit", None).await.json();
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
}
