//! Signing in and staying signed in.
//!
//! A session is opened with an admin token (the bootstrap token or a principal's; with no
//! bootstrap token configured, an empty one signs in as the local operator). The browser gets
//! a random session id in a cookie that is HttpOnly (no script can read it), SameSite=Strict
//! (no other site's page can send it) and expires; the store keeps only the id's SHA-256, the
//! token's SHA-256 and the session's CSRF token. At every request the principal is found again
//! from the token's hash, so revoking a principal or replacing the bootstrap token ends its
//! sessions. Every POST must carry the session's CSRF token and, when the browser says where it
//! comes from, this origin. Failed sign-ins are counted per client address: past
//! `admin.console.sign_in_attempts` a minute, every attempt from there is refused until the
//! minute is over.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http_body_util::BodyExt;
use maud::html;
use rand::RngCore;
use serde::Deserialize;
use sluice_store::StoredSession;

use super::Console;
use super::layout;
use super::signed::Session;
use crate::auth::{self, Principal};

pub(crate) const COOKIE: &str = "sluice_session";

/// The token hash a local operator's session carries (no token has this SHA-256).
const LOCAL: [u8; 32] = [0; 32];

/// The largest form the console accepts.
const MAX_FORM: usize = 64 << 10;

/// 32 random bytes, hex (a session id or a CSRF token).
fn secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Failed sign-ins per client address in the current minute (bounded: at most
/// [`SignInLimiter::MAX_ADDRESSES`] addresses are remembered; past that, windows that are over
/// are forgotten first, then the map is cleared).
#[derive(Default)]
pub(crate) struct SignInLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    const WINDOW: Duration = Duration::from_secs(60);
    const MAX_ADDRESSES: usize = 10_000;

    /// Seconds until `ip` may try again, when it has used up `allowed` failures.
    fn refused(&self, ip: IpAddr, allowed: u32, now: Instant) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, n) = *map.get(&ip)?;
        let left = Self::WINDOW
            .checked_sub(now.duration_since(start))
            .filter(|d| !d.is_zero())?;
        (n >= allowed).then(|| left.as_secs().max(1))
    }

    fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= Self::MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
            if map.len() >= Self::MAX_ADDRESSES {
                map.clear();
            }
        }
        let e = map.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Self::WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ip);
    }
}

/// The value of the session cookie, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether the request says it comes from this console's own origin (or says nothing: only
/// browsers send `Origin`, and they always do on a form's POST).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && origin_host == host
}

fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("sluice_session=; Max-Age=0"))
}

fn to_sign_in() -> Response {
    Redirect::to("/console/sign-in").into_response()
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
}

fn sign_in_form(c: &Console, status: StatusCode, problem: Option<&str>) -> Response {
    let local = c.gw.snapshot().config.admin.token.is_none();
    let body = html! {
        main class="sign-in" {
            h1 { "Sluice console" }
            @if let Some(p) = problem { p class="problem" role="alert" { (p) } }
            form method="post" action="/console/sign-in" {
                label for="token" { "Admin token" }
                input type="password" id="token" name="token" autocomplete="current-password" autofocus;
                @if local { p class="hint" { "No bootstrap token is configured: leave it empty to sign in as the local operator." } }
                button type="submit" id="sign-in" { "Sign in" }
            }
        }
    };
    layout::bare("Sign in", status, body)
}

pub(crate) async fn sign_in_page(State(c): State<Console>) -> Response {
    sign_in_form(&c, StatusCode::OK, None)
}

