//! Azure OpenAI deployments (addresses, `api-version`, `api-key`) and the price table: every
//! answered request's log line carries its cost in integer micro-units, and the metrics add up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;

fn config(mock: &MockServer) -> String {
    let v1 = mock.base_url();
    let root = v1.trim_end_matches("/v1");
    format!(
        r#"
prices:
  currency: USD
  models:
    - {{ model: "claude-*", input: 3, output: 15, cached_input: 0.3, cache_write: 3.75 }}
    - {{ model: "gpt4o-prod", input: 2.5, output: 10 }}
deployments:
  - {{ name: az, provider: azure, base_url: "{root}", model: gpt4o-prod, api_version: "2024-06-01", api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: claude-a, provider: anthropic, base_url: "{v1}", model: claude-upstream, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: free, provider: openai, base_url: "{v1}", model: unpriced, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: azure-chat, deployments: [az] }}
  - {{ name: claude, deployments: [claude-a] }}
  - {{ name: chat, deployments: [free] }}
routes:
  - name: default
    forward_params: [mock]
keys:
  - {{ id: {KEY_ID}, hash: "{}" }}
"#,
        key_hash(KEY)
    )
}

#[tokio::test]
async fn azure_deployments_get_azure_addresses_and_the_api_key_header() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "azure-chat", "messages": [{"role": "user", "content": "x"}]}),
        ),
        ("/v1/embeddings", json!({"model": "azure-chat", "input": "x"})),
    ] {
        let r = gw.post(path, KEY, &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // An Anthropic client reaches the Azure deployment too, translated.
    let r = gw
        .post_raw(
            "/v1/messages",
            Some(KEY),
            &[("anthropic-version", "2023-06-01")],
            json!({"model": "azure-chat", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["type"], "message");

    let seen = mock.stats().recent();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01",
            "/openai/deployments/gpt4o-prod/embeddings?api-version=2024-06-01",
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01",
        ]
    );
    for r in &seen {
        let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header("api-key").as_deref(), Some(UPSTREAM_SECRET));
        assert_eq!(header("authorization"), None);
    }
}

#[tokio::test]
async fn wrong_azure_key_is_a_gateway_problem_not_the_callers() {
    let mock = mock_with(sluice_mock::MockConfig {
        api_key: Some("the-right-key".into()),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .chat(
            KEY,
            &json!({"model": "azure-chat", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_auth_failed");
}

fn expected_cost(line: &Value, input: f64, output: f64, cached: f64, write: f64) -> u64 {
    let n = |k: &str| line[k].as_u64().unwrap() as f64;
    let plain = n("prompt_tokens") - n("cached_tokens") - n("cache_write_tokens");
    (plain * input + n("cached_tokens") * cached + n("cache_write_tokens") * write + n("completion_tokens") * output)
        .round() as u64
}

#[tokio::test]
async fn every_priced_request_logs_its_cost() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let r = gw
        .chat(KEY, &json!({"model": "azure-chat", "messages": [{"role": "user", "content": "hello there"}], "mock": {"chunks": 20}}))
        .await;
    assert_eq!(r.status, 200);
    // A streamed, translated request with prompt-cache usage.
    let r = gw
        .chat(
            KEY,
            &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "x"}],
                    "mock": {"chunks": 6, "cached_tokens": 1000, "cache_write_tokens": 200}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .chat(
            KEY,
            &json!({"model": "chat", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 200);

    let lines = gw.log_lines(3).await;
    let azure = &lines[0];
    assert_eq!(azure["completion_tokens"], 20);
    assert_eq!(azure["currency"], "USD");
    assert_eq!(
        azure["cost_micros"].as_u64().unwrap(),
        expected_cost(azure, 2.5, 10.0, 2.5, 2.5)
    );
    assert!(
        azure["cost_micros"].as_u64().unwrap() >= 200,
        "20 output tokens at 10/Mtok: {azure}"
    );

    let claude = &lines[1];
    assert_eq!(claude["cached_tokens"], 1000);
    assert_eq!(claude["cache_write_tokens"], 200);
    let cost = claude["cost_micros"].as_u64().unwrap();
    assert_eq!(cost, expected_cost(claude, 3.0, 15.0, 0.3, 3.75));
    assert!(cost >= 1000 * 3 / 10 + 200 * 375 / 100 + 6 * 15, "{claude}");

    let free = &lines[2];
    assert!(free["cost_micros"].is_null(), "an unpriced model has no cost: {free}");

    let metrics = gw.metrics().await;
    let total = azure["cost_micros"].as_u64().unwrap() + cost;
    let claude_line = format!("sluice_cost_micros_total{{route=\"default\",model=\"claude\"}} {cost}");
    assert!(metrics.contains(&claude_line), "{metrics}");
    let sum: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_cost_micros_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(sum, total);
}
