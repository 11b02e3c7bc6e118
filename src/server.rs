//! Listeners and the accept loop: binds every configured address, caps sessions in total
//! and per client host (an IPv4 address or an IPv6 /64, [`Host`]), spawns one task per connection inside a tracing span, and
//! shuts down gracefully (stop accepting, let sessions finish within the grace period).
//! SIGHUP swaps in a freshly validated runtime; sessions keep the one they started with.
//! The session caps are plain counters checked against the runtime in force at each
//! accept, so a reload changes them for new connections without touching running ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use crate::host::Host;
use crate::proto::imap::ImapLogin;
use crate::proto::pop3::Pop3Login;
use crate::proto::smtp::SmtpLogin;
use crate::proto::Protocol;
use crate::runtime::Runtime;
use crate::session;

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("[{protocol}] listen {addr}: {source} (is another program using the port, or is the address not on this machine?)")]
    Bind {
        /// Which listener.
        protocol: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The runtime currently in force (replaced on reload).
pub type Current = Arc<RwLock<Arc<Runtime>>>;

/// One bound listener.
pub struct Bound {
    /// Its protocol (or `None` for the admin endpoint).
    pub protocol: Protocol,
    /// The socket.
    pub listener: TcpListener,
}

/// Binds every listener in the runtime's config, logging each address.
pub async fn bind(rt: &Runtime) -> Result<Vec<Bound>, ServerError> {
    let cfg = &rt.config;
    let mut out = Vec::new();
    for (protocol, listener) in [
        (Protocol::Smtp, cfg.smtp.as_ref().map(|s| &s.listener)),
        (Protocol::Imap, cfg.imap.as_ref()),
        (Protocol::Pop3, cfg.pop3.as_ref()),
    ] {
        let Some(listener) = listener else { continue };
        for addr in &listener.listen {
            let l = listen(*addr).map_err(|source| ServerError::Bind {
                protocol: protocol.name(),
                addr: *addr,
                source,
            })?;
            let local = l.local_addr().unwrap_or(*addr);
            info!(protocol = protocol.name(), addr = %local, starttls = listener.starttls.name(), "listening");
            out.push(Bound {
                protocol,
                listener: l,
            });
        }
    }
    Ok(out)
}

/// Pending connections the kernel may queue before `accept`: the default 128 overflows
/// when hundreds of devices (or a slowloris attack) connect at once, and clients then
/// wait seconds for SYN retries.
const BACKLOG: u32 = 1024;

/// Binds `addr` with address reuse (a restart need not wait for TIME_WAIT) and a deep
/// accept queue.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Sessions running, in total and per client host. Counters rather than a semaphore
/// sized at start: the limits are read from the runtime in force at each accept, so a
/// reload applies to the next connection. Lowering a limit below the sessions running
/// closes none of them; new connections are refused until enough have ended.
#[derive(Default)]
struct Sessions(Mutex<Counts>);

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<Host, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Total,
    PerIp,
}

/// One running session's place in [`Sessions`]; dropping it frees the place.
struct Slot {
    table: Arc<Sessions>,
    host: Host,
}

impl Sessions {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn acquire(self: &Arc<Self>, host: Host, max: usize, max_per_ip: usize) -> Result<Slot, Full> {
        let mut c = self.counts();
        if c.total >= max {
            return Err(Full::Total);
        }
        if c.per_ip.get(&host).copied().unwrap_or(0) >= max_per_ip {
            return Err(Full::PerIp);
        }
        *c.per_ip.entry(host).or_insert(0) += 1;
        c.total += 1;
        Ok(Slot {
            table: self.clone(),
            host,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.table.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.host);
            }
        }
    }
}

