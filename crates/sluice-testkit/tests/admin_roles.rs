//! Admin roles and tenant isolation, generated from the API's own OpenAPI document: every
//! operation it names is called by every kind of principal — viewer, operator and admin,
//! gateway-wide and confined to a tenant — aimed at one tenant's (acme's) things. No viewer
//! write and no other tenant's call succeeds; tenant-confined principals get 403 on the
//! gateway-wide routes; admins are refused nothing. A route added to the API is covered here
//! without touching this file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use sluice_testkit::*;

struct Who {
    name: &'static str,
    role: &'static str,
    tenant: Option<&'static str>,
    token: String,
}

async fn call(gw: &TestGateway, token: &str, method: Method, path: &str, body: Option<Value>) -> TestResponse {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    gw.send(request(method, &gw.admin_url(path), Some(token), &[], body))
        .await
}

fn config(mock: &sluice_mock::MockServer) -> String {
    format!(
        "admin: {{ listen: \"127.0.0.1:0\", token_env: SLUICE_TEST_ADMIN_TOKEN }}\n{}",
        config_with(mock)
    )
}

#[tokio::test]
async fn every_operation_by_every_principal_keeps_roles_and_tenants_apart() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    // Usage of acme's (the config's key is acme's).
    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.chat(KEY, &chat).await.status, 200);

    let mut people = Vec::new();
    for (name, role, tenant) in [
        ("globex-viewer", "viewer", Some("globex")),
        ("globex-operator", "operator", Some("globex")),
        ("globex-admin", "admin", Some("globex")),
        ("viewer", "viewer", None),
        ("acme-operator", "operator", Some("acme")),
        ("operator", "operator", None),
        ("admin", "admin", None),
    ] {
        let r = call(
            &gw,
            ADMIN_TOKEN,
            Method::POST,
            "/admin/principals",
            Some(json!({"id": name, "role": role, "tenant": tenant})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let token = r.json()["token"].as_str().unwrap().to_owned();
        people.push(Who {
            name,
            role,
            tenant,
            token,
        });
    }

    let spec = call(&gw, ADMIN_TOKEN, Method::GET, "/admin/openapi.json", None)
        .await
        .json();
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(ops.len() >= 16, "{ops:?}");

    let (mut calls, mut cross_tenant_2xx, mut viewer_writes_2xx) = (0, Vec::new(), Vec::new());
    for (n, (method, template)) in ops.iter().enumerate() {
        for who in &people {
            // Fresh targets of acme's for each call: a run-time key with limits, a principal.
            let key_id = format!("acme-{n}-{}", who.name);
            let r = call(
                &gw,
                ADMIN_TOKEN,
                Method::POST,
                "/admin/keys",
                Some(json!({"id": key_id, "tenant": "acme"})),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
            let r = call(
                &gw,
                ADMIN_TOKEN,
                Method::PUT,
                &format!("/admin/limits/keys/{key_id}"),
                Some(json!({"requests_per_minute": 50})),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let victim = format!("victim-{n}-{}", who.name);
            let r = call(
                &gw,
                ADMIN_TOKEN,
                Method::POST,
                "/admin/principals",
                Some(json!({"id": victim, "role": "viewer"})),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());

            let id = if template.starts_with("/admin/principals") {
                victim.as_str()
            } else {
                key_id.as_str()
            };
            let mut path = template
                .replace("{id}", id)
                .replace("{scope}", "keys")
                .replace("{name}", &key_id);
            if template == "/admin/cache" {
                path.push_str("?tenant=acme");
            }
            let body = match (method.as_str(), template.as_str()) {
                ("POST", "/admin/keys") => Some(json!({"id": format!("new-{key_id}"), "tenant": "acme"})),
                ("POST", "/admin/principals") => Some(json!({"id": format!("new-{victim}"), "role": "admin"})),
                ("PUT", _) => Some(json!({"requests_per_minute": 5})),
                _ => None,
            };
            let r = call(&gw, &who.token, method.parse().unwrap(), &path, body).await;
            calls += 1;
            let ok = r.status.is_success();
            let what = format!("{} {method} {path} → {} {}", who.name, r.status, r.text());
            let read = method == "GET";

            if who.role == "viewer" && !read && ok {
                viewer_writes_2xx.push(what.clone());
            }
            if who.tenant == Some("globex") && ok {
                // A read answers (with the caller's own things only); nothing of acme's may show.
                if !read || r.text().contains("acme") {
                    cross_tenant_2xx.push(what.clone());
                }
            }
            let rule = sluice_admin::auth::rule_of(&method.parse().unwrap(), template)
                .unwrap_or_else(|| panic!("{method} {template} has no rule"));
            if who.tenant.is_some() && !rule.tenants {
                assert_eq!(r.status, 403, "gateway-wide: {what}");
            }
            if who.role == "admin" && who.tenant.is_none() {
                assert!(
                    r.status != 401 && r.status != 403,
                    "an admin is refused nothing: {what}"
                );
            }
            if who.name == "acme-operator" && rule.tenants {
                assert!(ok, "acme's operator manages acme's things: {what}");
            }
            if who.role == "viewer" && !read {
                assert_eq!(r.status, 403, "{what}");
            }
        }
    }
    assert_eq!(calls, ops.len() * people.len());
    assert!(
        cross_tenant_2xx.is_empty(),
        "cross-tenant successes:\n{}",
        cross_tenant_2xx.join("\n")
    );
    assert!(
        viewer_writes_2xx.is_empty(),
        "viewer writes:\n{}",
        viewer_writes_2xx.join("\n")
    );
}

#[tokio::test]
async fn a_tenant_principal_sees_only_its_tenant_and_a_revoked_token_stops_at_once() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.chat(KEY, &chat).await.status, 200); // acme's key
    let made = |id: &'static str, tenant: &'static str| json!({"id": id, "role": "operator", "tenant": tenant});
    let acme = call(
        &gw,
        ADMIN_TOKEN,
        Method::POST,
        "/admin/principals",
        Some(made("acme-ops", "acme")),
    )
    .await;
    let globex = call(
        &gw,
        ADMIN_TOKEN,
        Method::POST,
        "/admin/principals",
        Some(made("globex-ops", "globex")),
    )
    .await;
    let (acme, globex) = (
        acme.json()["token"].as_str().unwrap().to_owned(),
        globex.json()["token"].as_str().unwrap().to_owned(),
    );

    // A key made by globex's operator is globex's, whatever it asked for.
    let r = call(&gw, &globex, Method::POST, "/admin/keys", Some(json!({"id": "g1"}))).await;
    assert_eq!((r.status.as_u16(), r.json()["tenant"].clone()), (201, json!("globex")));
    let r = call(
        &gw,
        &globex,
        Method::POST,
        "/admin/keys",
        Some(json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "tenant_forbidden");

    // Each sees its own keys; the gateway-wide admin sees both.
    let ids = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let seen = ids(call(&gw, &globex, Method::GET, "/admin/keys", None).await.json());
    assert_eq!(seen, ["g1"]);
    let seen = ids(call(&gw, &acme, Method::GET, "/admin/keys", None).await.json());
    assert_eq!(seen, [KEY_ID]);
    let all = ids(call(&gw, ADMIN_TOKEN, Method::GET, "/admin/keys", None).await.json());
    assert!(
        all.contains(&"g1".to_owned()) && all.contains(&KEY_ID.to_owned()),
        "{all:?}"
    );

    // Usage: acme's request is acme's alone.
    let rows = |v: Value| v["rows"].as_array().unwrap().len();
    let usage = "/admin/usage?by=tenant";
    assert_eq!(rows(call(&gw, &acme, Method::GET, usage, None).await.json()), 1);
    assert_eq!(rows(call(&gw, &globex, Method::GET, usage, None).await.json()), 0);

    // Another tenant's key cannot be revoked (it does not exist for them) or limited.
    let r = call(&gw, &globex, Method::DELETE, "/admin/keys/g1", None).await;
    assert_eq!(r.status, 200, "its own: {}", r.text());
    let r = call(
        &gw,
        &acme,
        Method::PUT,
        "/admin/limits/keys/g1",
        Some(json!({"requests_per_minute": 1})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        &gw,
        &acme,
        Method::PUT,
        "/admin/limits/teams/search",
        Some(json!({"requests_per_minute": 1})),
    )
    .await;
    assert_eq!(r.status, 403, "teams are gateway-wide");

    // Revoked: the token stops working on the next call.
    let r = call(&gw, ADMIN_TOKEN, Method::DELETE, "/admin/principals/globex-ops", None).await;
    assert_eq!(r.status, 200);
    let r = call(&gw, &globex, Method::GET, "/admin/keys", None).await;
    assert_eq!(r.status, 401);
    // Without a token, or with a wrong one: 401 when a bootstrap token is configured.
    let r = gw.admin(Method::GET, "/admin/keys", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(call(&gw, "nope", Method::GET, "/admin/keys", None).await.status, 401);
}
