//! Limits over real HTTP, in process: rates, calendar quotas, token limits settled with the real
//! usage, cost budgets, limits shared by a team, 429s callers can act on, and counters that
//! survive a config reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use serde_json::{Value, json};
use sluice_mock::MockServer;
use sluice_testkit::*;

const OTHER_KEY: &str = "sk-sluice-test-key-teammate";

fn config(mock: &MockServer, key_limits: &str) -> String {
    let base = mock.base_url();
    format!(
        r#"
prices:
  models:
    - {{ model: upstream-a, input: 10, output: 30 }}
tiers:
  - {{ name: free, limits: {{ requests_per_day: 4 }} }}
teams:
  - {{ name: search, limits: {{ tokens_per_day: 100000 }} }}
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{base}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
routes:
  - name: default
keys:
  - {{ id: {KEY_ID}, hash: "{}", team: search, limits: {key_limits} }}
  - {{ id: teammate, hash: "{}", team: search, tier: free }}
"#,
        key_hash(KEY),
        key_hash(OTHER_KEY)
    )
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": "chat", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_rate_refuses_with_headers_and_a_code_naming_the_limit() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "{ requests_per_minute: 3 }")).await;
    for remaining in ["2", "1", "0"] {
        let r = gw.chat(KEY, &ask(16)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some(remaining));
    }
    let r = gw.chat(KEY, &ask(16)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.json()["error"]["param"], "requests_per_minute");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one request drains in 20 s: {retry}");
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(
        mock.stats().recent().len(),
        3,
        "the refused request never reached the model"
    );
    let line = &gw.log_lines(4).await[3];
    assert_eq!(line["status"], 429);
    assert_eq!(line["error_code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn a_tier_quota_counts_per_key_and_survives_a_reload() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "{}")).await;
    for _ in 0..4 {
        assert_eq!(gw.chat(OTHER_KEY, &ask(16)).await.status, 200);
    }
    let r = gw.chat(OTHER_KEY, &ask(16)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["param"], "requests_per_day");
    assert!(r.header("x-ratelimit-reset-requests").unwrap().ends_with('s'));
    // The other key of the same team is not on that tier.
    assert_eq!(gw.chat(KEY, &ask(16)).await.status, 200);
    // A reload keeps the counters.
    let before = gw.version().await;
    gw.write_config(&config(&mock, "{ requests_per_hour: 1000 }"));
    let r = gw.admin(http::Method::POST, "/admin/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(gw.version().await, before);
    assert_eq!(
        gw.chat(OTHER_KEY, &ask(16)).await.status,
        429,
        "counters survived the reload"
    );
}

#[tokio::test]
async fn token_limits_reserve_the_estimate_and_settle_the_real_usage() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "{ tokens_per_day: 2500 }")).await;
    // Each request reserves its max_tokens (1000) plus its input, and uses ~10: after settlement
    // the unused reservation is back, so many more than two requests fit.
    for i in 0..10 {
        let r = gw.chat(KEY, &ask(1000)).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let used: u64 = gw
        .log_lines(10)
        .await
        .iter()
        .map(|l| l["total_tokens"].as_u64().unwrap())
        .sum();
    let r = gw.chat(KEY, &ask(1)).await;
    let remaining: u64 = r.header("x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
    let input_estimate = 2500 - used - remaining - 1; // this request's own reservation, minus 1 output
    assert!(
        input_estimate < 100,
        "only the real usage stays charged: used {used}, remaining {remaining}"
    );
    // A request that can never fit is a 400, not a 429 to retry.
    let r = gw.chat(KEY, &ask(5000)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn a_cost_budget_refuses_with_its_own_code() {
    let mock = mock().await;
    // 0.0012 a day; each request costs about 8 output tokens × 30/Mtok + input × 10/Mtok.
    let gw = TestGateway::start(&config(&mock, "{ cost_per_day: 0.0012 }")).await;
    let mut served = 0;
    let mut refused = None;
    for _ in 0..20 {
        let r = gw.chat(KEY, &ask(8)).await;
        if r.status == 200 {
            served += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the budget ran out");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "budget_exceeded");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("USD"));
    let lines = gw.log_lines(served + 1).await;
    let spent: u64 = lines.iter().filter_map(|l| l["cost_micros"].as_u64()).sum();
    assert_eq!(lines.iter().filter(|l| l["status"] == 200).count(), served);
    assert!(
        spent <= 1200,
        "never over budget: {spent} micro-USD in {served} requests"
    );
    assert!(served >= 2, "{served}");
}

#[tokio::test]
async fn a_team_limit_is_shared_by_its_keys() {
    let mock = mock().await;
    let base = config(&mock, "{}").replace("tokens_per_day: 100000", "requests_per_minute: 2");
    let gw = TestGateway::start(&base).await;
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
    assert_eq!(gw.chat(OTHER_KEY, &ask(8)).await.status, 200);
    let r = gw.chat(KEY, &ask(8)).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("team limit"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_stream_the_client_leaves_is_charged_what_was_relayed() {
    let mock = mock().await;
    // (The team's own token limit is lifted out of the way: the key's output limit is watched.)
    let yaml = config(&mock, "{ output_tokens_per_day: 100000 }").replace(
        "name: search, limits: { tokens_per_day: 100000 }",
        "name: search, limits: { tokens_per_day: 900000000 }",
    );
    let gw = TestGateway::start(&yaml).await;
    // A slow 40-chunk stream; the client reads 5 chunks and hangs up.
    let mut resp = gw
        .stream(
            KEY,
            &json!({"model": "chat", "stream": true, "max_tokens": 4000, "messages": [{"role": "user", "content": "hi"}],
                    "mock": {"chunks": 40, "chunk_delay_ms": 20}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let before: u64 = resp.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(before, 100_000 - 4000, "the reservation is the request's max_tokens");
    let body = resp.body_mut();
    let mut seen = 0;
    while seen < 6 {
        if next_frame(body, std::time::Duration::from_secs(5)).await.is_some() {
            seen += 1;
        }
    }
    drop(resp);
    let line = gw.log_lines(1).await[0].clone();
    assert_eq!(line["error_class"], "client_closed");
    let charged = line["completion_tokens"].as_u64().unwrap();
    assert!(
        (4..40).contains(&charged),
        "charged the relayed output, not the reservation: {line}"
    );
    // What the limit holds now is exactly that, not the 4 000 reserved.
    let r = gw.chat(KEY, &ask(1)).await;
    let after: u64 = r.header("x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
    assert_eq!(after, 100_000 - charged - 1);
}

#[tokio::test]
async fn the_tokenizer_decides_when_the_byte_bound_would_refuse() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "{ input_tokens_per_day: 150 }")).await;
    // ~340 bytes of JSON: the byte bound says ~115 tokens of input; the tokenizer says ~70.
    let prompt = "hello ".repeat(50);
    let body = json!({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": prompt}]});
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 200, "the first fits either way: {}", r.text());
    // Now ~90 tokens are used (the mock's own count); the bound (~115) would refuse the second,
    // its exact count (~60 by the tokenizer) fits.
    let used = gw.log_lines(1).await[0]["prompt_tokens"].as_u64().unwrap();
    let exact = {
        let text = body.to_string();
        sluice_gateway::stream::tokens::count_tokens(&text)
    };
    let bound = (body.to_string().len() as u64).div_ceil(3);
    assert!(
        used + bound > 150 && used + exact <= 150,
        "the test needs the bound to refuse and the count to admit: used {used}, bound {bound}, exact {exact}"
    );
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 200, "counted exactly, it fits: {}", r.text());
    let r = gw.chat(KEY, &body).await;
    assert_eq!(r.status, 429, "and then the limit holds: {}", r.text());
    assert_eq!(r.json()["error"]["param"], "input_tokens_per_day");
}

#[tokio::test]
async fn limits_change_at_run_time_through_the_admin_api() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "{}")).await;
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
    let r = gw
        .admin(
            http::Method::PUT,
            &format!("/admin/limits/keys/{KEY_ID}"),
            Some(json!({"requests_per_minute": 2})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["limits"][0]["name"], "requests_per_minute");
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
    let r = gw.chat(KEY, &ask(8)).await;
    assert_eq!(r.status, 429, "the new limit applies without a restart");
    let listed = gw.admin(http::Method::GET, "/admin/limits", None).await.json();
    assert_eq!(listed["keys"][KEY_ID][0]["amount"], 2);
    // Invalid limits are refused with the reason; nothing changes.
    let r = gw
        .admin(http::Method::PUT, "/admin/teams-nope/x", Some(json!({})))
        .await;
    assert_eq!(r.status, 404);
    let r = gw
        .admin(
            http::Method::PUT,
            &format!("/admin/limits/keys/{KEY_ID}"),
            Some(json!({"requests_per_fortnight": 2})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 429);
    // Cleared: the config's limits (none for this key) apply again.
    let r = gw
        .admin(http::Method::DELETE, &format!("/admin/limits/keys/{KEY_ID}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
}

#[tokio::test]
async fn a_soft_budget_never_refuses_and_alerts_once_per_threshold_signed() {
    let mock = mock().await;
    let (url, got) = webhook_receiver().await;
    let yaml = config(&mock, "{ soft_cost_per_day: 0.0005 }").replacen(
        "tiers:",
        &format!(
            "budget_alerts: {{ url: \"{url}\", secret_env: SLUICE_TEST_UPSTREAM_KEY, thresholds: [50, 100] }}\ntiers:"
        ),
        1,
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..4 {
        let r = gw.chat(KEY, &ask(8)).await;
        assert_eq!(r.status, 200, "a soft budget never refuses: {}", r.text());
    }
    let spent: u64 = gw
        .log_lines(4)
        .await
        .iter()
        .filter_map(|l| l["cost_micros"].as_u64())
        .sum();
    assert!(spent > 500, "the test needs to overspend the soft budget: {spent}");
    assert!(eventually(|| got.lock().unwrap().len() >= 2).await, "two alerts arrive");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let alerts = got.lock().unwrap().clone();
    assert_eq!(alerts.len(), 2, "once per threshold, not per request");
    let mut thresholds = Vec::new();
    for (headers, body) in &alerts {
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["scope"], "key");
        assert_eq!(v["id"], KEY_ID);
        assert_eq!(v["budget"], "soft_cost_per_day");
        assert_eq!(v["soft"], true);
        assert_eq!(v["limit_micros"], 500);
        thresholds.push(v["threshold_percent"].as_u64().unwrap());
        let sig = headers["x-sluice-signature"].to_str().unwrap();
        let expected = hex::encode(sluice_gateway::alerts::hmac_sha256(UPSTREAM_SECRET.as_bytes(), body));
        assert_eq!(sig, format!("sha256={expected}"), "signed with the configured secret");
    }
    thresholds.sort_unstable();
    assert_eq!(thresholds, [50, 100]);
}

#[tokio::test]
async fn run_time_limits_survive_a_restart() {
    let mock = mock().await;
    let yaml = config(&mock, "{}");
    let gw = TestGateway::start(&yaml).await;
    let r = gw
        .admin(
            http::Method::PUT,
            &format!("/admin/limits/keys/{KEY_ID}"),
            Some(json!({"requests_per_day": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
    let dir = gw.shutdown().await;
    // A new process on the same store: the limit is still set (counters start afresh in it).
    let gw = TestGateway::start_in(&yaml, dir).await;
    let listed = gw.admin(http::Method::GET, "/admin/limits", None).await.json();
    assert_eq!(listed["keys"][KEY_ID][0]["name"], "requests_per_day");
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 200);
    assert_eq!(gw.chat(KEY, &ask(8)).await.status, 429);
}

#[tokio::test]
async fn a_stream_cut_short_is_charged_its_output_counted_with_the_tokenizer() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "{ tokens_per_day: 100000 }")).await;
    // Token limits load the tokenizer in the background; the gateway runs in this process.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sluice_gateway::stream::tokens::tokenizer_ready() {
        assert!(std::time::Instant::now() < deadline, "the tokenizer never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The upstream drops the connection after 9 of 12 chunks: no usage is ever reported.
    let body = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}],
                      "mock": {"chunks": 12, "drop_after_chunks": 9}});
    let resp = gw.stream(KEY, &body).await;
    assert_eq!(resp.status(), 200);
    let text = read_all(resp.into_body()).await;
    let pieces: Vec<String> = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .filter(|p| !p.is_empty())
        .collect();
    assert!(
        (5..12).contains(&pieces.len()),
        "cut short: {} pieces\n{text}",
        pieces.len()
    );
    let counted: u64 = pieces
        .iter()
        .map(|p| sluice_gateway::stream::tokens::count_tokens(p))
        .sum();
    assert_ne!(
        counted,
        pieces.len() as u64,
        "the test needs pieces of more than one token"
    );
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["usage_estimated"], true, "{line}");
    assert_eq!(line["completion_tokens"], counted, "{line}");
}

#[tokio::test]
async fn user_limits_follow_the_request_user_only_for_trusted_keys() {
    let mock = mock().await;
    let ask_as = |user: &str| json!({"model": "chat", "max_tokens": 8, "user": user, "messages": [{"role": "user", "content": "hi"}]});
    let trusted = config(&mock, "{}").replace(
        "team: search, limits: {}",
        "team: search, limits: {}, user: svc, trust_user: true, user_limits: { requests_per_day: 2 }",
    );
    let gw = TestGateway::start(&trusted).await;
    for _ in 0..2 {
        assert_eq!(gw.chat(KEY, &ask_as("alice")).await.status, 200);
    }
    let r = gw.chat(KEY, &ask_as("alice")).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("user limit"),
        "{}",
        r.text()
    );
    assert_eq!(
        gw.chat(KEY, &ask_as("bob")).await.status,
        200,
        "each user has their own"
    );
    let long = "u".repeat(300);
    assert_eq!(gw.chat(KEY, &ask_as(&long)).await.status, 400);

    // Untrusted: the request's `user` is ignored; every request counts as the key's own user.
    let untrusted = trusted.replace("trust_user: true", "trust_user: false");
    let gw = TestGateway::start(&untrusted).await;
    assert_eq!(gw.chat(KEY, &ask_as("alice")).await.status, 200);
    assert_eq!(gw.chat(KEY, &ask_as("bob")).await.status, 200);
    let r = gw.chat(KEY, &ask_as("carol")).await;
    assert_eq!(
        r.status,
        429,
        "a made-up user does not get a fresh allowance: {}",
        r.text()
    );
}

#[tokio::test]
async fn a_key_made_through_the_admin_api_carries_user_limits_and_trust() {
    let mock = mock().await;
    let ask_as = |user: &str| json!({"model": "chat", "max_tokens": 8, "user": user, "messages": [{"role": "user", "content": "hi"}]});
    let yaml = config(&mock, "{}");
    let gw = TestGateway::start(&yaml).await;
    let bad = gw
        .admin(
            http::Method::POST,
            "/admin/keys",
            Some(json!({"id": "bad", "user_limits": {"requests_per_fortnight": 2}})),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    let made = gw
        .admin(
            http::Method::POST,
            "/admin/keys",
            Some(json!({"id": "svc", "trust_user": true, "user_limits": {"requests_per_day": 2}})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let made = made.json();
    assert_eq!(made["trust_user"], true);
    assert_eq!(made["user_limits"][0]["name"], "requests_per_day");
    let key = made["key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(gw.chat(&key, &ask_as("alice")).await.status, 200);
    }
    assert_eq!(gw.chat(&key, &ask_as("alice")).await.status, 429);
    assert_eq!(
        gw.chat(&key, &ask_as("bob")).await.status,
        200,
        "each user has their own"
    );

    // Changed at run time, and still there after a restart on the same store.
    let r = gw
        .admin(
            http::Method::PUT,
            "/admin/limits/users/svc",
            Some(json!({"requests_per_day": 5})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gw.chat(&key, &ask_as("alice")).await.status, 200, "the new allowance");
    let dir = gw.shutdown().await;
    let gw = TestGateway::start_in(&yaml, dir).await;
    let listed = gw.admin(http::Method::GET, "/admin/keys", None).await.json();
    let svc = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "svc")
        .cloned()
        .unwrap();
    assert_eq!(svc["trust_user"], true, "{svc}");
    let limits = gw.admin(http::Method::GET, "/admin/limits", None).await.json();
    assert_eq!(limits["users"]["svc"][0]["amount"], 5, "{limits}");
    for _ in 0..5 {
        assert_eq!(gw.chat(&key, &ask_as("carol")).await.status, 200);
    }
    assert_eq!(gw.chat(&key, &ask_as("carol")).await.status, 429);
}

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_cells_of_users_who_came_and_went_are_evicted() {
    use futures_util::StreamExt;
    const USERS: usize = 500;
    let mock = mock().await;
    // No team: the only cells are the users' rates, each at rest 15 s after its one request
    // (so all 500 are still there when counted: 500 requests take far less than 15 s).
    let yaml = config(&mock, "{}").replace(
        "team: search, limits: {}",
        "limits: {}, user: svc, trust_user: true, user_limits: { requests_per_minute: 4 }",
    );
    let gw = TestGateway::start(&yaml).await;
    let cells = |m: &str| gauge(m, "sluice_limits_cells").expect("sluice_limits_cells in /metrics");
    let baseline = cells(&gw.metrics().await);
    let statuses: Vec<u16> = futures_util::stream::iter(0..USERS)
        .map(|i| {
            let gw = &gw;
            async move {
                let body = json!({"model": "chat", "max_tokens": 8, "user": format!("user-{i}"),
                                  "messages": [{"role": "user", "content": "hi"}]});
                gw.chat(KEY, &body).await.status.as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let peak = cells(&gw.metrics().await);
    assert!(
        peak >= baseline + USERS as i64,
        "{peak} cells after {USERS} users (baseline {baseline})"
    );
    // Each user's cell is back at rest 15 s after its request; the sweep runs every second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut now = peak;
    while now > baseline && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        now = cells(&gw.metrics().await);
    }
    assert_eq!(now, baseline, "the users' cells were never evicted (peak {peak})");
}
