//! The cache on the endpoints that are not chat, over the wire: completions (a replay with an
//! id of its own), embeddings and prediction routes are answered from the cache as the client
//! first got them; their streams are not cached; two tenants never share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod cache_support;

use cache_support::*;
use serde_json::json;
use sluice_testkit::*;

#[tokio::test]
async fn completions_and_embeddings_are_answered_from_the_cache() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;

    let completion = json!({"model": "chat", "prompt": "Say something kind.", "temperature": 0.2, "max_tokens": 20});
    let first = gw.post("/v1/completions", KEY, &completion).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let again = gw.post("/v1/completions", KEY, &completion).await;
    assert_eq!(again.header("x-sluice-cache"), Some("hit"));
    assert_eq!(again.json()["choices"][0]["text"], first.json()["choices"][0]["text"]);
    assert_eq!(again.json()["usage"], first.json()["usage"]);
    assert_ne!(again.json()["id"], first.json()["id"], "a replay has an id of its own");
    assert_eq!(requests(&mock), 1);

    let embedding = json!({"model": "chat", "input": ["alpha", "beta"], "encoding_format": "float"});
    let first = gw.post("/v1/embeddings", KEY, &embedding).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let again = gw.post("/v1/embeddings", KEY, &embedding).await;
    assert_eq!(again.header("x-sluice-cache"), Some("hit"));
    assert_eq!(again.json(), first.json());
    // Another format of the same inputs is another answer; another tenant has its own.
    let base64 = json!({"model": "chat", "input": ["alpha", "beta"], "encoding_format": "base64"});
    assert_eq!(
        gw.post("/v1/embeddings", KEY, &base64).await.header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(
        gw.post("/v1/embeddings", GLOBEX, &embedding)
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(requests(&mock), 4);
    let line = gw.log_lines(6).await.pop().unwrap();
    assert_eq!(line["endpoint"], "embeddings");

    // A hit costs nothing; the misses were charged.
    let hits: Vec<_> = gw
        .log_lines(6)
        .await
        .into_iter()
        .filter(|l| l["cache"] == "hit")
        .collect();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|l| l["cost_micros"] == 0));

    // A streamed completion is not cached (its answer is not kept whole).
    let mut streamed = completion.clone();
    streamed["stream"] = json!(true);
    let r = gw.post("/v1/completions", KEY, &streamed).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sluice-cache"), Some("bypass"));
}

#[tokio::test]
async fn embeddings_are_cached_per_input_so_a_batch_pays_only_for_its_new_inputs() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    let embed = |inputs: &[&str]| json!({"model": "chat", "input": inputs, "encoding_format": "float"});
    let first = gw.post("/v1/embeddings", KEY, &embed(&["alpha", "beta"])).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let vector = |r: &TestResponse, i: usize| r.json()["data"][i]["embedding"].clone();

    // A batch with one new input: only that one goes upstream, and the answer is in the
    // caller's order.
    let mixed = gw
        .post("/v1/embeddings", KEY, &embed(&["beta", "gamma", "alpha"]))
        .await;
    assert_eq!(mixed.status, 200, "{}", mixed.text());
    assert_eq!(mixed.header("x-sluice-cache"), Some("miss"));
    let sent = mock.stats().recent();
    let last = sent.last().unwrap();
    let upstream_body: serde_json::Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(upstream_body["input"], json!(["gamma"]), "only the new input is sent");
    assert_eq!(vector(&mixed, 0), vector(&first, 1));
    assert_eq!(vector(&mixed, 2), vector(&first, 0));
    let indexes: Vec<u64> = (0..3)
        .map(|i| mixed.json()["data"][i]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    // The new embedding is the one the model gives for it alone.
    let fresh = gw.post("/v1/embeddings", GLOBEX, &embed(&["gamma"])).await;
    assert_eq!(vector(&mixed, 1), vector(&fresh, 0));
    assert_eq!(requests(&mock), 3);
    // The mixed request was charged for its new input only (the mock counts its tokens).
    let lines = gw.log_lines(3).await;
    let charged = |l: &serde_json::Value| l["prompt_tokens"].as_u64().unwrap();
    assert!(charged(&lines[1]) < charged(&lines[0]), "{} vs {}", lines[1], lines[0]);
    assert!(
        mixed.json()["usage"]["prompt_tokens"].as_u64().unwrap() > charged(&lines[1]),
        "the body shows every input's tokens"
    );

    // Now every input is stored: no upstream call at all.
    let all = gw.post("/v1/embeddings", KEY, &embed(&["gamma", "alpha"])).await;
    assert_eq!(all.header("x-sluice-cache"), Some("hit"));
    assert_eq!(vector(&all, 0), vector(&mixed, 1));
    assert_eq!(requests(&mock), 3);
    // A single string input is one of them too.
    let one = gw
        .post(
            "/v1/embeddings",
            KEY,
            &json!({"model": "chat", "input": "beta", "encoding_format": "float"}),
        )
        .await;
    assert_eq!(one.header("x-sluice-cache"), Some("hit"));
    assert_eq!(vector(&one, 0), vector(&first, 1));
}

/// The prediction example with a cache on its route, and keys in two tenants.
fn prediction_config(mock: &sluice_mock::MockServer) -> String {
    let mut out = prediction_example(mock, "    cache: { ttl_ms: 60000 }\n");
    out.push_str(&format!(
        "keys:\n  - {{ id: {KEY_ID}, hash: \"{}\", tenant: acme }}\n  - {{ id: globex, hash: \"{}\", tenant: globex }}\n",
        key_hash(KEY),
        key_hash(GLOBEX)
    ));
    out
}

#[tokio::test]
async fn a_prediction_routes_answer_for_the_same_input_is_served_from_the_cache() {
    let mock = mock_with(sluice_mock::MockConfig {
        api_key: Some(UPSTREAM_SECRET.to_owned()),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&prediction_config(&mock)).await;
    let ask = json!({"user_id": "u-7", "candidates": ["sku-1", "sku-2", "sku-3", "sku-4"]});
    let first = gw.post("/v1/predict/recommender", KEY, &ask).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let again = gw.post("/v1/predict/recommender", KEY, &ask).await;
    assert_eq!(again.header("x-sluice-cache"), Some("hit"));
    assert_eq!(again.json(), first.json());
    // The same input in another key order is the same input.
    let reordered = json!({"candidates": ["sku-1", "sku-2", "sku-3", "sku-4"], "user_id": "u-7"});
    assert_eq!(
        gw.post("/v1/predict/recommender", KEY, &reordered)
            .await
            .header("x-sluice-cache"),
        Some("hit")
    );
    // Another input, or another tenant: the model answers.
    let other = json!({"user_id": "u-8", "candidates": ["sku-1", "sku-2", "sku-3", "sku-4"]});
    assert_eq!(
        gw.post("/v1/predict/recommender", KEY, &other)
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(
        gw.post("/v1/predict/recommender", GLOBEX, &ask)
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(mock.stats().recent().len(), 3);
}
