//! The process sections: `server` (listener, TLS, connection limits and timeouts), `admin` and
//! `logging` and `telemetry`.

use std::path::PathBuf;
use std::time::Duration;

use crate::collect::{Collector, EnvLookup, addr, env_secret, positive, ranged};
use crate::policy::DEFAULT_MAX_BODY_BYTES;
use crate::raw::{RawConfig, S};
use crate::types::*;

pub(crate) fn server(raw: &RawConfig, errs: &mut Collector) -> ServerConfig {
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

pub(crate) fn admin(raw: &RawConfig, env: EnvLookup<'_>, errs: &mut Collector) -> AdminConfig {
    let listen = addr(raw.admin.listen.as_ref(), "127.0.0.1:9090", "admin.listen", errs);
    // The admin API manages keys and limits: reachable beyond this machine only with a token.
    if !listen.ip().is_loopback() && raw.admin.token_env.is_none() {
        errs.push(
            "admin.listen",
            raw.admin.listen.as_ref(),
            format!(
                "the admin listener on {listen} is reachable beyond this machine, so it needs authentication: set admin.token_env (or listen on 127.0.0.1)"
            ),
        );
    }
    let console = &raw.admin.console;
    AdminConfig {
        listen,
        console: ConsoleConfig {
            enabled: console.enabled.unwrap_or(true),
            session: Duration::from_secs(
                60 * ranged(
                    console.session_minutes.as_ref(),
                    480,
                    5,
                    43_200,
                    "admin.console.session_minutes",
                    errs,
                ),
            ),
            sign_in_attempts: ranged(
                console.sign_in_attempts.as_ref(),
                5,
                1,
                1_000,
                "admin.console.sign_in_attempts",
                errs,
            ) as u32,
            secure_cookie: console.secure_cookie.unwrap_or(false),
        },
        audit_retention: raw
            .admin
            .audit_retention_days
            .as_ref()
            .map(|d| Duration::from_secs(86_400 * ranged(Some(d), 365, 1, 36_500, "admin.audit_retention_days", errs))),
        token: raw
            .admin
            .token_env
            .as_ref()
            .and_then(|n| env_secret(n, "admin.token_env", env, errs)),
    }
}

pub(crate) fn logging(raw: &RawConfig, errs: &mut Collector) -> LoggingConfig {
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

pub(crate) fn telemetry(raw: &RawConfig, env: EnvLookup<'_>, errs: &mut Collector) -> TelemetryConfig {
    let Some(o) = raw.telemetry.otlp.as_ref() else {
        return TelemetryConfig::default();
    };
    let endpoint = match o.endpoint.value.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => traces_url(u),
        _ => {
            errs.push(
                "telemetry.otlp.endpoint",
                Some(&o.endpoint),
                "not an http(s) URL (an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318)",
            );
            return TelemetryConfig::default();
        }
    };
    let headers = o
        .headers_env
        .as_ref()
        .and_then(|n| env_secret(n, "telemetry.otlp.headers_env", env, errs))
        .map_or_else(Vec::new, |v| match otlp_headers(v.expose()) {
            Ok(h) => h,
            Err(why) => {
                errs.push("telemetry.otlp.headers_env", o.headers_env.as_ref(), why);
                Vec::new()
            }
        });
    let sample_ratio = match &o.sample_ratio {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(&r.value) => r.value,
        Some(r) => {
            errs.push("telemetry.otlp.sample_ratio", Some(r), "must be between 0 and 1");
            1.0
        }
    };
    let service_name = o.service_name.as_ref().map_or("sluice", |s| s.value.as_str());
    if service_name.is_empty() {
        errs.push(
            "telemetry.otlp.service_name",
            o.service_name.as_ref(),
            "must not be empty",
        );
    }
    TelemetryConfig {
        otlp: Some(OtlpConfig {
            endpoint,
            headers,
            sample_ratio,
            queue: ranged(o.queue.as_ref(), 2048, 16, 1_048_576, "telemetry.otlp.queue", errs) as usize,
            batch: ranged(o.batch.as_ref(), 512, 1, 65_536, "telemetry.otlp.batch", errs) as usize,
            timeout: Duration::from_millis(ranged(
                o.timeout_ms.as_ref(),
                10_000,
                100,
                120_000,
                "telemetry.otlp.timeout_ms",
                errs,
            )),
            service_name: service_name.to_owned(),
        }),
    }
}

/// A base URL gets the traces path (`/v1/traces`), as the OTLP exporters' own setting does; a
/// URL with a path is used as it is.
fn traces_url(u: http::Uri) -> http::Uri {
    if !matches!(u.path(), "" | "/") {
        return u;
    }
    let mut parts = u.into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/v1/traces"));
    http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1:4318/v1/traces"))
}

/// `name=value,name2=value2` (values may be percent-encoded, as OTel's variable allows).
fn otlp_headers(v: &str) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| "each header is name=value, separated by commas".to_owned())?;
        let name =
            http::HeaderName::try_from(name.trim()).map_err(|_| format!("{:?} is not a header name", name.trim()))?;
        let mut value = http::HeaderValue::try_from(percent_decode(value.trim()))
            .map_err(|_| format!("the value of {name} is not a header value"))?;
        value.set_sensitive(true);
        out.push((name, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
