//! The admin endpoint's routes and the rules every request passes first: the `Host`
//! rule ([`super::Head`]) and, for `/healthz` and `/metrics`, the answers of the
//! hand-written responder this replaced, body for body (monitoring parses them).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::access::Sessions;
use super::status::CheckView;
use super::view::{self, View};
use super::{actions, pages, Head};
use crate::runtime::Runtime;
use crate::server::Current;

/// What every handler shares: the runtime in force (swapped on reload), the page's
/// sessions and the last "check now".
pub struct Admin {
    current: Current,
    /// The mail listeners' bound addresses, in the config's order.
    pub bound: Vec<SocketAddr>,
    /// Browser sessions (login, CSRF token, notices).
    pub sessions: Sessions,
    /// The last "check now" result.
    pub last_check: std::sync::Mutex<Option<CheckView>>,
    /// Held while a check runs: one at a time (each logs in upstream, and frequent
    /// test logins trigger the provider's risk control).
    pub checking: tokio::sync::Mutex<()>,
}

impl Admin {
    /// The shared state over the reloadable runtime.
    pub fn new(current: Current, bound: Vec<SocketAddr>) -> Arc<Admin> {
        Arc::new(Admin {
            current,
            bound,
            sessions: Sessions::default(),
            last_check: std::sync::Mutex::new(None),
            checking: tokio::sync::Mutex::new(()),
        })
    }

    /// The runtime in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.current.read() {
            Ok(rt) => rt.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The shared state as handlers take it.
pub type Shared = Arc<Admin>;

/// Every route, behind the `Host` rule.
pub fn router(admin: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(pages::index))
        .route("/api/status", get(pages::api_status))
        .route("/login", get(pages::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/unlock", post(actions::unlock))
        .route("/queue/retry", post(actions::retry))
        .route("/queue/delete", post(actions::delete))
        .route("/check", post(actions::check))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            host_rule,
        ))
        // Forms are a few hundred bytes; nothing here takes an upload.
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(admin)
}

/// Plain text.
pub const PLAIN: &str = "text/plain; charset=utf-8";

/// A plain-text answer that closes the connection, as the hand-written responder did:
/// probes and scrapers read to the end of the stream.
pub fn closing(status: StatusCode, ctype: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The `Host` rule (DNS rebinding) before any route: 400 or 421, connection closed.
async fn host_rule(State(admin): State<Shared>, req: Request, next: Next) -> Response {
    let rt = admin.runtime();
    let config = &rt.config;
    let names: Vec<&str> = std::iter::once(config.hostname.as_str())
        .chain(config.tls.names.iter().map(String::as_str))
        .collect();
    let verdict = {
        let head = Head {
            method: req.method().as_str(),
            path: req.uri().path(),
            needs_host: req.version() >= Version::HTTP_11,
            // A value that is not visible ASCII is no name of ours: "" fails the rule.
            hosts: req
                .headers()
                .get_all(header::HOST)
                .iter()
                .map(|v| v.to_str().unwrap_or("").trim_matches([' ', '\t']))
                .collect(),
        };
        head.check_host(&names)
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(status) => {
            let code = if status.starts_with("421") {
                StatusCode::MISDIRECTED_REQUEST
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = "unknown Host: use http://localhost:<port>/ or the listener's address\n";
            closing(code, PLAIN, body.to_string())
        }
    }
}

async fn healthz(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let rt = admin.runtime();
    let mut failing = rt.metrics.failing_upstreams();
    if let Some(q) = rt.queue.get() {
        failing.extend(crate::queue::metrics::held_accounts(q));
    }
    let body = view::healthz(&failing, View::of(peer.ip()));
    closing(StatusCode::OK, PLAIN, body)
}

async fn metrics(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let rt = admin.runtime();
    let hidden: Vec<String> = rt
        .config
        .accounts
        .iter()
        .flat_map(|a| [&a.smtp, &a.imap, &a.pop3])
        .flatten()
        .map(|s| s.host.clone())
        .collect();
    let mut all = rt.metrics.render();
    if let Some(q) = rt.queue.get() {
        all.push_str(&crate::queue::metrics::render(q, std::time::SystemTime::now()).await);
    }
    let text = view::metrics(&all, &hidden, View::of(peer.ip()));
    closing(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    )
}

async fn fallback(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        closing(StatusCode::NOT_FOUND, PLAIN, "not found\n".to_string())
    } else {
        closing(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "GET or POST only\n".to_string(),
        )
    }
}
