//! The start of a client connection, before the greeting: plaintext, the implicit-TLS
//! handshake of a `tls://` listener, or (on `auto://`) whichever the client's first bytes
//! ask for. Also the local handshake itself (shared with STARTTLS), which logs why it
//! failed in one plain line.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tracing::warn;

use super::stream::ClientStream;
use super::{Report, TlsUse};
use crate::config::ListenMode;
use crate::proto::LoginPhase;
use crate::runtime::Runtime;
use crate::tls::local::diagnose::{explain, Failure};
use crate::tls::local::sniff::{classify, FirstBytes, AUTO_TLS_WAIT};

/// The client stream to greet, or `None` when an implicit-TLS handshake failed (logged).
pub(super) async fn open<P: LoginPhase>(
    rt: &Runtime,
    tcp: TcpStream,
    peer: SocketAddr,
    mode: ListenMode,
    phase: &mut P,
    report: &mut Report,
) -> Option<ClientStream> {
    let implicit = match mode {
        ListenMode::Plain => false,
        ListenMode::Tls => true,
        ListenMode::Auto => rt.acceptor.is_some() && opens_with_tls(&tcp).await,
    };
    if !implicit {
        return Some(ClientStream::Plain(tcp));
    }
    let tls = handshake(rt, ClientStream::Plain(tcp), peer).await?;
    // As after STARTTLS: nothing more to offer, logins allowed.
    phase.tls_started();
    report.tls = TlsUse::Implicit;
    Some(tls)
}

/// Waits up to [`AUTO_TLS_WAIT`] for the client's first bytes: true when they start a
/// TLS handshake. Silence, EOF or anything else means a plaintext client.
async fn opens_with_tls(tcp: &TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + AUTO_TLS_WAIT;
    let mut head = [0u8; 3];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut head)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        match classify(&head[..n]) {
            FirstBytes::Tls => return true,
            FirstBytes::Plain => return false,
            // One or two bytes so far: peek returns them again at once, so pause.
            FirstBytes::NeedMore => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

/// The local TLS handshake (after STARTTLS, or first thing on a tls:// listener), within
/// the pre-auth timeout. A failure is logged as one sentence naming the client and why.
pub(super) async fn handshake(
    rt: &Runtime,
    client: ClientStream,
    peer: SocketAddr,
) -> Option<ClientStream> {
    let timeout = rt.config.limits.pre_auth_timeout;
    let min = rt.config.tls.min_version;
    let acceptor = rt.acceptor.clone()?;
    let ClientStream::Plain(tcp) = client else {
        return None;
    };
    // The ClientHello's first bytes say which version the client offered, for the log
    // line if the handshake fails; peeking leaves them for the handshake.
    let mut head = [0u8; 11];
    let n = match tokio::time::timeout(timeout, tcp.peek(&mut head)).await {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => 0,
        Err(_) => {
            warn!("{}", explain(peer.ip(), &[], Failure::Timeout, min));
            return None;
        }
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(ClientStream::Tls(tls)),
        Ok(Err(e)) => {
            warn!(
                "{}",
                explain(peer.ip(), &head[..n], Failure::Error(&e), min)
            );
            None
        }
        Err(_) => {
            warn!("{}", explain(peer.ip(), &head[..n], Failure::Timeout, min));
            None
        }
    }
}
