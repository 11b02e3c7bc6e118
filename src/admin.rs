//! The optional admin listener (`[admin] listen`): `GET /healthz` and `GET /metrics`
//! (Prometheus text). A deliberately tiny HTTP/1.1 responder: one request per
//! connection, bounded, read-only.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::server::Current;

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, current: Current, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        if let Ok((tcp, _)) = accepted {
            let current = current.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle(tcp, current)).await;
            });
        }
    }
}

async fn handle(mut tcp: TcpStream, current: Current) -> std::io::Result<()> {
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
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let rt = match current.read() {
        Ok(rt) => rt.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let (status, ctype, body) = match (method, path) {
        ("GET", "/healthz") => {
            let failing = rt.metrics.failing_upstreams();
            let body = if failing.is_empty() {
                "ok\n".to_string()
            } else {
                format!(
                    "ok (listeners up); last login failed for: {}\n",
                    failing.join(", ")
                )
            };
            ("200 OK", "text/plain; charset=utf-8", body)
        }
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            rt.metrics.render(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}
