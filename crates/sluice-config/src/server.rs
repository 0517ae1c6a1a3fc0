//! The process sections: `server` (listener, TLS, connection limits and timeouts), `admin` and
//! `logging`.

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
    AdminConfig {
        listen,
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