/// Accept loops and session tasks, until `shutdown` fires; then waits up to the grace
/// period for sessions to finish.
pub async fn serve(current: Current, listeners: Vec<Bound>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let sessions = Arc::new(Sessions::default());
    let ids = Arc::new(AtomicU64::new(1));
    for bound in listeners {
        tracker.spawn(accept_loop(
            bound,
            current.clone(),
            sessions.clone(),
            ids.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    shutdown.cancelled().await;
    tracker.close();
    let grace = current
        .read()
        .map(|rt| rt.config.limits.shutdown_grace)
        .unwrap_or(Duration::from_secs(30));
    let active = current
        .read()
        .map(|rt| rt.metrics.active_total())
        .unwrap_or(0);
    info!(
        sessions = active,
        grace_secs = grace.as_secs(),
        "shutting down: no new connections"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!("sessions still running after the grace period; closing them");
    }
}

fn busy_reply(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::Smtp => b"421 4.7.0 Too many connections, try again later\r\n",
        Protocol::Imap => b"* BYE Too many connections, try again later\r\n",
        Protocol::Pop3 => b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
    }
}

async fn refuse(mut tcp: TcpStream, protocol: Protocol) {
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(busy_reply(protocol))).await;
    let _ = tcp.shutdown().await;
}

async fn accept_loop(
    bound: Bound,
    current: Current,
    sessions: Arc<Sessions>,
    ids: Arc<AtomicU64>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let protocol = bound.protocol;
    let mut backoff = Duration::from_millis(50);
    loop {
        let accepted = tokio::select! {
            r = bound.listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(50);
                x
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                error!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d; the allow-list,
        // the lockout and the per-host limits speak plain IPv4.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let _ = tcp.set_nodelay(true);
        let rt = match current.read() {
            Ok(rt) => rt.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let limits = &rt.config.limits;
        let host = Host::of_peer(peer.ip(), tcp.local_addr().ok().map(|a| a.ip()));
        let slot = match sessions.acquire(host, limits.max_sessions, limits.max_sessions_per_ip) {
            Ok(slot) => slot,
            Err(full) => {
                match full {
                    Full::Total => {
                        warn!(client = %peer, %protocol, "session limit reached; refusing connection")
                    }
                    Full::PerIp => {
                        warn!(client = %peer, %protocol, "per-address session limit reached; refusing connection")
                    }
                }
                tracker.spawn(refuse(tcp, protocol));
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("session", id, proto = protocol.name(), client = %peer);
        let token = shutdown.child_token();
        // The session frees its slot itself, before it logs its end: whoever sees that
        // line (a test, an operator) may connect again at once.
        tracker.spawn(
            async move {
                let policy = session::policy(&rt, protocol, peer);
                match protocol {
                    Protocol::Smtp => {
                        session::run(rt, tcp, peer, SmtpLogin::new(policy), token, slot).await;
                    }
                    Protocol::Imap => {
                        session::run(rt, tcp, peer, ImapLogin::new(policy), token, slot).await;
                    }
                    Protocol::Pop3 => {
                        session::run(rt, tcp, peer, Pop3Login::new(policy), token, slot).await;
                    }
                }
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// (address, max_sessions, max_sessions_per_ip, expected, sessions to end first)
    type Step = (IpAddr, usize, usize, Result<(), Full>, usize);

    /// Session slots under limits that change between accepts, as a reload changes them.
    #[test]
    fn limits_in_force_at_each_accept() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let table = Arc::new(Sessions::default());
        let mut held = Vec::new();
        #[rustfmt::skip]
        let steps: &[Step] = &[
            (a, 2, 2, Ok(()), 0),
            (b, 2, 2, Ok(()), 0),
            (a, 2, 2, Err(Full::Total), 0),
            // Raised by a reload: the next connection gets in.
            (a, 3, 2, Ok(()), 0),
            (a, 4, 2, Err(Full::PerIp), 0),
            (a, 4, 3, Ok(()), 0),
            // Lowered below the four running: all keep running, new ones are refused...
            (b, 2, 3, Err(Full::Total), 0),
            (b, 2, 3, Err(Full::Total), 2),
            // ...until enough have ended.
            (b, 2, 3, Ok(()), 1),
        ];
        for (i, (ip, max, per_ip, want, end)) in steps.iter().enumerate() {
            for _ in 0..*end {
                held.remove(0);
            }
            let got = table.acquire(Host::of(*ip), *max, *per_ip);
            assert_eq!(
                got.as_ref().map(|_| ()).map_err(|f| *f),
                *want,
                "step {}",
                i + 1
            );
            if let Ok(slot) = got {
                held.push(slot);
            }
        }
        drop(held);
        let c = table.counts();
        assert_eq!((c.total, c.per_ip.len()), (0, 0));
    }

    /// The per-address cap counts an IPv6 /64 as one host, and IPv4-mapped IPv6 as the
    /// IPv4 address.
    #[test]
    fn the_per_address_cap_is_per_host() {
        let table = Arc::new(Sessions::default());
        let mut held = Vec::new();
        #[rustfmt::skip]
        let steps = [
            ("2001:db8:1:2::1", Ok(())),
            ("2001:db8:1:2::2", Ok(())),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", Err(Full::PerIp)),
            ("2001:db8:1:3::1", Ok(())),
            ("::ffff:10.0.0.1", Ok(())),
            ("10.0.0.1", Ok(())),
            ("10.0.0.1", Err(Full::PerIp)),
            ("10.0.0.2", Ok(())),
        ];
        for (i, (ip, want)) in steps.into_iter().enumerate() {
            let got = table.acquire(Host::of(ip.parse().unwrap()), 100, 2);
            assert_eq!(
                got.as_ref().map(|_| ()).map_err(|f| *f),
                want,
                "step {} ({ip})",
                i + 1
            );
            held.extend(got.ok());
        }
        drop(held);
        assert_eq!(table.counts().per_ip.len(), 0);
    }
}
