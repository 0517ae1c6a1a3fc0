//! One `deployments[]` entry: its provider, address, upstream model, credentials (API key or AWS
//! from the environment), mock knobs, price, and capacity and health settings.

use http::{HeaderName, Uri};

use crate::collect::{Collector, EnvLookup, env_secret, ranged};
use crate::raw::RawDeployment;
use crate::types::*;

pub(crate) fn deployment(
    i: usize,
    d: &RawDeployment,
    env: EnvLookup<'_>,
    errs: &mut Collector,
) -> Option<DeploymentConfig> {
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
