//! Prediction models through the same front door: the caller's JSON is checked against the
//! route's schema and mapped to the model server's tensors, the server's answer is checked and
//! mapped back to a ranked list, with the same keys, timeouts, logs, metrics and price table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;

/// The repository's example, pointed at the mock and given the test key.
fn config(mock: &MockServer) -> String {
    let mut out = prediction_example(mock, "");
    out.push_str(&format!("keys:\n  - {{ id: {KEY_ID}, hash: \"{}\" }}\n", key_hash(KEY)));
    out
}

async fn setup() -> (MockServer, TestGateway) {
    let mock = mock_with(sluice_mock::MockConfig {
        api_key: Some(UPSTREAM_SECRET.to_owned()),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&config(&mock)).await;
    (mock, gw)
}

#[tokio::test]
async fn a_ranked_answer_from_raw_scores() {
    let (mock, gw) = setup().await;
    let candidates = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"];
    let r = gw
        .post(
            "/v1/predict/recommender",
            KEY,
            &json!({"user_id": "u-7", "candidates": candidates, "context": {"hour": 9}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["user_id"], "u-7");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let confidences: Vec<f64> = items.iter().map(|i| i["confidence"].as_f64().unwrap()).collect();
    assert!(confidences.windows(2).all(|w| w[0] >= w[1]), "ranked: {confidences:?}");
    // Only what the route names: no tensors, no model metadata.
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert!(items.iter().all(|i| i.as_object().unwrap().len() == 2));

    // The model server saw tensors built from the request, with the deployment's credential.
    let seen = mock.stats().recent();
    let sent = seen.last().unwrap();
    assert_eq!(sent.path, "/v2/models/recommender/infer");
    let body: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(body["inputs"][0]["data"], json!(candidates));
    assert_eq!(body["inputs"][0]["shape"], json!([1, 5]));
    assert_eq!(body["inputs"][1]["data"], json!(["u-7"]));
    assert!(
        sent.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == &format!("Bearer {UPSTREAM_SECRET}"))
    );

    // The best three of the five scores the server gave, in order.
    let scores = &body; // re-derive from a direct call to the mock
    let direct: Value = {
        let req = hyper::Request::post(format!(
            "{}/v2/models/recommender/infer",
            mock.base_url().trim_end_matches("/v1")
        ))
        .header("authorization", format!("Bearer {UPSTREAM_SECRET}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(scores.to_string())))
        .unwrap();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let resp = client.request(req).await.unwrap();
        let b = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&b).unwrap()
    };
    let mut pairs: Vec<(String, f64)> = candidates
        .iter()
        .zip(direct["outputs"][0]["data"].as_array().unwrap())
        .map(|(c, s)| ((*c).to_owned(), s.as_f64().unwrap()))
        .collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let expected: Vec<&str> = pairs.iter().take(3).map(|(c, _)| c.as_str()).collect();
    let got: Vec<&str> = items.iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert_eq!(got, expected);

    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["endpoint"], "predict");
    assert_eq!(line["route"], "recommender");
    assert_eq!(line["model"], "recommender");
    assert_eq!(line["cost_micros"], 100, "per-request price: {line}");
    assert_eq!(line["usage_estimated"], false);
}

#[tokio::test]
async fn a_request_outside_the_schema_is_a_400_naming_the_field() {
    let (mock, gw) = setup().await;
    for (body, at) in [
        (json!({"candidates": ["a"]}), "body"),
        (json!({"user_id": "u", "candidates": []}), "/candidates"),
        (json!({"user_id": "u", "candidates": ["a"], "extra": 1}), "body"),
        (json!({"user_id": 5, "candidates": ["a"]}), "/user_id"),
    ] {
        let r = gw.post("/v1/predict/recommender", KEY, &body).await;
        assert_eq!(r.status, 400, "{body} → {}", r.text());
        assert_eq!(r.error_code(), "invalid_prediction_request");
        assert_eq!(r.json()["error"]["param"], at, "{}", r.text());
    }
    assert!(mock.stats().recent().is_empty(), "nothing reached the model server");
    // No key, no prediction.
    let r = gw
        .post_raw(
            "/v1/predict/recommender",
            None,
            &[],
            json!({"user_id": "u", "candidates": ["a"]}).to_string(),
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_reload_with_a_schema_that_does_not_compile_is_refused_and_the_checks_stay() {
    let (mock, gw) = setup().await;
    let before = gw.version().await;
    // `minLength` must be a number: the schema does not compile.
    let broken = config(&mock).replace(
        "user_id: { type: string, minLength: 1 }",
        "user_id: { type: string, minLength: one }",
    );
    assert_ne!(broken, config(&mock));
    gw.write_config(&broken);
    let r = gw.admin(http::Method::POST, "/admin/reload", None).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("request_schema"), "{}", r.text());
    assert_eq!(gw.version().await, before, "the old config keeps serving");
    let r = gw
        .post(
            "/v1/predict/recommender",
            KEY,
            &json!({"user_id": "", "candidates": ["a"]}),
        )
        .await;
    assert_eq!(r.status, 400, "still checked: {}", r.text());
    assert_eq!(r.error_code(), "invalid_prediction_request");
}

#[tokio::test]
async fn an_answer_outside_the_schema_is_a_typed_502_never_passed_on() {
    // A model server whose answers break the tensor contract.
    let mock = mock_with(sluice_mock::MockConfig {
        api_key: Some(UPSTREAM_SECRET.to_owned()),
        defaults: sluice_mock::Knobs {
            malformed: Some(true),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let gw2 = TestGateway::start(&config(&mock)).await;
    let r = gw2
        .post(
            "/v1/predict/recommender",
            KEY,
            &json!({"user_id": "u", "candidates": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_invalid_response");
    assert!(
        !r.text().contains("not-a-tensor"),
        "the bad answer is not passed on: {}",
        r.text()
    );
    let line = &gw2.log_lines(1).await[0];
    assert_eq!(line["status"], 502);
    assert_eq!(line["error_code"], "upstream_invalid_response");
}

#[tokio::test]
async fn model_server_failures_use_the_same_retries_and_errors() {
    let mock = mock_with(sluice_mock::MockConfig {
        api_key: Some("another-credential".to_owned()),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .post(
            "/v1/predict/recommender",
            KEY,
            &json!({"user_id": "u", "candidates": ["a"]}),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_auth_failed");
    // This config routes only the prediction path: the chat endpoint is not served at all.
    let r = gw
        .chat(
            KEY,
            &json!({"model": "recommender", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_code(), "no_route");
}
