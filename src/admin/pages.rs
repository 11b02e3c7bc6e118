//! The status page's reading routes: `GET /` (HTML), `GET /api/status` (the same
//! [`super::status::Status`] as JSON, with the session's CSRF token for scripts that
//! post) and `GET /login`. A loopback visitor is let in and given a session (for the
//! CSRF token); anyone else needs a logged-in session ([`super::access`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::access::{self, Session};
use super::http::Shared;
use super::i18n::Lang;
use super::{page, status};

/// `?lang=en|zh`, the page's language switch.
#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
    /// `?failures=1`: recent activity, failures only.
    failures: Option<String>,
}

/// The language for this request (switch, cookie, `Accept-Language`).
pub fn lang(query: Option<&str>, headers: &HeaderMap) -> Lang {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Lang::choose(query, access::cookie(headers, "lang"), accept)
}

impl LangQuery {
    /// The language for this request, and the `?lang` switch to remember in a cookie
    /// (`None` when the request made no choice).
    fn language(&self, headers: &HeaderMap) -> (Lang, Option<Lang>) {
        let code = self.lang.as_deref();
        (lang(code, headers), code.and_then(Lang::parse))
    }
}

/// What the visitor may do.
pub enum Visitor {
    /// Use the page, with this session (`true`: it was just made, set its cookie).
    Allowed(Session, bool),
    /// Log in first (off loopback, no logged-in session).
    Stranger,
}

/// The visitor at `peer` with these headers; a loopback visitor without a session gets
/// one.
pub fn visitor(admin: &Shared, peer: SocketAddr, headers: &HeaderMap) -> Visitor {
    match admin.sessions.get(headers) {
        Some(s) if s.logged_in || access::open_to(peer) => Visitor::Allowed(s, false),
        _ if access::open_to(peer) => Visitor::Allowed(admin.sessions.start(false), true),
        _ => Visitor::Stranger,
    }
}

/// Headers every page carries: no caching, no framing (the buttons must not be
/// clickjacked), no script, no referrer.
pub fn harden(r: &mut Response) {
    let h = r.headers_mut();
    let pairs = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in pairs {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// A 303 to `to`.
pub fn see_other(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn with_cookies(mut r: Response, session: Option<&Session>, lang_switch: Option<Lang>) -> Response {
    if let Some(s) = session {
        r.headers_mut()
            .append(header::SET_COOKIE, access::set_cookie(s));
    }
    if let Some(l) = lang_switch {
        let v = format!("lang={}; Path=/; SameSite=Lax; Max-Age=31536000", l.code());
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    harden(&mut r);
    r
}

/// `GET /`: the page, or a redirect to the login form.
pub async fn index(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let (lang, switch) = q.language(&headers);
    let (session, new) = match visitor(&admin, peer, &headers) {
        Visitor::Allowed(s, new) => (s, new),
        Visitor::Stranger => return with_cookies(see_other("/login"), None, switch),
    };
    let rt = admin.runtime();
    let last = admin
        .last_check
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let s = status::gather(&rt, &admin.bound, last).await;
    let notice = admin.sessions.take_notice(&session.id);
    let view = page::PageView {
        logged_in: session.logged_in,
        failures_only: q.failures.is_some_and(|f| f == "1"),
    };
    let html = page::status(&s, lang, &session.csrf, notice.as_deref(), view);
    let r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    with_cookies(r, new.then_some(&session), switch)
}

/// `GET /api/status`: the page's data as JSON (`401` off loopback without a login).
pub async fn api_status(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (session, new) = match visitor(&admin, peer, &headers) {
        Visitor::Allowed(s, new) => (s, new),
        Visitor::Stranger => {
            let body = serde_json::json!({"error": "login required: POST /login"});
            let mut r = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
            harden(&mut r);
            return r;
        }
    };
    let rt = admin.runtime();
    let last = admin
        .last_check
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let s = status::gather(&rt, &admin.bound, last).await;
    let mut value = serde_json::to_value(&s).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("csrf_token".into(), session.csrf.clone().into());
    }
    with_cookies(
        axum::Json(value).into_response(),
        new.then_some(&session),
        None,
    )
}

/// `GET /login`: the form (straight to the page on loopback or when logged in).
pub async fn login_form(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let (lang, switch) = q.language(&headers);
    let logged_in = admin.sessions.get(&headers).is_some_and(|s| s.logged_in);
    if logged_in || access::open_to(peer) {
        return see_other("/");
    }
    // A session before the login, only to carry the login form's CSRF token.
    let (session, new) = match admin.sessions.get(&headers) {
        Some(s) => (s, false),
        None => (admin.sessions.start(false), true),
    };
    let notice = admin.sessions.take_notice(&session.id);
    let html = page::login(lang, &session.csrf, notice.as_deref());
    let r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    with_cookies(r, new.then_some(&session), switch)
}
