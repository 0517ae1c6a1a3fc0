//! What the client may ask of the cache, bounded by the route: `cache-control: no-cache` /
//! `no-store`, `x-sluice-cache-ttl-ms` (shorter only), and the request headers that change an
//! answer.

use std::time::Duration;

use http::HeaderMap;
use sluice_providers::names;

/// The client's cache controls, bounded by the route's TTL, and the request headers that change
/// the answer.
pub(super) struct Control<'h> {
    pub no_cache: bool,
    pub no_store: bool,
    pub ttl: Duration,
    /// `anthropic-beta`, as the client sent it (its first value). `anthropic-version` names the
    /// wire format's version, which the replay is written in anyway: it does not split entries.
    beta: Option<(&'static str, &'h str)>,
}

impl<'h> Control<'h> {
    /// One pass over the request's headers (cheaper than a lookup per name).
    pub(super) fn read(headers: &'h HeaderMap, route_ttl: Duration) -> Control<'h> {
        let mut c = Control {
            no_cache: false,
            no_store: false,
            ttl: route_ttl,
            beta: None,
        };
        let (mut ttl_seen, mut beta_seen) = (false, false);
        for (name, value) in headers {
            if name == http::header::CACHE_CONTROL {
                for directive in value.to_str().unwrap_or("").split(',').map(str::trim) {
                    c.no_cache |= directive.eq_ignore_ascii_case("no-cache");
                    c.no_store |= directive.eq_ignore_ascii_case("no-store");
                }
            } else if name == names::X_SLUICE_CACHE_TTL_MS && !ttl_seen {
                // The first value counts, as a lookup by name would find it.
                ttl_seen = true;
                if let Some(ms) = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                    c.ttl = c.ttl.min(Duration::from_millis(ms));
                }
            } else if name == names::ANTHROPIC_BETA && !beta_seen {
                beta_seen = true;
                c.beta = value.to_str().ok().map(|v| ("anthropic-beta", v));
            }
        }
        c
    }

    /// The request headers that change the answer, in a fixed order (for the key).
    pub(super) fn answer_headers(&self) -> &[(&'static str, &'h str)] {
        self.beta.as_slice()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, http::HeaderValue::from_static(value));
        }
        h
    }

    fn read(pairs: &[(&'static str, &'static str)]) -> (bool, bool, u128) {
        let h = headers(pairs);
        let c = Control::read(&h, Duration::from_millis(1000));
        (c.no_cache, c.no_store, c.ttl.as_millis())
    }

    #[test]
    fn the_beta_header_is_the_one_that_changes_the_answer() {
        let h = headers(&[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a"),
            ("anthropic-beta", "b"),
        ]);
        let c = Control::read(&h, Duration::from_millis(1000));
        assert_eq!(c.answer_headers(), &[("anthropic-beta", "a")]);
        let h = headers(&[("anthropic-version", "2023-06-01")]);
        assert!(
            Control::read(&h, Duration::from_millis(1000))
                .answer_headers()
                .is_empty()
        );
    }

    #[test]
    fn directives_in_any_value_count_and_a_ttl_only_shortens() {
        assert_eq!(read(&[]), (false, false, 1000));
        assert_eq!(
            read(&[("authorization", "x"), ("cache-control", "max-age=0, No-Cache")]),
            (true, false, 1000)
        );
        assert_eq!(
            read(&[("cache-control", "private"), ("cache-control", " no-store ")]),
            (false, true, 1000)
        );
        assert_eq!(read(&[("x-sluice-cache-ttl-ms", "250")]), (false, false, 250));
        assert_eq!(
            read(&[("x-sluice-cache-ttl-ms", "5000")]),
            (false, false, 1000),
            "never longer"
        );
        assert_eq!(read(&[("x-sluice-cache-ttl-ms", "soon")]), (false, false, 1000));
        // The first value counts, as a lookup by name finds it.
        assert_eq!(
            read(&[("x-sluice-cache-ttl-ms", "300"), ("x-sluice-cache-ttl-ms", "10")]),
            (false, false, 300)
        );
    }
}
