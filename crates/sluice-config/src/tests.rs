use super::*;

const KEY_HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn env(name: &str) -> Option<String> {
    (name == "SET_VAR").then(|| "secret-value".to_owned())
}

fn load(text: &str) -> Result<Config, LoadError> {
    load_str(text, &env)
}

/// Asserts that `text` fails validation with exactly these `line: path` pairs (line 0 = none).
fn check_errors(text: &str, expected: &[(u64, &str)]) {
    match load(text) {
        Err(LoadError::Invalid(errs)) => {
            let got: Vec<(u64, String)> = errs.0.iter().map(|e| (e.line.unwrap_or(0), e.path.clone())).collect();
            let want: Vec<(u64, String)> = expected.iter().map(|(l, p)| (*l, (*p).to_owned())).collect();
            assert_eq!(got, want, "errors were:\n{errs}");
        }
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_defaults_and_a_catch_all_route() {
    let c = load("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].name, "default");
    assert_eq!(c.routes[0].policy.stream_idle_timeout.as_millis(), 60_000);
    assert_eq!(c.routes[0].policy.max_attempts, 1);
}

#[test]
fn full_config_resolves_references() {
    let text = format!(
        r#"
deployments:
  - name: a
    provider: openai
    base_url: https://example.test/v1
    model: up-a
    api_key_env: SET_VAR
  - name: m
    provider: mock
models:
  - name: chat
    deployments: [a, m]
defaults:
  first_byte_timeout_ms: 1000
routes:
  - name: r1
    match: {{ paths: ["/v1/chat/*"], models: [chat], headers: {{ X-Task: summarize }} }}
    allowed_models: [chat]
    total_timeout_ms: 2000
keys:
  - id: k1
    hash: "{KEY_HASH}"
    tenant: t
    models: ["chat"]
    routes: [r1]
    expires_at: "2030-01-01T00:00:00Z"
"#
    );
    let c = load(&text).unwrap();
    assert_eq!(c.models[0].deployments, vec![0, 1]);
    assert_eq!(
        c.deployments[0].api_key.as_ref().map(Secret::expose),
        Some("secret-value")
    );
    assert_eq!(c.deployments[1].upstream_model, "m");
    assert!(c.deployments[1].base_url.is_none());
    let r = &c.routes[0];
    assert_eq!(r.policy.first_byte_timeout.as_millis(), 1000, "defaults block applies");
    assert_eq!(r.policy.total_timeout.as_millis(), 2000, "route value wins");
    assert_eq!(r.allowed_models, Some(vec![0]));
    assert_eq!(r.matcher.headers[0].0.as_str(), "x-task");
    assert!(r.matcher.paths[0].matches("/v1/chat/completions"));
    assert_eq!(c.keys[0].hash, [0u8; 32]);
    assert!(format!("{:?}", c.deployments[0].api_key).contains("redacted"));
    assert!(!format!("{c:?}").contains("secret-value"), "no secret in Debug output");
}

#[test]
fn unknown_fields_are_rejected_with_location() {
    let err = load("server:\n  listen: 127.0.0.1:1\n  lisen: x\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("lisen"), "{msg}");
    assert!(msg.contains("line 3") || msg.contains("3:"), "{msg}");
}

#[test]
fn every_error_is_reported_with_path_and_line() {
    check_errors(
        r#"
deployments:
  - name: a
    provider: openai
    model: x
  - name: b
    provider: telepathy
  - name: c
    provider: openai
    base_url: ftp://nope
    model: y
    api_key_env: UNSET_VAR
models:
  - name: chat
    deployments: [a, ghost]
routes:
  - name: r
    model: nothing
    max_attempts: 50
    connect_timeout_ms: 0
keys:
  - id: k
    hash: md5:abc
    routes: [nope]
"#,
        &[
            (3, "deployments[0].base_url"),
            (7, "deployments[1].provider"),
            (10, "deployments[2].base_url"),
            (12, "deployments[2].api_key_env"),
            (15, "models[0].deployments[1]"),
            (18, "routes[0].model"),
            (19, "routes[0].max_attempts"),
            (20, "routes[0].connect_timeout_ms"),
            (23, "keys[0].hash"),
            (24, "keys[0].routes[0]"),
        ],
    );
}

#[test]
fn duplicates_and_body_limits() {
    check_errors(
        r#"
server:
  max_body_bytes: 100
deployments:
  - { name: m, provider: mock }
  - { name: m, provider: mock }
routes:
  - name: r
    max_body_bytes: 1000
"#,
        &[(6, "deployments[1]"), (9, "routes[0].max_body_bytes")],
    );
}

#[test]
fn patterns_match() {
    let cases = [
        ("*", "anything", true),
        ("gpt-*", "gpt-4o", true),
        ("gpt-*", "claude", false),
        ("a", "a", true),
        ("a", "ab", false),
    ];
    for (pattern, value, expected) in cases {
        assert_eq!(Pattern::parse(pattern).matches(value), expected, "{pattern} vs {value}");
    }
}

#[test]
fn key_hash_round_trip() {
    let s = key_hash_string("sk-sluice-demo");
    assert_eq!(
        parse_key_hash(&s).map(hex::encode),
        s.strip_prefix("sha256:").map(str::to_owned)
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_loads_or_errors(text in "[ -~\n]{0,200}") {
            let _ = load(&text);
        }

        #[test]
        fn yaml_shaped_text_loads_or_errors(
            section in prop_oneof![Just("server"), Just("routes"), Just("models"), Just("deployments"), Just("keys"), Just("defaults")],
            body in "[a-z_:0-9 \\[\\]{},\n-]{0,80}",
        ) {
            let _ = load(&format!("{section}:\n  {body}\n"));
        }
    }
}

#[test]
fn prices_resolve_from_the_table_or_the_deployment() {
    let c = load(
        r#"
prices:
  currency: EUR
  models:
    - { model: "claude-*", input: 3, output: 15, cached_input: 0.3, cache_write: 3.75 }
    - { model: "*", input: 0.15, output: 0.6 }
deployments:
  - { name: a, provider: anthropic, base_url: "https://example.test/v1", model: claude-x }
  - { name: b, provider: openai, base_url: "https://example.test/v1", model: gpt-x }
  - { name: c, provider: azure, base_url: "https://res.example.test", model: prod, api_version: "2024-06-01",
      price: { per_request: 0.002 } }
"#,
    )
    .unwrap();
    assert_eq!(c.currency, "EUR");
    let a = c.deployments[0].price.unwrap();
    assert_eq!(
        (a.input, a.output, a.cached_input, a.cache_write),
        (3_000_000, 15_000_000, 300_000, 3_750_000)
    );
    let b = c.deployments[1].price.unwrap();
    assert_eq!(
        (b.input, b.cached_input, b.cache_write),
        (150_000, 150_000, 150_000),
        "cache prices default to input"
    );
    let az = &c.deployments[2];
    assert_eq!(az.price.unwrap().per_request, 2_000);
    assert_eq!(az.price.unwrap().input, 0);
    assert_eq!(az.api_version.as_deref(), Some("2024-06-01"));
}

#[test]
fn cost_is_exact_integer_micro_units() {
    let p = Price {
        input: 3_000_000,
        output: 15_000_000,
        cached_input: 300_000,
        cache_write: 3_750_000,
        per_request: 0,
    };
    // 1 000 plain + 2 000 cached + 100 written prompt tokens, 500 completion tokens:
    // 1000×3 + 2000×0.3 + 100×3.75 + 500×15 = 3000 + 600 + 375 + 7500 = 11 475 micro-units.
    assert_eq!(p.cost_micros(3_100, 2_000, 100, 500), 11_475);
    // Rounded to the nearest micro-unit: 3 tokens at 0.15/Mtok = 0.45 → 0; 4 → 0.6 → 1.
    let cheap = Price {
        input: 150_000,
        cached_input: 150_000,
        cache_write: 150_000,
        ..Price::default()
    };
    assert_eq!(cheap.cost_micros(3, 0, 0, 0), 0);
    assert_eq!(cheap.cost_micros(4, 0, 0, 0), 1);
    assert_eq!(
        Price {
            per_request: 7,
            ..Price::default()
        }
        .cost_micros(0, 0, 0, 0),
        7
    );
    // Never overflows.
    let huge = Price {
        input: u64::MAX,
        output: u64::MAX,
        cached_input: u64::MAX,
        cache_write: u64::MAX,
        per_request: u64::MAX,
    };
    assert_eq!(huge.cost_micros(u64::MAX, 0, 0, u64::MAX), u64::MAX);
}

#[test]
fn bad_prices_and_misplaced_azure_settings_are_errors() {
    check_errors(
        r#"
prices:
  currency: dollars
  models:
    - { model: "*", input: -1 }
deployments:
  - { name: a, provider: openai, base_url: "https://example.test/v1", model: x, api_version: "2024-06-01" }
"#,
        &[
            (3, "prices.currency"),
            (5, "prices.models[0].input"),
            (7, "deployments[0].api_version"),
        ],
    );
}

#[test]
fn admission_settings_are_checked() {
    check_errors(
        r#"
deployments:
  - { name: a, provider: openai, base_url: "https://example.test/v1", model: x, max_concurrency: 0 }
teams:
  - { name: t, queue_weight: 2 }
tenants:
  - { name: u, queue_weight: 500 }
"#,
        &[
            (3, "deployments[0].max_concurrency"),
            (5, "teams[0].queue_weight"),
            (7, "tenants[0].queue_weight"),
        ],
    );
    let c = load(
        r#"
deployments:
  - { name: a, provider: openai, base_url: "https://example.test/v1", model: x, max_concurrency: 8 }
tenants:
  - { name: u, queue_weight: 3 }
server: { reuse_port: false }
"#,
    )
    .unwrap();
    assert_eq!(c.deployments[0].max_concurrency, Some(8));
    assert_eq!(c.tenant_weights.get("u"), Some(&3));
    assert!(!c.server.reuse_port);
}

#[test]
fn self_hosted_servers_are_told_apart_from_third_parties() {
    let check = |url: &str, expected: bool| {
        let uri: http::Uri = url.parse().unwrap();
        assert_eq!(crate::types::is_self_hosted(Some(&uri)), expected, "{url}");
    };
    for url in [
        "http://127.0.0.1:8000/v1",
        "http://10.0.0.21:8000/v1",
        "http://192.168.1.5/v1",
        "http://[::1]:8000/v1",
        "http://[fd00::5]/v1",
        "http://localhost:11434/v1",
        "http://vllm:8000/v1",
        "http://vllm.inference.svc.cluster.local/v1",
        "http://tgi.internal/v1",
    ] {
        check(url, true);
    }
    for url in [
        "https://api.example.com/v1",
        "https://8.8.8.8/v1",
        "https://myresource.openai.azure.com",
    ] {
        check(url, false);
    }
    assert!(crate::types::is_self_hosted(None), "an embedded mock");
}

#[test]
fn a_route_cache_policy_merges_with_the_defaults_field_by_field() {
    let c = load(
        r#"
defaults:
  cache: { ttl_ms: 60000, scope: team, skip_sampled: true }
cache: { memory_bytes: 8388608 }
routes:
  - name: own-ttl
    cache: { ttl_ms: 5000 }
  - name: inherits
  - name: never
    cache: { ttl_ms: 0 }
  - name: by-key
    cache: { scope: key, max_entry_bytes: 4096 }
"#,
    )
    .unwrap();
    let cache = |i: usize| c.routes[i].policy.cache.clone();
    let own = cache(0).unwrap();
    assert_eq!(own.ttl.as_millis(), 5000);
    assert_eq!(own.scope, CacheScope::Team, "scope comes from the defaults");
    assert!(own.skip_sampled);
    assert_eq!(own.max_entry_bytes, DEFAULT_CACHE_MAX_ENTRY_BYTES);
    assert_eq!(cache(1).unwrap().ttl.as_millis(), 60_000);
    assert_eq!(cache(2), None, "ttl_ms: 0 never caches");
    let by_key = cache(3).unwrap();
    assert_eq!(
        (by_key.scope, by_key.max_entry_bytes, by_key.ttl.as_millis()),
        (CacheScope::Key, 4096, 60_000)
    );
    assert_eq!(c.cache.memory_bytes, 8 * 1024 * 1024);
    assert_eq!(load("").unwrap().routes[0].policy.cache, None, "no cache unless asked");
    assert_eq!(load("").unwrap().cache.memory_bytes, DEFAULT_CACHE_MEMORY_BYTES);
    let store = load("").unwrap().cache;
    assert!(store.redis, "entries are shared through store.redis unless turned off");
    assert_eq!((store.redis_timeout, store.compress_above_bytes), (None, 1024));
    let own = load("cache: { redis: false, redis_timeout_ms: 40, compress_above_bytes: 0 }\n")
        .unwrap()
        .cache;
    assert!(!own.redis);
    assert_eq!(
        (own.redis_timeout, own.compress_above_bytes),
        (Some(std::time::Duration::from_millis(40)), 0)
    );
}

#[test]
fn a_semantic_policy_merges_with_the_defaults_and_is_bounded() {
    let c = load(
        "defaults:\n  cache: { ttl_ms: 1000, semantic: { threshold: 0.9, min_chars: 20 } }\nroutes:\n  - name: own\n    cache: { semantic: { max_wait_ms: 5, verify: false } }\n  - name: plain\n    cache: { ttl_ms: 1000 }\nembedder: { path: /m, threads: 2 }\n",
    )
    .unwrap();
    let own = c.routes[0].policy.cache.as_ref().unwrap().semantic.clone().unwrap();
    assert_eq!(own.threshold, 0.9);
    assert_eq!((own.min_chars, own.max_wait.as_millis(), own.verify), (20, 5, false));
    assert_eq!(own.embedder, EmbedderChoice::MiniLm);
    // A route's own `cache` merges field by field: the defaults' semantic block still applies.
    assert!(c.routes[1].policy.cache.as_ref().unwrap().semantic.is_some());
    assert_eq!(
        (c.embedder.path.to_str(), c.embedder.threads, c.embedder.queue),
        (Some("/m"), 2, 64)
    );
    let none = load("routes:\n  - name: r\n    cache: { ttl_ms: 1000 }\n").unwrap();
    assert_eq!(
        none.routes[0].policy.cache.as_ref().unwrap().semantic,
        None,
        "semantic is opt-in"
    );
    check_errors(
        "routes:\n  - name: r\n    cache:\n      ttl_ms: 1000\n      semantic:\n        threshold: 0.2\n        embedder: word2vec\n        max_wait_ms: 0\nembedder: { threads: 0 }\n",
        &[
            (6, "routes[0].cache.semantic.threshold"),
            (7, "routes[0].cache.semantic.embedder"),
            (8, "routes[0].cache.semantic.max_wait_ms"),
            (9, "embedder.threads"),
        ],
    );
    // An embedding deployment behind a model alias.
    let remote = load(
        "deployments:\n  - { name: e, provider: openai, base_url: \"http://127.0.0.1:9/v1\", model: text-embedding-3-small }\nmodels:\n  - { name: vectors, deployments: [e] }\nroutes:\n  - name: r\n    cache: { ttl_ms: 1000, semantic: { embedder: vectors } }\n",
    )
    .unwrap();
    assert_eq!(
        remote.routes[0]
            .policy
            .cache
            .as_ref()
            .unwrap()
            .semantic
            .as_ref()
            .unwrap()
            .embedder,
        EmbedderChoice::Model("vectors".into())
    );
}

#[test]
fn bad_cache_settings_are_refused_with_their_lines() {
    check_errors(
        "routes:\n  - name: r\n    cache:\n      scope: everyone\n      ttl_ms: 99999999999\ncache: { memory_bytes: 10 }\n",
        &[
            (4, "routes[0].cache.scope"),
            (5, "routes[0].cache.ttl_ms"),
            (6, "cache.memory_bytes"),
        ],
    );
    check_errors(
        "cache:\n  redis_timeout_ms: 0\n  compress_above_bytes: 99999999999\n",
        &[(2, "cache.redis_timeout_ms"), (3, "cache.compress_above_bytes")],
    );
}

#[test]
fn bad_breaker_and_geo_settings_are_refused_not_replaced_by_defaults() {
    // They were validated after the errors were looked at: a bad value served the default.
    check_errors(
        "breaker: { consecutive_failures: 0 }\n",
        &[(1, "breaker.consecutive_failures")],
    );
    check_errors("geo: { header: \"not a header\" }\n", &[(1, "geo.header")]);
}

#[test]
fn a_cache_only_degradation_step_needs_the_routes_cache() {
    check_errors(
        "routes:\n  - name: r\n    queue: { max_concurrency: 1 }\n    degrade: [{ when_queued: 1, cache_only: true }]\n",
        &[(4, "routes[0].degrade[0].cache_only")],
    );
    let c = load("routes:\n  - name: r\n    cache: { ttl_ms: 1000 }\n    queue: { max_concurrency: 1 }\n    degrade: [{ when_queued: 1, cache_only: true }]\n").unwrap();
    assert!(c.routes[0].degrade[0].cache_only);
}

#[test]
fn an_admin_listener_beyond_loopback_needs_a_token() {
    check_errors("admin:\n  listen: 0.0.0.0:9090\n", &[(2, "admin.listen")]);
    check_errors("admin:\n  listen: \"[::]:9090\"\n", &[(2, "admin.listen")]);
    let c = load("admin:\n  listen: 0.0.0.0:9090\n  token_env: SET_VAR\n").unwrap();
    assert_eq!(c.admin.listen.to_string(), "0.0.0.0:9090");
    assert!(
        load("admin:\n  listen: \"[::1]:9090\"\n").is_ok(),
        "loopback needs none"
    );
}

mod operations;