pub(crate) async fn sign_in(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let console = c.gw.snapshot().config.admin.console.clone();
    let now = Instant::now();
    if !same_origin(&headers) {
        return sign_in_form(
            &c,
            StatusCode::FORBIDDEN,
            Some("This sign-in did not come from this console."),
        );
    }
    if let Some(wait) = c.limiter.refused(peer.ip(), console.sign_in_attempts, now) {
        let mut r = sign_in_form(
            &c,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins from this address: try again in {wait} s."
            )),
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        count(&c, "sign_in_limited");
        return r;
    }
    let has_bootstrap = c.gw.snapshot().config.admin.token.is_some();
    let token_hash = if form.token.is_empty() && !has_bootstrap {
        LOCAL
    } else {
        auth::token_hash(&form.token)
    };
    let principal = match resume(&c, &token_hash).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "console sign-in: the store did not answer");
            return sign_in_form(
                &c,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The store did not answer; try again."),
            );
        }
    };
    let Some(principal) = principal else {
        c.limiter.failed(peer.ip(), now);
        count(&c, "sign_in_refused");
        return sign_in_form(&c, StatusCode::UNAUTHORIZED, Some("That token is not valid."));
    };
    c.limiter.succeeded(peer.ip());
    let id = secret();
    let created = now_ms();
    let session = StoredSession {
        hash: auth::token_hash(&id),
        token_hash,
        principal: principal.id.clone(),
        csrf: secret(),
        created_ms: created,
        expires_ms: created + console.session.as_millis() as i64,
    };
    if let Err(e) = c.gw.store.insert_session(&session).await {
        tracing::warn!(error = %e, "console sign-in: the session was not stored");
        return sign_in_form(
            &c,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The store did not answer; try again."),
        );
    }
    count(&c, "signed_in");
    tracing::info!(principal = %principal.id, role = principal.role.as_str(), "console sign-in");
    let mut r = Redirect::to("/console").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&id, console.session.as_secs(), console.secure_cookie),
    );
    r
}

fn count(c: &Console, event: &'static str) {
    c.gw.telemetry
        .metrics
        .console_events
        .get_or_create(&sluice_gateway::telemetry::EventLabel { event })
        .inc();
}

/// The principal a session's token hash stands for now.
async fn resume(c: &Console, token_hash: &[u8; 32]) -> Result<Option<Principal>, sluice_store::StoreError> {
    if *token_hash == LOCAL {
        let local = c.gw.snapshot().config.admin.token.is_none();
        return Ok(local.then(auth::local_operator));
    }
    auth::principal_of(&c.gw, token_hash).await
}

pub(crate) async fn sign_out(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers)
        && let Err(e) = c.gw.store.delete_session(&auth::token_hash(id)).await
    {
        tracing::warn!(error = %e, "console sign-out: the session was not deleted");
    }
    let secure = c.gw.snapshot().config.admin.console.secure_cookie;
    let mut r = to_sign_in();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie("", 0, secure));
    r
}

/// Every page but the sign-in: a live session (else to the sign-in page), and on a POST its
/// CSRF token and this origin (else 403). The session is an extension of the request. A POST's
/// form is read first, whatever the verdict: a refusal that left the body unread would make the
/// server drop the connection, and a client reusing it would see its next request fail.
pub(crate) async fn require(State(c): State<Console>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let form = if parts.method == Method::POST {
        match http_body_util::Limited::new(body, MAX_FORM).collect().await {
            Ok(b) => Some(b.to_bytes()),
            Err(_) => return layout::problem(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
        }
    } else {
        drop(body);
        None
    };
    let Some(id) = cookie(&parts.headers) else {
        return to_sign_in();
    };
    let hash = auth::token_hash(id);
    let stored = match c.gw.store.session(&hash, now_ms()).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(),
        Err(e) => {
            return layout::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The store did not answer: {e}"),
            );
        }
    };
    let principal = match resume(&c, &stored.token_hash).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            // Its principal was revoked, or the bootstrap token replaced: the session is over.
            let _ = c.gw.store.delete_session(&hash).await;
            return to_sign_in();
        }
        Err(e) => {
            return layout::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The store did not answer: {e}"),
            );
        }
    };
    if let Some(form) = &form
        && let Some(why) = refused_write(&parts.headers, form, &stored.csrf)
    {
        count(&c, "csrf_refused");
        return layout::problem(StatusCode::FORBIDDEN, why);
    }
    let mut req = Request::from_parts(parts, form.map_or_else(Body::empty, Body::from));
    req.extensions_mut().insert(Session {
        principal,
        csrf: stored.csrf,
    });
    next.run(req).await
}

