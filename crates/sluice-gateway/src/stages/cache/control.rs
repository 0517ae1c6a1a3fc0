//! What the client may ask of the cache, bounded by the route: `cache-control: no-cache` /
//! `no-store`, `x-sluice-cache-ttl-ms` (shorter only), and the request headers that change an
//! answer.

use std::time::Duration;

use http::HeaderMap;
use sluice_providers::names;

/// The client's cache controls, bounded by the route's TTL.
pub(super) struct Control {
    pub no_cache: bool,
    pub no_store: bool,
    pub ttl: Duration,
}

impl Control {
    pub(super) fn read(headers: &HeaderMap, route_ttl: Duration) -> Control {
        let mut c = Control {
            no_cache: false,
            no_store: false,
            ttl: route_ttl,
        };
        for v in headers.get_all(http::header::CACHE_CONTROL) {
            for directive in v.to_str().unwrap_or("").split(',').map(str::trim) {
                c.no_cache |= directive.eq_ignore_ascii_case("no-cache");
                c.no_store |= directive.eq_ignore_ascii_case("no-store");
            }
        }
        if let Some(ms) = headers
            .get(names::X_SLUICE_CACHE_TTL_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            c.ttl = c.ttl.min(Duration::from_millis(ms));
        }
        c
    }
}

/// Request headers that change the answer, in a fixed order. (`anthropic-version` names the
/// wire format's version, which the replay is written in anyway: it does not split entries.)
pub(super) fn answer_headers(headers: &HeaderMap) -> Vec<(&'static str, &str)> {
    [(names::ANTHROPIC_BETA, "anthropic-beta")]
        .into_iter()
        .filter_map(|(h, name)| Some((name, headers.get(h)?.to_str().ok()?)))
        .collect()
}
