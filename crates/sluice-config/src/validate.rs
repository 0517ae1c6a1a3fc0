//! Raw → typed. Collects every error (with its path and line) instead of stopping at the first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};

use crate::raw::{RawConfig, RawDeployment, RawPolicy, RawRoute, S};
use crate::types::*;
use crate::{ConfigError, ConfigErrors};

/// Built-in route policy defaults, suited to 200 ms–30 s inference and minutes-long streams.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_TOTAL_TIMEOUT_MS: u64 = 600_000;
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Looks up environment variables; injectable so tests do not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Collector(pub(crate) Vec<ConfigError>);

impl Collector {
    pub(crate) fn push<T>(&mut self, path: impl Into<String>, at: Option<&S<T>>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            line: at.map(|s| s.referenced.line()),
            message: message.into(),
        });
    }
}

pub fn validate(raw: RawConfig, env: EnvLookup<'_>, version: String) -> Result<Config, ConfigErrors> {
    let mut errs = Collector(Vec::new());

    let server = server(&raw, &mut errs);
    let admin = admin(&raw, env, &mut errs);
    let store = crate::store::store(&raw, env, &mut errs);
    let ledger = crate::store::ledger(&raw, &store, &mut errs);
    let logging = logging(&raw, &mut errs);

    let mut deployments: Vec<DeploymentConfig> = raw
        .deployments
        .iter()
        .enumerate()
        .filter_map(|(i, d)| deployment(i, d, env, &mut errs))
        .collect();
    let currency = crate::spend::apply_prices(&raw, &mut deployments, &mut errs);

    unique(raw.deployments.iter().map(|d| &d.name), "deployments", &mut errs);

    let mut models = Vec::new();
    for (i, m) in raw.models.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.name.value.is_empty() {
            errs.push(format!("{path}.name"), Some(&m.name), "must not be empty");
        }
        if m.deployments.is_empty() {
            errs.push(
                format!("{path}.deployments"),
                Some(&m.name),
                "needs at least one deployment",
            );
        }
        let mut idx = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            match raw.deployments.iter().position(|x| x.name.value == d.value) {
                Some(k) => idx.push(k),
                None => errs.push(
                    format!("{path}.deployments[{j}]"),
                    Some(d),
                    format!("unknown deployment {:?}", d.value),
                ),
            }
        }
        let (balance, weights) = crate::resilience::balance(m, &path, &mut errs);
        models.push(ModelConfig {
            balance,
            weights,
            name: m.name.value.clone(),
            deployments: idx,
            limits: crate::spend::limits(&m.limits, &format!("{path}.limits"), Some(&m.name), &mut errs),
        });
    }
    unique(raw.models.iter().map(|m| &m.name), "models", &mut errs);

    let model_names: Vec<&str> = raw.models.iter().map(|m| m.name.value.as_str()).collect();
    let route_names: Vec<&str> = raw.routes.iter().map(|r| r.name.value.as_str()).collect();
    let defaults = policy(
        &RawPolicy::default(),
        &raw.defaults,
        "defaults",
        server.max_body_bytes,
        &mut errs,
    );

    let mut routes: Vec<RouteConfig> = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(i, r, &raw.defaults, &model_names, server.max_body_bytes, &mut errs))
        .collect();
    unique(raw.routes.iter().map(|r| &r.name), "routes", &mut errs);
    if routes.is_empty() {
        routes.push(RouteConfig {
            name: "default".to_owned(),
            matcher: RouteMatch::default(),
            model: None,
            allowed_models: None,
            policy: defaults,
            prediction: None,
            limits: Vec::new(),
            fallback: FallbackConfig::default(),
            queue: None,
            degrade: Vec::new(),
            debug_rewrite: None,
        });
    }

    let crate::spend::LimitSections {
        tiers,
        tier_priorities,
        tenant_weights,
        teams,
        tenants,
        time_zone_offset_s,
        budget_alerts,
    } = crate::spend::limit_sections(&raw, env, &mut errs);

    let keys: Vec<KeyConfig> = raw
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| crate::keys::key(i, k, &model_names, &route_names, &tiers, &mut errs))
        .collect();
    unique(raw.keys.iter().map(|k| &k.id), "keys", &mut errs);
    let mut hashes = HashSet::new();
    for (i, k) in keys.iter().enumerate() {
        if !hashes.insert(k.hash) {
            errs.push::<()>(format!("keys[{i}].hash"), None, "the same key hash appears twice");
        }
    }

    if errs.0.is_empty() {
        Ok(Config {
            server,
            admin,
            store,
            logging,
            deployments,
            models,
            routes,
            keys,
            currency,
            tiers,
            tier_priorities,
            tenant_weights,
            teams,
            tenants,
            time_zone_offset_s,
            budget_alerts,
            ledger,
            breaker: crate::resilience::breaker(&raw.breaker, &mut errs),
            geo: crate::resilience::geo(raw.geo.as_ref(), &mut errs),
            version,
        })
    } else {
        errs.0.sort_by_key(|e| e.line.unwrap_or(u64::MAX));
        Err(ConfigErrors(errs.0))
    }
}

