//! The semantic cache over the wire, with the real all-MiniLM-L6-v2 (fetched by
//! `scripts/fetch-models.sh`; these tests fail without it): a paraphrase is a hit, a near-miss
//! is not, neither across tenants nor across conversations; an embedding that takes longer than
//! the route allows is given up (a miss, counted).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

mod cache_support;

use std::time::{Duration, Instant};

use cache_support::*;
use http::Method;
use serde_json::{Value, json};
use sluice_testkit::services::RedisServer;
use sluice_testkit::*;

fn model_dir() -> String {
    format!("{}/../../models/all-minilm-l6-v2", env!("CARGO_MANIFEST_DIR"))
}

/// The cache tests' config with a semantic cache on route `cached` (`semantic` adds to it) and
/// the model from the repository's models directory.
fn semantic_config(mock: &sluice_mock::MockServer, semantic: &str) -> String {
    format!(
        "{}embedder: {{ path: \"{}\" }}\n",
        config(mock, &format!(", semantic: {{ max_wait_ms: 20000{semantic} }}")),
        model_dir()
    )
}

fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn with_system(system: &str, question: &str) -> Value {
    json!({"model": "chat", "temperature": 0.2, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": question}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_is_a_semantic_hit_and_a_near_miss_is_not() {
    let mock = mock().await;
    let gw = TestGateway::start(&semantic_config(&mock, "")).await;

    let first = gw.chat(KEY, &ask("chat", "How do I reset my password?")).await;
    assert_eq!(first.header("x-sluice-cache"), Some("miss"));
    let again = gw
        .chat(KEY, &ask("chat", "What are the steps to reset my password?"))
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("x-sluice-cache"), Some("semantic"));
    let similarity: f64 = again.header("x-sluice-cache-similarity").unwrap().parse().unwrap();
    assert!((0.7..1.0).contains(&similarity), "{similarity}");
    assert_eq!(text(&again), text(&first));
    assert_ne!(again.json()["id"], first.json()["id"], "a replay has an id of its own");
    assert_eq!(requests(&mock), 1);
    let line = gw.log_lines(2).await.pop().unwrap();
    assert_eq!(line["cache"], "semantic");
    assert!(line["similarity"].as_f64().unwrap() >= 0.7, "{line}");
    assert_eq!(line["cost_micros"], 0);

    // A near-miss (not even similar enough).
    assert_eq!(
        gw.chat(KEY, &ask("chat", "What is the capital of France?"))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    let germany = gw.chat(KEY, &ask("chat", "What is the capital of Germany?")).await;
    assert_eq!(germany.header("x-sluice-cache"), Some("miss"));
    // Near-misses similar enough that only the check tells them apart: another direction,
    // another number, another name.
    gw.chat(KEY, &ask("chat", "Convert 100 USD to EUR")).await;
    assert_eq!(
        gw.chat(KEY, &ask("chat", "Convert 100 EUR to USD"))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(
        gw.chat(KEY, &ask("chat", "Convert 150 USD to EUR"))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    gw.chat(
        KEY,
        &ask("chat", "How do I get from Heathrow Airport to central London?"),
    )
    .await;
    assert_eq!(
        gw.chat(
            KEY,
            &ask("chat", "How do I get from Gatwick Airport to central London?")
        )
        .await
        .header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(requests(&mock), 8);
    let page = gw.metrics().await;
    for reason in ["order", "numbers", "names"] {
        let series = format!("sluice_cache_semantic_rejected_total{{reason=\"{reason}\"}}");
        assert!(metric(&page, &series) >= 1.0, "{series}: {page}");
    }
    assert!(
        metric(
            &page,
            "sluice_cache_lookups_total{route=\"cached\",result=\"semantic\"}"
        ) >= 1.0
    );
    assert!(page.contains("sluice_cache_embed_seconds_count"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_hits_stay_within_a_tenant_and_a_conversation() {
    let mock = mock().await;
    let gw = TestGateway::start(&semantic_config(&mock, "")).await;
    let q = "How can I export my contacts to a CSV file?";
    let p = "What's the way to export contacts into a CSV file?";
    assert_eq!(
        gw.chat(KEY, &with_system("You help with the address book.", q))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    // Another tenant asking the paraphrase: its own miss.
    assert_eq!(
        gw.chat(GLOBEX, &with_system("You help with the address book.", p))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    // Another system prompt: another conversation.
    assert_eq!(
        gw.chat(KEY, &with_system("You are a pirate.", p))
            .await
            .header("x-sluice-cache"),
        Some("miss")
    );
    assert_eq!(requests(&mock), 3);
    // The same tenant (another key of it) in the same conversation: a hit.
    let hit = gw
        .chat(ACME_2, &with_system("You help with the address book.", p))
        .await;
    assert_eq!(hit.header("x-sluice-cache"), Some("semantic"));
    assert_eq!(requests(&mock), 3);

    // A streaming client gets the semantic hit as a stream.
    let mut body = with_system("You help with the address book.", "Export my contacts to CSV - how?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.stream(KEY, &body).await;
    assert_eq!(r.headers()["x-sluice-cache"], "semantic");
    let (streamed, usage, done) = stream_text(&read_all(r.into_body()).await);
    assert!(!streamed.is_empty() && usage.is_some() && done);
    assert_eq!(requests(&mock), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_slower_than_the_route_allows_is_given_up_and_counted() {
    let mock = mock().await;
    // 1 ms for embedding a ~250-token prompt (tens of milliseconds of CPU).
    let yaml = semantic_config(&mock, "").replace("max_wait_ms: 20000", "max_wait_ms: 1");
    let gw = TestGateway::start(&yaml).await;
    let long = "Please explain in detail how the water cycle works, ".repeat(25);
    for _ in 0..2 {
        let r = gw.chat(KEY, &ask("chat", &long)).await;
        assert_eq!(r.status, 200);
    }
    let page = gw.metrics().await;
    assert!(
        metric(&page, "sluice_cache_semantic_skips_total{reason=\"late\"}") >= 1.0,
        "{page}"
    );
    // The exact cache still works (the second ask was an exact hit).
    assert_eq!(requests(&mock), 1);
    // Short prompts are not looked up semantically at all.
    gw.chat(KEY, &ask("chat", "Hi")).await;
    assert!(
        metric(
            &gw.metrics().await,
            "sluice_cache_semantic_skips_total{reason=\"short\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_one_instance_stores_is_a_semantic_hit_on_another_through_redis() {
    let redis = RedisServer::start();
    let mock = mock().await;
    let start = || async {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "{}store:\n  sqlite_path: \"{}\"\n  redis: {{ url: \"{}\", instances: 2, timeout_ms: 2000 }}\n",
            semantic_config(&mock, ""),
            dir.path().join("keys.db").display(),
            redis.url()
        );
        TestGateway::start_in(&yaml, dir).await
    };
    let (a, b) = (start().await, start().await);
    let miss = a.chat(KEY, &ask("chat", "How do I reset my password?")).await;
    assert_eq!(miss.header("x-sluice-cache"), Some("miss"));
    // B indexes the prompt A published (within a second; 10 s allowed on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.admin(Method::GET, "/admin/cache/stats", None).await.json()["semantic_entries"] != 1 {
        assert!(Instant::now() < deadline, "B never indexed A's prompt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hit = b
        .chat(KEY, &ask("chat", "What are the steps to reset my password?"))
        .await;
    assert_eq!(hit.header("x-sluice-cache"), Some("semantic"));
    assert_eq!(text(&hit), text(&miss));
    // Another tenant on B: still its own.
    let other = b
        .chat(GLOBEX, &ask("chat", "What are the steps to reset my password?"))
        .await;
    assert_eq!(other.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&mock), 2);
}

/// A semantic route whose embedder is a model alias: its prompts go as embeddings requests
/// through the gateway's own provider layer to that alias's deployment (a mock whose vectors
/// are bags of words), not to the in-process model; one that answers slower than the route
/// waits is given up (a miss, counted `late`), and the answer still comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_deployment_embeds_through_the_provider_layer() {
    let chat = mock().await;
    let words = |latency_ms| sluice_mock::Knobs {
        embed_words: Some(true),
        dimensions: Some(64),
        latency_ms,
        ..sluice_mock::Knobs::default()
    };
    let vectors = mock_with(sluice_mock::MockConfig {
        defaults: words(None),
        ..sluice_mock::MockConfig::default()
    })
    .await;
    let slow = mock_with(sluice_mock::MockConfig {
        defaults: words(Some(5_000)),
        ..sluice_mock::MockConfig::default()
    })
    .await;
    let config = format!(
        r#"
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{}", model: upstream-a, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: words, provider: openai, base_url: "{}", model: words-64, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
  - {{ name: slow-words, provider: openai, base_url: "{}", model: words-64, api_key_env: SLUICE_TEST_UPSTREAM_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
  - {{ name: slow-chat, deployments: [mock-a] }}
  - {{ name: vectors, deployments: [words] }}
  - {{ name: slow-vectors, deployments: [slow-words] }}
routes:
  - name: cached
    match: {{ models: [chat] }}
    cache: {{ ttl_ms: 60000, semantic: {{ embedder: vectors, threshold: 0.95, max_wait_ms: 20000 }} }}
  - name: slow
    match: {{ models: [slow-chat] }}
    cache: {{ ttl_ms: 60000, semantic: {{ embedder: slow-vectors, max_wait_ms: 100 }} }}
keys:
  - {{ id: {KEY_ID}, hash: "{}", tenant: acme }}
embedder: {{ path: /nonexistent/no-model-needed }}
"#,
        chat.base_url(),
        vectors.base_url(),
        slow.base_url(),
        key_hash(KEY),
    );
    let gw = TestGateway::start(&config).await;

    let first = gw
        .chat(KEY, &ask("chat", "Tell me which planet is the largest one"))
        .await;
    assert_eq!(first.header("x-sluice-cache"), Some("miss"), "{}", first.text());
    // The same words in another order: the deployment's vectors are identical.
    let again = gw
        .chat(KEY, &ask("chat", "Which planet is the largest one, tell me"))
        .await;
    assert_eq!(again.header("x-sluice-cache"), Some("semantic"), "{}", again.text());
    let similarity: f64 = again.header("x-sluice-cache-similarity").unwrap().parse().unwrap();
    assert!(similarity > 0.99, "{similarity}");
    assert_eq!(text(&again), text(&first));
    // One word of seven changed: similar (≈ 0.86), but under this route's 0.95.
    let other = gw
        .chat(KEY, &ask("chat", "Which planet is the smallest one, tell me"))
        .await;
    assert_eq!(other.header("x-sluice-cache"), Some("miss"));
    assert_eq!(requests(&chat), 2, "two answers from the chat deployment");
    assert_eq!(requests(&vectors), 3, "one embedding per semantic lookup");
    let asked = vectors.stats().recent();
    let body: Value = serde_json::from_str(&asked.first().unwrap().body).unwrap();
    assert_eq!(body["model"], "words-64", "the alias's deployment model: {body}");
    assert_eq!(body["input"], "Tell me which planet is the largest one");

    // A deployment slower than the route waits: given up, counted, and the request answered.
    let slow_answer = gw
        .chat(KEY, &ask("slow-chat", "Tell me which planet is the largest one"))
        .await;
    assert_eq!(slow_answer.status, 200, "{}", slow_answer.text());
    assert_eq!(slow_answer.header("x-sluice-cache"), Some("miss"));
    let page = gw.metrics().await;
    assert!(
        metric(&page, "sluice_cache_semantic_skips_total{reason=\"late\"}") >= 1.0,
        "{page}"
    );
    assert_eq!(
        metric(&page, "sluice_cache_semantic_skips_total{reason=\"no_embedder\"}"),
        0.0
    );
}
