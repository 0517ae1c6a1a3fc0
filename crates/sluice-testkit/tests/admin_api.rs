//! The admin API's contract: its OpenAPI document describes every route it serves, every
//! refusal has the one error body (unknown paths, wrong methods, unreadable queries and paths
//! included), and keys are listed a page at a time. (Schemathesis, in the SDK lane, fuzzes
//! every operation against the document.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use http::Method;
use serde_json::{Value, json};
use sluice_testkit::*;

fn is_admin_error(v: &Value, code: &str) -> bool {
    v["error"]["type"] == "admin_error" && v["error"]["code"] == code && v["error"]["message"].is_string()
}

#[tokio::test]
async fn the_spec_is_openapi_3_1_and_names_every_operation() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let r = gw.admin(Method::GET, "/admin/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let spec = r.json();
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let mut ops: Vec<String> = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops.sort();
    assert_eq!(
        ops,
        [
            "DELETE /admin/cache",
            "DELETE /admin/keys/{id}",
            "DELETE /admin/limits/{scope}/{name}",
            "DELETE /admin/principals/{id}",
            "GET /admin/analytics",
            "GET /admin/audit",
            "GET /admin/cache/stats",
            "GET /admin/config",
            "GET /admin/health",
            "GET /admin/keys",
            "GET /admin/limits",
            "GET /admin/payloads",
            "GET /admin/principals",
            "GET /admin/requests",
            "GET /admin/usage",
            "GET /metrics",
            "POST /admin/keys",
            "POST /admin/principals",
            "POST /admin/reload",
            "PUT /admin/limits/{scope}/{name}",
        ]
    );
    // Every operation documents the refusal of a missing token, with the error schema.
    for item in spec["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let unauthorized = &op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(unauthorized, "#/components/schemas/ErrorBody", "{op}");
        }
    }
    assert_eq!(spec["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");

    // And every documented operation is served (none answers the unknown-path 404).
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path
            .replace("{id}", "nobody")
            .replace("{scope}", "keys")
            .replace("{name}", "nobody");
        let body = (method == "POST" || method == "PUT").then(|| json!({}));
        let r = gw.admin(method.parse().unwrap(), &path, body).await;
        assert!(
            r.status != 404 || r.json()["error"]["code"] != "not_found" || path.contains("nobody"),
            "{op}: {}",
            r.text()
        );
        assert_ne!(r.status, 405, "{op}");
    }
}

#[tokio::test]
async fn every_refusal_has_the_admin_error_body() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let r = gw.admin(Method::GET, "/admin/nothing-here", None).await;
    assert_eq!(r.status, 404);
    assert!(is_admin_error(&r.json(), "not_found"), "{}", r.text());
    let r = gw.admin(Method::PATCH, "/admin/keys", None).await;
    assert_eq!(r.status, 405);
    assert!(is_admin_error(&r.json(), "method_not_allowed"), "{}", r.text());
    let r = gw.admin(Method::GET, "/admin/keys?limit=lots", None).await;
    assert_eq!(r.status, 400);
    assert!(is_admin_error(&r.json(), "invalid_query"), "{}", r.text());
    let r = gw.admin(Method::GET, "/admin/keys?limit=0", None).await;
    assert_eq!(r.status, 400);
    assert!(is_admin_error(&r.json(), "invalid_query"), "{}", r.text());
    let r = gw.admin(Method::DELETE, "/admin/cache?tenant=a&tenant=b", None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(is_admin_error(&r.json(), "invalid_query"), "{}", r.text());
    let r = gw.admin(Method::GET, "/admin/usage?per=fortnight", None).await;
    assert_eq!(r.status, 400);
    assert!(is_admin_error(&r.json(), "invalid_usage_query"), "{}", r.text());
}

#[tokio::test]
async fn keys_are_listed_a_page_at_a_time_in_id_order() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    for id in ["k-3", "k-1", "k-5", "k-2", "k-4"] {
        let r = gw.admin(Method::POST, "/admin/keys", Some(json!({"id": id}))).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // The config file's two keys and the five made here, two at a time.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/admin/keys?limit=2&after={a}"),
            None => "/admin/keys?limit=2".to_owned(),
        };
        let page = gw.admin(Method::GET, &path, None).await.json();
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        if page["has_more"] == false {
            break;
        }
        after = Some(page["last_id"].as_str().unwrap().to_owned());
        assert!(pages < 10, "paging does not end");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "in id order, no repeats");
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "{seen:?}");
    assert_eq!(pages, 4);

    // Principals page the same way.
    for id in ["p3", "p1", "p2"] {
        let r = gw
            .admin(
                Method::POST,
                "/admin/principals",
                Some(json!({"id": id, "role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let first = gw.admin(Method::GET, "/admin/principals?limit=2", None).await.json();
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        (ids(&first), first["has_more"].as_bool()),
        (vec!["p1".to_owned(), "p2".to_owned()], Some(true))
    );
    let rest = gw
        .admin(Method::GET, "/admin/principals?limit=2&after=p2", None)
        .await
        .json();
    assert_eq!(
        (ids(&rest), rest["has_more"].as_bool()),
        (vec!["p3".to_owned()], Some(false))
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_config_is_audited_with_both_versions() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let before = gw.version().await;
    let r = gw.admin(Method::POST, "/admin/reload", None).await;
    assert_eq!(r.json()["reloaded"], false, "unchanged: nothing to audit");
    gw.write_config(&config_with_routes(
        &mock,
        "  - name: extra\n    match: { headers: { x-extra: \"1\" } }\n",
    ));
    let r = gw.admin(Method::POST, "/admin/reload", None).await;
    assert_eq!(r.json()["reloaded"], true, "{}", r.text());
    let after = gw.version().await;
    let page = gw.admin(Method::GET, "/admin/audit", None).await.json();
    let reloads: Vec<&Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "config.reload")
        .collect();
    assert_eq!(reloads.len(), 1, "{page}");
    let e = reloads[0];
    assert_eq!(
        (e["actor"].as_str(), e["target"].as_str()),
        (Some("local"), Some(after.as_str()))
    );
    let was: Value = serde_json::from_str(e["before"].as_str().unwrap()).unwrap();
    assert_eq!(was["version"], before.as_str());
    assert_eq!(page["head"]["seq"], e["seq"]);
}