fn unique<'a>(names: impl Iterator<Item = &'a S<String>>, section: &str, errs: &mut Collector) {
    let mut seen = HashSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n.value.as_str()) {
            errs.push(
                format!("{section}[{i}]"),
                Some(n),
                format!("duplicate name {:?}", n.value),
            );
        }
    }
}

fn addr(value: Option<&S<String>>, default: &str, path: &str, errs: &mut Collector) -> SocketAddr {
    let fallback: SocketAddr = ([127, 0, 0, 1], 0).into();
    match value {
        None => default.parse().unwrap_or(fallback),
        Some(s) => s.value.parse().unwrap_or_else(|_| {
            errs.push(
                path,
                Some(s),
                format!("{:?} is not a socket address like 127.0.0.1:8080", s.value),
            );
            fallback
        }),
    }
}

fn positive(value: Option<&S<u64>>, default: u64, path: &str, errs: &mut Collector) -> u64 {
    match value {
        None => default,
        Some(s) if s.value == 0 => {
            errs.push(path, Some(s), "must be greater than zero");
            default
        }
        Some(s) => s.value,
    }
}

fn ranged(value: Option<&S<u64>>, default: u64, min: u64, max: u64, path: &str, errs: &mut Collector) -> u64 {
    match value {
        None => default,
        Some(s) if s.value < min || s.value > max => {
            errs.push(path, Some(s), format!("must be between {min} and {max}"));
            default
        }
        Some(s) => s.value,
    }
}

fn server(raw: &RawConfig, errs: &mut Collector) -> ServerConfig {
    let s = &raw.server;
    let ms = |v: Option<&S<u64>>, d: u64, p: &str, e: &mut Collector| Duration::from_millis(positive(v, d, p, e));
    ServerConfig {
        listen: addr(s.listen.as_ref(), "127.0.0.1:8080", "server.listen", errs),
        tls: s.tls.as_ref().map(|t| TlsConfig {
            cert_file: PathBuf::from(&t.cert_file.value),
            key_file: PathBuf::from(&t.key_file.value),
        }),
        header_read_timeout: ms(
            s.header_read_timeout_ms.as_ref(),
            30_000,
            "server.header_read_timeout_ms",
            errs,
        ),
        idle_timeout: ms(s.idle_timeout_ms.as_ref(), 60_000, "server.idle_timeout_ms", errs),
        max_headers: ranged(s.max_headers.as_ref(), 100, 8, 1_000, "server.max_headers", errs) as usize,
        max_header_bytes: ranged(
            s.max_header_bytes.as_ref(),
            16_384,
            8_192,
            1_048_576,
            "server.max_header_bytes",
            errs,
        ) as usize,
        h2_max_concurrent_streams: ranged(
            s.h2_max_concurrent_streams.as_ref(),
            256,
            1,
            u32::MAX as u64,
            "server.h2_max_concurrent_streams",
            errs,
        ) as u32,
        max_body_bytes: positive(
            s.max_body_bytes.as_ref(),
            DEFAULT_MAX_BODY_BYTES,
            "server.max_body_bytes",
            errs,
        ),
        body_read_timeout: ms(
            s.body_read_timeout_ms.as_ref(),
            60_000,
            "server.body_read_timeout_ms",
            errs,
        ),
        drain_timeout: ms(s.drain_timeout_ms.as_ref(), 30_000, "server.drain_timeout_ms", errs),
        reuse_port: s.reuse_port.unwrap_or(true),
    }
}

