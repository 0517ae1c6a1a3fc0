//! Route: the first route whose every condition holds, top-down; then the model alias it serves
//! and the caller's right to use both.

use http::HeaderMap;
use sluice_config::{Pattern, RouteMatch};

use crate::error::{ErrorKind, GatewayError};
use crate::flow::Decision;
use crate::keys::Caller;
use crate::state::Snapshot;

/// What a route can be matched on.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub path: &'a str,
    pub model: &'a str,
    pub caller: &'a Caller,
    pub headers: &'a HeaderMap,
    pub metadata: &'a [(String, String)],
}

fn any(patterns: &[Pattern], value: Option<&str>) -> bool {
    patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
}

pub fn matches(m: &RouteMatch, input: &RouteInput<'_>) -> bool {
    let c = input.caller;
    any(&m.paths, Some(input.path))
        && any(&m.models, Some(input.model))
        && any(&m.keys, Some(&c.key_id))
        && any(&m.tenants, c.tenant.as_deref())
        && any(&m.teams, c.team.as_deref())
        && any(&m.tiers, c.tier.as_deref())
        && m.headers.iter().all(|(name, p)| {
            input
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| p.matches(v))
        })
        && m.metadata
            .iter()
            .all(|(k, p)| input.metadata.iter().any(|(mk, mv)| mk == k && p.matches(mv)))
}

pub fn decide<'s>(snap: &'s Snapshot, input: &RouteInput<'_>) -> Result<Decision<'s>, GatewayError> {
    let route = snap
        .routes
        .iter()
        .find(|r| matches(&r.config.matcher, input))
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NotFound,
                "no_route",
                format!("No route serves {} for this caller.", input.path),
            )
        })?;
    if !input.caller.may_use_route(&route.name) {
        return Err(GatewayError::new(
            ErrorKind::Forbidden,
            "route_not_allowed",
            format!("This API key may not use route '{}'.", route.name),
        ));
    }
    let (model_index, model) = match route.config.model {
        Some(i) => (i, &snap.models[i]),
        None => snap.model(input.model).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::NotFound,
                "model_not_found",
                format!(
                    "The model '{}' does not exist or you do not have access to it.",
                    input.model
                ),
            )
            .with_param("model")
        })?,
    };
    let route_allows = route
        .config
        .allowed_models
        .as_ref()
        .is_none_or(|a| a.contains(&model_index));
    if !route_allows || !input.caller.may_use_model(&model.name) {
        return Err(GatewayError::new(
            ErrorKind::Forbidden,
            "model_not_allowed",
            format!("This API key may not use the model '{}' on this route.", model.name),
        )
        .with_param("model"));
    }
    Ok(Decision {
        route,
        model_index,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::keys::KeySource;
    use crate::state::LiveState;

    fn caller(team: Option<&str>, models: Option<Vec<&str>>) -> Caller {
        Caller {
            key_id: Arc::from("k"),
            source: KeySource::Yaml,
            tenant: None,
            team: team.map(Arc::from),
            user: None,
            tier: None,
            models: models.map(|m| m.into_iter().map(Pattern::parse).collect()),
            routes: None,
            expires_at: None,
            limits: std::sync::Arc::from([]),
            user_limits: std::sync::Arc::from([]),
            trust_user: false,
            priority_header: false,
        }
    }

    async fn snapshot() -> Snapshot {
        let yaml = r#"
deployments:
  - { name: d, provider: openai, base_url: "http://127.0.0.1:1/v1", model: up }
models:
  - { name: small, deployments: [d] }
  - { name: large, deployments: [d] }
routes:
  - name: billing
    match: { teams: [billing] }
    model: large
  - name: summarize
    match: { headers: { x-task: summarize }, paths: ["/v1/chat/completions"] }
    allowed_models: [small]
  - name: meta
    match: { metadata: { task: translate } }
  - name: rest
"#;
        let config = sluice_config::load_str(yaml, &|_| None).unwrap();
        LiveState::new().build(config).await.unwrap()
    }

    fn check(
        snap: &Snapshot,
        c: &Caller,
        model: &str,
        headers: &[(&str, &str)],
        meta: &[(&str, &str)],
        want: Result<(&str, &str), &str>,
    ) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let metadata: Vec<(String, String)> = meta.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let input = RouteInput {
            path: "/v1/chat/completions",
            model,
            caller: c,
            headers: &h,
            metadata: &metadata,
        };
        let got = decide(snap, &input)
            .map(|d| (&*d.route.name, &*d.model.name))
            .map_err(|e| e.code);
        assert_eq!(got, want, "model {model} headers {headers:?}");
    }

    #[tokio::test]
    async fn first_match_wins_and_permissions_hold() {
        let s = snapshot().await;
        let anyone = caller(None, None);
        check(
            &s,
            &caller(Some("billing"), None),
            "small",
            &[],
            &[],
            Ok(("billing", "large")),
        );
        check(
            &s,
            &anyone,
            "small",
            &[("x-task", "summarize")],
            &[],
            Ok(("summarize", "small")),
        );
        check(
            &s,
            &anyone,
            "large",
            &[("x-task", "summarize")],
            &[],
            Err("model_not_allowed"),
        );
        check(
            &s,
            &anyone,
            "large",
            &[],
            &[("task", "translate")],
            Ok(("meta", "large")),
        );
        check(&s, &anyone, "large", &[], &[], Ok(("rest", "large")));
        check(&s, &anyone, "nope", &[], &[], Err("model_not_found"));
        check(
            &s,
            &caller(None, Some(vec!["small"])),
            "large",
            &[],
            &[],
            Err("model_not_allowed"),
        );
    }
}
