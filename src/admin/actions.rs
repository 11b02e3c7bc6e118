//! The status page's state-changing routes, all `POST` forms carrying the session's
//! CSRF token (refused with 403 without it): log in and out, unlock a host, retry or
//! delete a queued message, check the accounts now. Each changes things only through the
//! owning module's own functions: `auth`'s lockout table, the queue's request files
//! (exactly what `qqmail-proxy queue retry|delete` leaves), `check`'s code. Each answers
//! 303 back to the page, with a notice for the next page view.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use tracing::info;

use super::access::{self, Session};
use super::http::{closing, Shared, PLAIN};
use super::pages::{harden, lang, see_other};
use super::status::CheckView;
use crate::auth::PageVerdict;
use crate::queue::store::Request;
use crate::secrets::Secret;

/// How long "check now" waits for the checks before answering (they go on after).
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub struct Token {
    #[serde(default)]
    csrf: String,
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

/// The unlock button.
#[derive(Deserialize)]
pub struct UnlockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    host: String,
}

/// The retry and delete buttons: one message, or (retry only) `all`.
#[derive(Deserialize)]
pub struct QueueForm {
    #[serde(default)]
    csrf: String,
    id: Option<String>,
    all: Option<String>,
}

fn forbidden(why: &str) -> Response {
    let mut r = closing(StatusCode::FORBIDDEN, PLAIN, format!("{why}\n"));
    harden(&mut r);
    r
}

/// The session a POST acts for: it must exist, be allowed (loopback or logged in) and
/// name its CSRF token.
fn authorize(
    admin: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Response> {
    let Some(session) = admin.sessions.get(headers) else {
        return Err(forbidden("no session: load the page first"));
    };
    if !access::same(&session.csrf, csrf) {
        return Err(forbidden("missing or wrong CSRF token: reload the page"));
    }
    if !(session.logged_in || access::open_to(peer)) {
        return Err(forbidden("log in first"));
    }
    Ok(session)
}

/// `POST /login`.
pub async fn login(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(session) = admin.sessions.get(&headers) else {
        return forbidden("no session: load the login page first");
    };
    if !access::same(&session.csrf, &form.csrf) {
        return forbidden("missing or wrong CSRF token: reload the login page");
    }
    let w = lang(None, &headers).words();
    let rt = admin.runtime();
    let Some(hash) = rt.config.admin_password_hash.clone() else {
        // No password configured: only loopback may use the page, and it needs none.
        return see_other("/");
    };
    let password = Secret::from(form.password);
    let notice = match rt.auth.verify_page(peer.ip(), &password, &hash).await {
        PageVerdict::Accepted => {
            // A fresh id: one set before the login (by anyone) never becomes logged in.
            admin.sessions.end(&session.id);
            let fresh = admin.sessions.start(true);
            info!(protocol = "admin", client = %peer, "status page login");
            let mut r = see_other("/");
            r.headers_mut()
                .append(header::SET_COOKIE, access::set_cookie(&fresh));
            return r;
        }
        PageVerdict::Rejected => w.login_failed,
        PageVerdict::LockedOut => w.locked_out,
        PageVerdict::Busy => w.busy,
    };
    info!(protocol = "admin", client = %peer, "status page login refused");
    admin.sessions.notify(&session.id, notice.to_string());
    see_other("/login")
}

/// `POST /logout`.
pub async fn logout(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<Token>,
) -> Response {
    let session = match authorize(&admin, peer, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    admin.sessions.end(&session.id);
    let mut r = see_other("/login");
    r.headers_mut()
        .append(header::SET_COOKIE, access::clear_cookie());
    r
}

/// `POST /unlock`: ends a host's lockout.
pub async fn unlock(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<UnlockForm>,
) -> Response {
    let session = match authorize(&admin, peer, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let w = lang(None, &headers).words();
    let notice = if admin.runtime().auth.unlock(form.host.trim()) {
        w.done.to_string()
    } else {
        format!("{}: {}", w.no_lockouts, form.host.trim())
    };
    admin.sessions.notify(&session.id, notice);
    see_other("/")
}

/// Leaves `req` in the queue for the server, as `qqmail-proxy queue` does.
async fn queue_request(admin: &Shared, req: Request) -> Result<(), String> {
    let rt = admin.runtime();
    let Some(intake) = rt.queue.get() else {
        return Err("the queue is off ([smtp] delivery = \"relay\")".to_string());
    };
    let store = intake.store.clone();
    let left = tokio::task::spawn_blocking(move || {
        crate::cli::queue::leave_request(&store, &req).map_err(|e| format!("{e:#}"))
    })
    .await;
    left.unwrap_or_else(|_| Err("the request could not be written".to_string()))
}

/// `POST /queue/retry` (`id`, or `all`) and `POST /queue/delete` (`id`).
async fn queue_action(
    admin: Shared,
    peer: SocketAddr,
    headers: HeaderMap,
    form: QueueForm,
    delete: bool,
) -> Response {
    let session = match authorize(&admin, peer, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let w = lang(None, &headers).words();
    let req = match (form.id.as_deref(), form.all.is_some(), delete) {
        (_, true, false) => Ok(Request::RetryAll),
        (Some(id), false, _) => crate::cli::queue::parse_id(id)
            .map(|id| {
                if delete {
                    Request::Delete(id)
                } else {
                    Request::Retry(id)
                }
            })
            .map_err(|e| e.to_string()),
        _ => Err("name a message".to_string()),
    };
    let notice = match req {
        Ok(req) => {
            info!(protocol = "admin", client = %peer, request = ?req, "queue request from the status page");
            match queue_request(&admin, req).await {
                Ok(()) => w.requested.to_string(),
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    admin.sessions.notify(&session.id, notice);
    see_other("/#queue")
}

/// `POST /queue/retry`.
pub async fn retry(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<QueueForm>,
) -> Response {
    queue_action(admin, peer, headers, form, false).await
}

/// `POST /queue/delete`.
pub async fn delete(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<QueueForm>,
) -> Response {
    queue_action(admin, peer, headers, form, true).await
}

/// `POST /check`: runs `qqmail-proxy check`'s checks (one run at a time), waits up to
/// [`CHECK_WAIT`] for them, and shows the result on the page.
pub async fn check(
    State(admin): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<Token>,
) -> Response {
    let session = match authorize(&admin, peer, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let task = {
        let admin = admin.clone();
        tokio::spawn(async move {
            // A check already running: its result is the one to wait for.
            let _one = admin.checking.lock().await;
            let rt = admin.runtime();
            let lines = crate::cli::check::run_all(&rt.config, &rt)
                .await
                .into_iter()
                .map(Into::into)
                .collect();
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            *admin.last_check.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(CheckView { at, lines });
        })
    };
    info!(protocol = "admin", client = %peer, "check requested from the status page");
    if tokio::time::timeout(CHECK_WAIT, task).await.is_err() {
        admin
            .sessions
            .notify(&session.id, "… reload the page for the result".to_string());
    }
    see_other("/#accounts")
}

impl IntoResponse for super::status::Status {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}