pub(crate) fn env_secret(name: &S<String>, path: &str, env: EnvLookup<'_>, errs: &mut Collector) -> Option<Secret> {
    match env(&name.value) {
        Some(v) if !v.is_empty() => Some(Secret::new(v)),
        _ => {
            errs.push(
                path,
                Some(name),
                format!("environment variable {} is not set", name.value),
            );
            None
        }
    }
}

fn admin(raw: &RawConfig, env: EnvLookup<'_>, errs: &mut Collector) -> AdminConfig {
    AdminConfig {
        listen: addr(raw.admin.listen.as_ref(), "127.0.0.1:9090", "admin.listen", errs),
        token: raw
            .admin
            .token_env
            .as_ref()
            .and_then(|n| env_secret(n, "admin.token_env", env, errs)),
    }
}

fn logging(raw: &RawConfig, errs: &mut Collector) -> LoggingConfig {
    let access_log = match raw.logging.access_log.as_ref() {
        None => AccessLogTarget::Stdout,
        Some(s) => match s.value.as_str() {
            "stdout" => AccessLogTarget::Stdout,
            "stderr" => AccessLogTarget::Stderr,
            "off" => AccessLogTarget::Off,
            "" => {
                errs.push("logging.access_log", Some(s), "use stdout, stderr, off or a file path");
                AccessLogTarget::Off
            }
            path => AccessLogTarget::File(PathBuf::from(path)),
        },
    };
    LoggingConfig {
        access_log,
        access_log_queue: ranged(
            raw.logging.access_log_queue.as_ref(),
            65_536,
            16,
            16_777_216,
            "logging.access_log_queue",
            errs,
        ) as usize,
    }
}

