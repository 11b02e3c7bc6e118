//! The optional admin listener (`[admin] listen`): `GET /healthz`, `GET /metrics`
//! (Prometheus text) and the status page. HTTP is hyper's (`http1` only) with axum's
//! router on top: the page needs routing, forms, cookies, JSON and HTTP/1.1 keep-alive
//! done right, which a hand-written responder gets subtly wrong. What stays ours is the
//! accept loop, so the admin port never costs the mail listeners anything: at most
//! [`MAX_CONNECTIONS`] at once, none while descriptors are within
//! [`fdlimit::MAIL_RESERVE`] of the limit (both answered 503 and closed), accept errors
//! back off, and a connection lives at most [`CONNECTION_LIFETIME`]. Connections are
//! served as tasks on the runtime the mail listeners use: no thread of its own. The
//! `Host` rule (`host`) keeps web pages of other origins out; clients off loopback get a
//! redacted view of `/healthz` and `/metrics` (`view`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::fdlimit;
use crate::server::Current;

mod access;
mod actions;
mod host;
mod http;
mod i18n;
mod page;
mod pages;
mod status;
mod view;

pub use host::{host_allowed, Head};
pub use view::View;

/// Admin connections served at once. A scrape or a health probe takes milliseconds, so
/// 16 is plenty for monitoring and a browser, and a flood of idle connections holds 16
/// descriptors, not thousands; the rest are answered 503 and closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection that has not sent a complete request head within this is closed (and
/// so is a kept-alive one idle this long).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A kept-alive connection is closed (after the request in progress) once this old, so
/// that a browser's idle connections cannot hold the [`MAX_CONNECTIONS`] slots.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// The largest request head accepted (hyper answers 431 above it).
const MAX_HEAD: usize = 16 * 1024;

/// At most one "refusing" warning per this interval while a flood lasts.
const WARN_EVERY: Duration = Duration::from_secs(60);

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// [`MAX_CONNECTIONS`] are being served.
    Busy,
    /// Fewer than [`fdlimit::MAIL_RESERVE`] descriptors are left.
    Descriptors,
}

fn admit(permits: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Refusal> {
    let permit = permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::Busy)?;
    let room = fdlimit::has_room(
        fdlimit::open_descriptors(),
        fdlimit::soft_limit(),
        fdlimit::MAIL_RESERVE,
    );
    if room {
        Ok(permit)
    } else {
        Err(Refusal::Descriptors)
    }
}

/// Serves until `shutdown`. `bound` are the mail listeners' bound addresses in the
/// config's order (smtp, imap, pop3), for the status page.
pub async fn serve(
    listener: TcpListener,
    current: Current,
    bound: Vec<SocketAddr>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let router = http::router(http::Admin::new(current, bound));
    // The mail listeners' back-off (server.rs): out of descriptors, wait, do not spin.
    let mut backoff = Duration::from_millis(50);
    let mut last_warning: Option<Instant> = None;
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(50);
                x
            }
            Err(e) => {
                error!(protocol = "admin", error = %e, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let permit = match admit(&permits) {
            Ok(p) => p,
            Err(why) => {
                refused += 1;
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    last_warning = Some(Instant::now());
                    let reason = match why {
                        Refusal::Busy => "connection limit reached",
                        Refusal::Descriptors => "descriptors kept for mail",
                    };
                    warn!(
                        protocol = "admin", client = %peer, limit = MAX_CONNECTIONS,
                        reserve = fdlimit::MAIL_RESERVE, refused, reason,
                        "admin connection refused; mail listeners are not affected"
                    );
                }
                // Non-blocking and best effort: a flood must not make this loop wait.
                let _ = tcp.try_write(BUSY);
                continue;
            }
        };
        let (router, shutdown) = (router.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            connection(tcp, peer, router, shutdown).await;
        });
    }
}

/// Serves one connection's requests (HTTP/1.1 keep-alive) until the client closes, the
/// head timeout or [`CONNECTION_LIFETIME`] passes, or `shutdown`; the last two let the
/// request in progress finish.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        // Handlers learn the peer (loopback or not) from this extension.
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { tower_service::Service::call(&mut router, req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_HEAD.max(8192));
    let conn = builder.serve_connection(TokioIo::new(tcp), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, conn).await;
}

#[cfg(test)]
mod tests;
