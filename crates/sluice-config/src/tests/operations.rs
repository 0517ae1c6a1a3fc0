//! The operations sections: traces, payload logging, alert rules, retention.

use super::*;

#[test]
fn otlp_traces_are_validated_at_load() {
    let c = load("telemetry:\n  otlp: { endpoint: \"http://127.0.0.1:4318\" }\n").unwrap();
    let o = c.telemetry.otlp.unwrap();
    assert_eq!(
        o.endpoint, "http://127.0.0.1:4318/v1/traces",
        "a base URL gets the traces path"
    );
    assert_eq!(
        (o.sample_ratio, o.queue, o.batch, o.service_name.as_str()),
        (1.0, 2048, 512, "sluice")
    );
    let c =
        load("telemetry:\n  otlp: { endpoint: \"https://c.internal/custom/traces\", sample_ratio: 0.25 }\n").unwrap();
    let o = c.telemetry.otlp.unwrap();
    assert_eq!(o.endpoint, "https://c.internal/custom/traces", "a path is kept");
    assert_eq!(o.sample_ratio, 0.25);
    assert!(load("").unwrap().telemetry.otlp.is_none());

    let headers = |v: &str| {
        let yaml = "telemetry:\n  otlp: { endpoint: \"http://127.0.0.1:4318\", headers_env: OTLP_HEADERS }\n";
        load_str(yaml, &|n| (n == "OTLP_HEADERS").then(|| v.to_owned()))
    };
    let o = headers("authorization=Bearer%20tok, x-team = a")
        .unwrap()
        .telemetry
        .otlp
        .unwrap();
    let got: Vec<_> = o
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(got, [("authorization", "Bearer tok"), ("x-team", "a")]);
    assert!(o.headers.iter().all(|(_, v)| v.is_sensitive()));
    assert!(
        headers("no-equals-sign")
            .unwrap_err()
            .to_string()
            .contains("telemetry.otlp.headers_env")
    );

    for (otlp, path) in [
        ("{ endpoint: \"ftp://x\" }", "telemetry.otlp.endpoint"),
        (
            "{ endpoint: \"http://h:4318\", sample_ratio: 1.5 }",
            "telemetry.otlp.sample_ratio",
        ),
        (
            "{ endpoint: \"http://h:4318\", headers_env: NOT_SET_ANYWHERE }",
            "telemetry.otlp.headers_env",
        ),
        ("{ endpoint: \"http://h:4318\", queue: 1 }", "telemetry.otlp.queue"),
    ] {
        let err = load(&format!("telemetry:\n  otlp: {otlp}\n")).unwrap_err().to_string();
        assert!(err.contains(path), "{otlp}: {err}");
    }
}

#[test]
fn payload_logging_needs_redaction_unless_the_operator_allows_it() {
    let route = |extra: &str| format!("routes:\n  - name: r\n{extra}");
    let c = load(&route("    guardrails: [pii-redact]\n    log_payloads: true\n")).unwrap();
    assert_eq!(
        c.routes[0].payloads,
        Some(PayloadLogConfig {
            retention_days: 30,
            redacted: true
        })
    );
    let err = load(&route("    log_payloads: true\n")).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].log_payloads") && err.contains("redact nothing"),
        "{err}"
    );
    let c = load(&route(
        "    log_payloads: true\n    allow_unredacted: true\n    payload_retention_days: 2\n",
    ))
    .unwrap();
    assert_eq!(
        c.routes[0].payloads,
        Some(PayloadLogConfig {
            retention_days: 2,
            redacted: false
        })
    );
    let err = load(&route("    payload_retention_days: 2\n")).unwrap_err().to_string();
    assert!(err.contains("routes[0].payload_retention_days"), "{err}");
    let err = load(&format!(
        "ledger: {{ enabled: false }}\n{}",
        route("    guardrails: [pii-redact]\n    log_payloads: true\n")
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("ledger.enabled"), "{err}");
    assert!(load(&route("")).unwrap().routes[0].payloads.is_none());
}

#[test]
fn alert_rules_are_validated_at_load() {
    let hook = "budget_alerts: { url: \"http://127.0.0.1:9/hook\" }\n";
    let c = load(&format!(
        "{hook}alerts:\n  rules:\n    - {{ name: e, metric: error_rate, by: model, above: 0.05 }}\n    - {{ name: s, metric: spend_per_hour, by: tenant, above: 20, window_ms: 60000 }}\n"
    ))
    .unwrap();
    assert_eq!(c.alerts.every, std::time::Duration::from_secs(10));
    assert_eq!(c.alerts.rules[0].metric, AlertMetric::ErrorRate);
    assert_eq!(
        (c.alerts.rules[0].window.as_secs(), c.alerts.rules[0].min_requests),
        (300, 10)
    );
    assert_eq!(c.alerts.rules[1].by, AlertBy::Tenant);
    for (rules, path) in [
        (
            "- { name: e, metric: errors, by: model, above: 1 }",
            "alerts.rules[0].metric",
        ),
        (
            "- { name: e, metric: error_rate, by: route, above: 0.1 }",
            "alerts.rules[0].by",
        ),
        (
            "- { name: e, metric: error_rate, by: model, above: 1.5 }",
            "alerts.rules[0].above",
        ),
        (
            "- { name: e, metric: latency_p95_ms, by: model, above: 900, window_ms: 10 }",
            "alerts.rules[0].window_ms",
        ),
    ] {
        let err = load(&format!("{hook}alerts:\n  rules:\n    {rules}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(path), "{rules}: {err}");
    }
    let err = load("alerts:\n  rules:\n    - { name: e, metric: error_rate, by: model, above: 0.1 }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("budget_alerts.url"), "{err}");
}

#[test]
fn retention_settings_are_days_within_bounds() {
    let c = load("ledger: { retention_days: 400 }\nadmin: { audit_retention_days: 3650 }\n").unwrap();
    assert_eq!(c.ledger.retention.map(|d| d.as_secs() / 86_400), Some(400));
    assert_eq!(c.admin.audit_retention.map(|d| d.as_secs() / 86_400), Some(3650));
    let c = load("").unwrap();
    assert!(
        c.ledger.retention.is_none() && c.admin.audit_retention.is_none(),
        "kept by default"
    );
    let err = load("ledger: { retention_days: 0 }\n").unwrap_err().to_string();
    assert!(err.contains("ledger.retention_days"), "{err}");
}