/// Why a POST is refused — another origin, or not this session's CSRF token — if it is.
fn refused_write(headers: &HeaderMap, form: &[u8], csrf: &str) -> Option<&'static str> {
    if !same_origin(headers) {
        return Some("This form was not sent from this console.");
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(form).unwrap_or_default();
    let sent = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    (!auth::subtle_eq(sent.as_bytes(), csrf.as_bytes()))
        .then_some("This form's CSRF token is missing or not this session's: reload the page and try again.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_only_by_its_name() {
        let check = |pairs: &[(&str, &str)], expected: Option<&str>| {
            assert_eq!(cookie(&headers(pairs)), expected, "{pairs:?}");
        };
        check(&[("cookie", "sluice_session=abc")], Some("abc"));
        check(&[("cookie", "a=1; sluice_session=abc; b=2")], Some("abc"));
        check(&[("cookie", "a=1"), ("cookie", "sluice_session=xyz")], Some("xyz"));
        check(&[("cookie", "sluice_session2=abc")], None);
        check(&[("cookie", "xsluice_session=abc")], None);
        check(&[], None);
    }

    #[test]
    fn a_write_must_come_from_this_origin_when_the_browser_says_where_from() {
        let check = |pairs: &[(&str, &str)], expected: bool| {
            assert_eq!(same_origin(&headers(pairs)), expected, "{pairs:?}");
        };
        check(&[("host", "127.0.0.1:9090"), ("origin", "http://127.0.0.1:9090")], true);
        check(
            &[
                ("host", "console.example:443"),
                ("origin", "https://console.example:443"),
            ],
            true,
        );
        check(&[("host", "127.0.0.1:9090")], true);
        check(
            &[("host", "127.0.0.1:9090"), ("origin", "http://127.0.0.1:9091")],
            false,
        );
        check(&[("host", "127.0.0.1:9090"), ("origin", "null")], false);
        check(&[("origin", "http://127.0.0.1:9090")], false);
    }

    #[test]
    fn failed_sign_ins_are_limited_per_address_for_a_minute() {
        let limiter = SignInLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.refused(a, 3, t0), None);
            limiter.failed(a, t0);
        }
        assert_eq!(limiter.refused(a, 3, t0), Some(60));
        assert_eq!(limiter.refused(a, 3, t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(limiter.refused(b, 3, t0), None, "another address");
        assert_eq!(
            limiter.refused(a, 3, t0 + Duration::from_secs(60)),
            None,
            "the minute is over"
        );
        // A new window starts with the next failure after it.
        limiter.failed(a, t0 + Duration::from_secs(61));
        assert_eq!(limiter.refused(a, 3, t0 + Duration::from_secs(61)), None);
        limiter.succeeded(a);
        assert!(limiter.failures.lock().unwrap().get(&a).is_none());
    }

    #[test]
    fn the_limiter_stays_bounded() {
        let limiter = SignInLimiter::default();
        let t0 = Instant::now();
        for i in 0..(SignInLimiter::MAX_ADDRESSES as u32 + 10) {
            limiter.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(limiter.failures.lock().unwrap().len() <= SignInLimiter::MAX_ADDRESSES);
    }

    #[test]
    fn the_cookie_is_http_only_strict_scoped_and_expires() {
        let v = set_cookie("abc", 300, false);
        assert_eq!(
            v.to_str().unwrap(),
            "sluice_session=abc; Path=/console; HttpOnly; SameSite=Strict; Max-Age=300"
        );
        assert!(set_cookie("abc", 300, true).to_str().unwrap().ends_with("; Secure"));
    }
}