fn deployment(i: usize, d: &RawDeployment, env: EnvLookup<'_>, errs: &mut Collector) -> Option<DeploymentConfig> {
    let path = format!("deployments[{i}]");
    if d.name.value.is_empty() {
        errs.push(format!("{path}.name"), Some(&d.name), "must not be empty");
    }
    let provider = match d.provider.value.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "azure" => ProviderKind::Azure,
        "gemini" => ProviderKind::Gemini,
        "bedrock" => ProviderKind::Bedrock,
        "prediction" => ProviderKind::Prediction,
        "mock" => ProviderKind::Mock,
        other => {
            errs.push(
                format!("{path}.provider"),
                Some(&d.provider),
                format!(
                    "unknown provider {other:?} (supported: openai, anthropic, azure, gemini, bedrock, prediction, mock; vLLM, Ollama and TGI use openai)"
                ),
            );
            return None;
        }
    };
    let region = match (&d.region, provider) {
        (Some(r), ProviderKind::Bedrock) => Some(r.value.clone()),
        (None, ProviderKind::Bedrock) => match env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
            Some(r) => Some(r),
            None => {
                errs.push(
                    format!("{path}.region"),
                    Some(&d.name),
                    "is required for provider: bedrock (or set AWS_REGION)",
                );
                None
            }
        },
        (Some(r), _) => {
            errs.push(format!("{path}.region"), Some(r), "applies only to provider: bedrock");
            None
        }
        (None, _) => None,
    };
    let base_url = match (&d.base_url, provider) {
        (None, ProviderKind::Mock) => None,
        // An embedded mock speaking this provider's format, for offline demos and tests.
        (None, ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Azure) if d.mock.is_some() => None,
        (None, ProviderKind::Bedrock) => region
            .as_ref()
            .and_then(|r| format!("https://bedrock-runtime.{r}.amazonaws.com").parse::<Uri>().ok()),
        (None, _) => {
            errs.push(
                format!("{path}.base_url"),
                Some(&d.name),
                "is required for this provider",
            );
            None
        }
        (Some(u), _) => match u.value.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.query().is_none()
                    && !uri.authority().is_some_and(|a| a.as_str().contains('@')) =>
            {
                Some(uri)
            }
            _ => {
                errs.push(
                    format!("{path}.base_url"),
                    Some(u),
                    format!(
                        "{:?} is not an http(s) URL like https://host/v1 (no query, no credentials)",
                        u.value
                    ),
                );
                None
            }
        },
    };
    let upstream_model = match (&d.model, provider) {
        (Some(m), _) if !m.value.is_empty() => m.value.clone(),
        (_, ProviderKind::Mock | ProviderKind::Prediction) => d.name.value.clone(),
        (m, _) => {
            errs.push(
                format!("{path}.model"),
                m.as_ref().or(Some(&d.name)),
                "the upstream model name is required",
            );
            String::new()
        }
    };
    let api_key = d
        .api_key_env
        .as_ref()
        .and_then(|n| env_secret(n, &format!("{path}.api_key_env"), env, errs));
    let embedded_ok = provider == ProviderKind::Mock
        || (d.base_url.is_none()
            && matches!(
                provider,
                ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Azure
            ));
    if d.mock.is_some() && !embedded_ok {
        errs.push(
            format!("{path}.mock"),
            Some(&d.provider),
            "mock knobs apply only to provider: mock (or an anthropic, gemini or azure deployment without a base_url, which then runs the built-in mock in that format)",
        );
    }
    let mock = d.mock.as_ref().map_or_else(MockKnobs::default, |m| MockKnobs {
        latency_ms: m.latency_ms,
        ttft_ms: m.ttft_ms,
        chunk_delay_ms: m.chunk_delay_ms,
        chunks: m.chunks,
    });
    let api_version = match (&d.api_version, provider) {
        (Some(v), ProviderKind::Azure) => Some(v.value.clone()),
        (None, ProviderKind::Azure) => Some(DEFAULT_AZURE_API_VERSION.to_owned()),
        (Some(v), _) => {
            errs.push(
                format!("{path}.api_version"),
                Some(v),
                "applies only to provider: azure",
            );
            None
        }
        (None, _) => None,
    };
    let aws = match (provider, &region) {
        (ProviderKind::Bedrock, Some(region)) => {
            let id = env("AWS_ACCESS_KEY_ID");
            let secret = env("AWS_SECRET_ACCESS_KEY");
            match (id, secret) {
                (Some(access_key_id), Some(secret)) => Some(AwsCredentials {
                    access_key_id,
                    secret_access_key: Secret::new(secret),
                    session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
                    region: region.clone(),
                }),
                _ => {
                    errs.push(
                        format!("{path}.provider"),
                        Some(&d.provider),
                        "bedrock needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let price = d
        .price
        .as_ref()
        .and_then(|p| crate::spend::price(p, &format!("{path}.price"), Some(&d.name), errs));
    Some(DeploymentConfig {
        name: d.name.value.clone(),
        geo: d.geo.as_ref().map(|g| g.value.clone()),
        metrics: crate::resilience::scrape(d, &format!("deployments[{i}]"), errs),
        health_check: crate::resilience::health_check(d, &format!("deployments[{i}]"), errs),
        max_concurrency: d.max_concurrency.as_ref().map(|_| {
            ranged(
                d.max_concurrency.as_ref(),
                1,
                1,
                1_000_000,
                &format!("deployments[{i}].max_concurrency"),
                errs,
            ) as u32
        }),
        load_header: d
            .load_header
            .as_ref()
            .and_then(|h| match HeaderName::from_bytes(h.value.as_bytes()) {
                Ok(name) => Some(name),
                Err(_) => {
                    errs.push(format!("deployments[{i}].load_header"), Some(h), "not a header name");
                    None
                }
            }),
        forward_trace: d
            .forward_trace
            .as_ref()
            .map_or_else(|| crate::types::is_self_hosted(base_url.as_ref()), |v| v.value),
        provider,
        base_url,
        upstream_model,
        api_key,
        http2_prior_knowledge: d.http2_prior_knowledge,
        mock,
        api_version,
        price,
        aws,
    })
}

/// Azure OpenAI's `api-version` when the deployment does not name one.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// Resolves one policy: the route's own value, else `defaults`, else the built-in default.
fn policy(
    own: &RawPolicy,
    defaults: &RawPolicy,
    path: &str,
    server_max_body: u64,
    errs: &mut Collector,
) -> RoutePolicy {
    let pick = |a: &Option<S<u64>>, b: &Option<S<u64>>| a.clone().or_else(|| b.clone());
    let ms = |v: Option<S<u64>>, d: u64, name: &str, e: &mut Collector| {
        Duration::from_millis(positive(v.as_ref(), d, &format!("{path}.{name}"), e))
    };
    let max_body = positive(
        pick(&own.max_body_bytes, &defaults.max_body_bytes).as_ref(),
        server_max_body,
        &format!("{path}.max_body_bytes"),
        errs,
    );
    if max_body > server_max_body {
        let at = pick(&own.max_body_bytes, &defaults.max_body_bytes);
        errs.push(
            format!("{path}.max_body_bytes"),
            at.as_ref(),
            format!("must not exceed server.max_body_bytes ({server_max_body})"),
        );
    }
    RoutePolicy {
        connect_timeout: ms(
            pick(&own.connect_timeout_ms, &defaults.connect_timeout_ms),
            DEFAULT_CONNECT_TIMEOUT_MS,
            "connect_timeout_ms",
            errs,
        ),
        first_byte_timeout: ms(
            pick(&own.first_byte_timeout_ms, &defaults.first_byte_timeout_ms),
            DEFAULT_FIRST_BYTE_TIMEOUT_MS,
            "first_byte_timeout_ms",
            errs,
        ),
        total_timeout: ms(
            pick(&own.total_timeout_ms, &defaults.total_timeout_ms),
            DEFAULT_TOTAL_TIMEOUT_MS,
            "total_timeout_ms",
            errs,
        ),
        stream_idle_timeout: ms(
            pick(&own.stream_idle_timeout_ms, &defaults.stream_idle_timeout_ms),
            DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            "stream_idle_timeout_ms",
            errs,
        ),
        max_body_bytes: max_body,
        max_attempts: ranged(
            pick(&own.max_attempts, &defaults.max_attempts).as_ref(),
            1,
            1,
            10,
            &format!("{path}.max_attempts"),
            errs,
        ) as u32,
        drop_unsupported: match own.unsupported_params.as_ref().or(defaults.unsupported_params.as_ref()) {
            None => false,
            Some(v) if v.value == "reject" => false,
            Some(v) if v.value == "drop" => true,
            Some(v) => {
                errs.push(
                    format!("{path}.unsupported_params"),
                    Some(v),
                    format!("{:?} is not one of reject, drop", v.value),
                );
                false
            }
        },
        forward_params: own
            .forward_params
            .clone()
            .or_else(|| defaults.forward_params.clone())
            .unwrap_or_default(),
        retry: crate::resilience::retry(own.retry.as_ref(), defaults.retry.as_ref(), path, errs),
        server_timing: own
            .server_timing
            .as_ref()
            .or(defaults.server_timing.as_ref())
            .is_some_and(|v| v.value),
    }
}

pub(crate) fn resolve_models(list: &[S<String>], names: &[&str], path: &str, errs: &mut Collector) -> Vec<usize> {
    let mut out = Vec::new();
    for (j, m) in list.iter().enumerate() {
        match names.iter().position(|n| *n == m.value) {
            Some(k) => out.push(k),
            None => errs.push(
                format!("{path}[{j}]"),
                Some(m),
                format!("unknown model alias {:?}", m.value),
            ),
        }
    }
    out
}

fn patterns(list: &[String]) -> Vec<Pattern> {
    list.iter().map(|s| Pattern::parse(s)).collect()
}

fn route(
    i: usize,
    r: &RawRoute,
    defaults: &RawPolicy,
    model_names: &[&str],
    server_max_body: u64,
    errs: &mut Collector,
) -> RouteConfig {
    let path = format!("routes[{i}]");
    if r.name.value.is_empty() {
        errs.push(format!("{path}.name"), Some(&r.name), "must not be empty");
    }
    let m = &r.matcher;
    for (j, p) in m.paths.iter().enumerate() {
        if !p.value.starts_with('/') {
            errs.push(format!("{path}.match.paths[{j}]"), Some(p), "a path starts with /");
        }
    }
    for (j, p) in m.models.iter().enumerate() {
        if let Pattern::Exact(name) = Pattern::parse(&p.value)
            && !model_names.contains(&name.as_str())
        {
            errs.push(
                format!("{path}.match.models[{j}]"),
                Some(p),
                format!("unknown model alias {name:?}"),
            );
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) => headers.push((h, Pattern::parse(value))),
            Err(_) => errs.push(
                format!("{path}.match.headers.{name}"),
                Some(&r.name),
                "not a valid header name",
            ),
        }
    }
    let model = r.model.as_ref().and_then(|m| {
        let found = model_names.iter().position(|n| *n == m.value);
        if found.is_none() {
            errs.push(
                format!("{path}.model"),
                Some(m),
                format!("unknown model alias {:?}", m.value),
            );
        }
        found
    });
    let allowed_models = r
        .allowed_models
        .as_ref()
        .map(|list| resolve_models(list, model_names, &format!("{path}.allowed_models"), errs));
    let prediction = r.prediction.as_ref().map(|p| {
        if model.is_none() {
            errs.push(
                format!("{path}.model"),
                Some(p),
                "a prediction route names the model alias it serves",
            );
        }
        let mut compile = |name: &str, schema: &Option<serde_json::Value>| {
            let schema = schema.as_ref()?;
            match jsonschema::validator_for(schema) {
                Ok(v) => Some(std::sync::Arc::new(v)),
                Err(e) => {
                    errs.push(
                        format!("{path}.prediction.{name}"),
                        Some(p),
                        format!("not a valid JSON Schema: {e}"),
                    );
                    None
                }
            }
        };
        PredictionConfig {
            request_schema: compile("request_schema", &p.value.request_schema),
            response_schema: compile("response_schema", &p.value.response_schema),
            request_transform: p.value.request_transform.clone(),
            response_transform: p.value.response_transform.clone(),
        }
    });
    RouteConfig {
        name: r.name.value.clone(),
        matcher: RouteMatch {
            paths: m.paths.iter().map(|p| Pattern::parse(&p.value)).collect(),
            models: m.models.iter().map(|p| Pattern::parse(&p.value)).collect(),
            keys: patterns(&m.keys),
            tenants: patterns(&m.tenants),
            teams: patterns(&m.teams),
            tiers: patterns(&m.tiers),
            headers,
            metadata: m.metadata.iter().map(|(k, v)| (k.clone(), Pattern::parse(v))).collect(),
        },
        model,
        allowed_models,
        policy: policy(&r.policy(), defaults, &path, server_max_body, errs),
        prediction,
        limits: crate::spend::limits(&r.limits, &format!("{path}.limits"), Some(&r.name), errs),
        fallback: crate::resilience::fallback(r, model_names, &path, errs),
        queue: crate::resilience::queue(r, &path, errs),
        degrade: crate::resilience::degrade(r, model_names, &path, errs),
        debug_rewrite: r.debug_rewrite.as_ref().and_then(|d| debug_rewrite(d, &path, errs)),
    }
}

/// The most a response stage may hold back (characters).
const MAX_HOLD_CHARS: u64 = 65_536;

fn debug_rewrite(d: &S<crate::raw::RawDebugRewrite>, path: &str, errs: &mut Collector) -> Option<DebugRewriteConfig> {
    let v = &d.value;
    let from = v.replace.from.chars().count() as u64;
    let problem = if from == 0 {
        Some("replace.from must not be empty".to_owned())
    } else if v.hold_chars < from {
        Some(format!(
            "hold_chars must be at least the length of replace.from ({from})"
        ))
    } else if v.hold_chars > MAX_HOLD_CHARS {
        Some(format!("hold_chars must be at most {MAX_HOLD_CHARS}"))
    } else {
        None
    };
    if let Some(p) = problem {
        errs.push(format!("{path}.debug_rewrite"), Some(d), p);
        return None;
    }
    Some(DebugRewriteConfig {
        hold_chars: v.hold_chars as usize,
        from: v.replace.from.clone(),
        to: v.replace.to.clone(),
    })
}
