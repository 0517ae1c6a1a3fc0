//! Virtual keys at run time: created and revoked through the admin API, effective at once,
//! persisted in SQLite, never shadowing a config-file key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use http::Method;
use serde_json::json;
use sluice_testkit::*;

fn chat_body(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "x"}]})
}

#[tokio::test]
async fn keys_are_created_revoked_and_persisted() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;

    let r = gw
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"id": "app-1", "tenant": "t9", "models": ["other"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-sluice-"));
    assert_eq!(gw.chat(&key, &chat_body("other")).await.status, 200, "works at once");
    assert_eq!(
        gw.chat(&key, &chat_body("chat")).await.status,
        403,
        "its model list holds"
    );

    // A config-file id cannot be taken, and config-file keys are read-only.
    assert_eq!(
        gw.admin(Method::POST, "/admin/keys", Some(json!({"id": KEY_ID})))
            .await
            .status,
        409
    );
    assert_eq!(
        gw.admin(Method::DELETE, &format!("/admin/keys/{KEY_ID}"), None)
            .await
            .status,
        409
    );
    assert_eq!(
        gw.admin(Method::POST, "/admin/keys", Some(json!({"id": "app-1"})))
            .await
            .status,
        409
    );
    assert_eq!(
        gw.admin(Method::POST, "/admin/keys", Some(json!({"models": ["nope"]})))
            .await
            .status,
        400
    );
    assert_eq!(
        gw.admin(Method::POST, "/admin/keys", Some(json!({"bogus": 1})))
            .await
            .status,
        400
    );

    let r = gw.admin(Method::POST, "/admin/keys", Some(json!({"team": "t"}))).await;
    let second = r.json()["key"].as_str().unwrap().to_owned();
    let second_id = r.json()["id"].as_str().unwrap().to_owned();

    let list = gw.admin(Method::GET, "/admin/keys", None).await.json();
    let sources: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(sources.contains(&(KEY_ID.to_owned(), "yaml".to_owned())));
    assert!(sources.contains(&("app-1".to_owned(), "runtime".to_owned())));
    assert!(!list.to_string().contains(&key), "the list never shows a key");

    let r = gw.admin(Method::DELETE, "/admin/keys/app-1", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(gw.chat(&key, &chat_body("other")).await.status, 401, "revoked at once");
    assert_eq!(gw.admin(Method::DELETE, "/admin/keys/app-1", None).await.status, 404);

    // Restart over the same store: the live key still works, the revoked one still does not.
    let dir = gw.shutdown().await;
    let gw = TestGateway::start_in(&config_with(&mock), dir).await;
    assert_eq!(
        gw.chat(&second, &chat_body("chat")).await.status,
        200,
        "{second_id} persisted"
    );
    assert_eq!(gw.chat(&key, &chat_body("other")).await.status, 401);
}

#[tokio::test]
async fn the_admin_api_can_require_a_token() {
    let mock = mock().await;
    // SAFETY of the test: the variable name is unique to this test.
    let yaml = format!(
        "admin: {{ listen: \"127.0.0.1:0\", token_env: SLUICE_TEST_UPSTREAM_KEY }}\n{}",
        config_with(&mock)
    );
    let gw = TestGateway::start(&yaml).await;
    assert_eq!(gw.admin(Method::GET, "/admin/keys", None).await.status, 401);
    let req = request(
        Method::GET,
        &gw.admin_url("/admin/keys"),
        Some(UPSTREAM_SECRET),
        &[],
        bytes::Bytes::new(),
    );
    assert_eq!(gw.send(req).await.status, 200);
}

#[tokio::test]
async fn concurrent_creates_all_take_effect() {
    let mock = mock().await;
    let gw = std::sync::Arc::new(TestGateway::start(&config_with(&mock)).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let r = gw
                .admin(Method::POST, "/admin/keys", Some(json!({"id": format!("k{i}")})))
                .await;
            assert_eq!(r.status, 201);
            r.json()["key"].as_str().unwrap().to_owned()
        }));
    }
    for t in tasks {
        let key = t.await.unwrap();
        assert_eq!(
            gw.chat(&key, &chat_body("chat")).await.status,
            200,
            "every created key works"
        );
    }
}
