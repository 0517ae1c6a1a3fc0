//! Usage analytics over the wire: requests through a gateway, then `GET /admin/analytics`
//! reads them back from the ledger — counts, errors, cost, latency percentiles, the cache's
//! hit rate, the top groups, CSV — and a tenant-confined principal sees its tenant's only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use http::Method;
use serde_json::{Value, json};
use sluice_testkit::*;

fn config(mock: &sluice_mock::MockServer) -> String {
    format!(
        "{}prices:\n  models: [{{ model: upstream-a, input: 1.0, output: 2.0 }}]\n",
        config_with_routes(
            mock,
            "  - name: cached\n    match: { headers: { x-route: cached } }\n    cache: { ttl_ms: 60000 }\n"
        )
    )
}

async fn get(gw: &TestGateway, query: &str) -> Value {
    let r = gw.admin(Method::GET, &format!("/admin/analytics?{query}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn analytics_read_back_what_went_through_the_gateway() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let ask = |text: &str| json!({"model": "chat", "messages": [{"role": "user", "content": text}]});
    for n in 0..6 {
        assert_eq!(gw.chat(KEY, &ask(&format!("q{n}"))).await.status, 200);
    }
    let mut failing = ask("fail");
    failing["mock"] = json!({"status": 500});
    for _ in 0..2 {
        assert!(gw.chat(KEY, &failing).await.status.is_server_error());
    }
    // One miss then one hit on the caching route.
    for _ in 0..2 {
        let r = gw
            .post_raw(
                "/v1/chat/completions",
                Some(KEY),
                &[("x-route", "cached")],
                ask("same").to_string(),
            )
            .await;
        assert_eq!(r.status, 200);
    }

    let v = get(&gw, "metric=requests&by=model&per=minute").await;
    let total: f64 = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .sum();
    assert_eq!(total, 10.0, "{v}");
    assert_eq!(v["points"][0]["group"], "chat");
    let v = get(&gw, "metric=errors&by=route&per=day").await;
    let errors: Vec<(String, f64)> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["group"].as_str().unwrap().to_owned(), p["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(errors, [("cached".to_owned(), 0.0), ("default".to_owned(), 2.0)]);
    let v = get(&gw, "metric=cost&by=key").await;
    assert!(v["points"][0]["value"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["currency"], "USD");
    let v = get(&gw, "metric=latency_p95&by=model").await;
    let p95 = v["points"][0]["value"].as_f64().unwrap();
    assert!(p95 > 0.0 && p95 < 60_000.0, "{v}");
    let v = get(&gw, "metric=cache_hit_rate&by=route").await;
    let cached = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["group"] == "cached")
        .unwrap();
    assert_eq!(cached["value"], 0.5, "one hit of two lookups: {v}");
    let v = get(&gw, "metric=requests&by=route&top=1").await;
    let groups: Vec<&str> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["default"]);

    // CSV.
    let r = gw
        .admin(
            Method::GET,
            "/admin/analytics?metric=requests&by=route&per=day&format=csv",
            None,
        )
        .await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = r.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("group,bucket,value,requests"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r[0] == "default" && r[2] == "8"), "{text}");

    // Bad queries are refused with the admin error.
    for q in ["metric=speed", "by=planet", "per=fortnight", "format=xml", "top=0"] {
        let r = gw.admin(Method::GET, &format!("/admin/analytics?{q}"), None).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["error"]["code"], "invalid_analytics_query", "{q}");
    }
}
