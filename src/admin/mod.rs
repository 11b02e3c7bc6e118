//! The optional admin listener (`[admin] listen`): `GET /healthz` and `GET /metrics`
//! (Prometheus text). A deliberately tiny HTTP/1.1 responder: one request per
//! connection, bounded, read-only, and never at the mail listeners' expense: at most
//! [`MAX_CONNECTIONS`] at once, none while descriptors are within
//! [`fdlimit::MAIL_RESERVE`] of the limit, and accept errors back off. The `Host` rule
//! (`host`) keeps web pages out; clients off loopback get a redacted view (`view`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::fdlimit;
use crate::runtime::Runtime;
use crate::server::Current;

mod host;
mod view;

pub use host::{host_allowed, Head};
pub use view::View;

/// Admin connections served at once. A scrape or a health probe takes milliseconds, so
/// 16 is plenty for monitoring, and a flood of idle connections holds 16 descriptors,
/// not thousands; the rest are answered 503 and closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection that has not sent its request within this is closed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, current: Current, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let current = current.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(tcp, peer, current)).await;
        });
    }
}

async fn handle(mut tcp: TcpStream, peer: SocketAddr, current: Current) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = tcp.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let rt = match current.read() {
        Ok(rt) => rt.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let (status, ctype, body) = respond(&Head::parse(&request), View::of(peer.ip()), &rt).await;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}

/// The answer to one request: status line, content type, body.
async fn respond(
    head: &Head<'_>,
    view: View,
    rt: &Runtime,
) -> (&'static str, &'static str, String) {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let config = &rt.config;
    let names: Vec<&str> = std::iter::once(config.hostname.as_str())
        .chain(config.tls.names.iter().map(String::as_str))
        .collect();
    if let Err(status) = head.check_host(&names) {
        let body = "unknown Host: use http://localhost:<port>/ or the listener's address\n";
        return (status, PLAIN, body.to_string());
    }
    match (head.method, head.path) {
        ("GET", "/healthz") => {
            let mut failing = rt.metrics.failing_upstreams();
            if let Some(q) = rt.queue.get() {
                failing.extend(crate::queue::metrics::held_accounts(q));
            }
            ("200 OK", PLAIN, view::healthz(&failing, view))
        }
        ("GET", "/metrics") => {
            let hidden: Vec<String> = config
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
            let text = view::metrics(&all, &hidden, view);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        }
        ("GET", _) => ("404 Not Found", PLAIN, "not found\n".to_string()),
        _ => ("405 Method Not Allowed", PLAIN, "GET only\n".to_string()),
    }
}

#[cfg(test)]
mod tests;
