//! Listeners and the accept loop: binds every configured address, caps sessions in total
//! and per client host (an IPv4 address or an IPv6 /64, [`Host`]), spawns one task per connection inside a tracing span, and
//! shuts down gracefully (stop accepting, let sessions finish within the grace period).
//! SIGHUP swaps in a freshly validated runtime; sessions keep the one they started with.
//! The session caps are plain counters checked against the runtime in force at each
//! accept, so a reload changes them for new connections without touching running ones.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use crate::config::{ListenAddr, ListenMode};
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
    /// Plaintext or implicit TLS.
    pub mode: ListenMode,
}

/// Binds every listener in the runtime's config, logging each address.
pub async fn bind(rt: &Runtime) -> Result<Vec<Bound>, ServerError> {
    let cfg = &rt.config;
    let mut out = Vec::new();
    // Listeners where a TLS 1.0/1.1 client can connect, for one line at the end.
    let mut old_tls = Vec::new();
    let legacy = rt.acceptor.as_ref().is_some_and(|a| a.accepts_old_tls());
    for (protocol, listener) in [
        (Protocol::Smtp, cfg.smtp.as_ref().map(|s| &s.listener)),
        (Protocol::Imap, cfg.imap.as_ref()),
        (Protocol::Pop3, cfg.pop3.as_ref()),
    ] {
        let Some(listener) = listener else { continue };
        for la in &listener.listen {
            let l = listen(la.addr).map_err(|source| ServerError::Bind {
                protocol: protocol.name(),
                addr: la.addr,
                source,
            })?;
            let local = l.local_addr().unwrap_or(la.addr);
            // STARTTLS applies to plain listeners only: a tls:// session is encrypted from
            // its first byte.
            let starttls = match la.mode {
                ListenMode::Plain | ListenMode::Auto => listener.starttls.name(),
                ListenMode::Tls => "off",
            };
            info!(protocol = protocol.name(), addr = %local, tls = la.mode.name(), starttls, "listening");
            if legacy && (la.mode != ListenMode::Plain || starttls != "off") {
                let how = if la.mode == ListenMode::Plain {
                    " (STARTTLS)"
                } else {
                    ""
                };
                old_tls.push(format!(
                    "{} {}{how}",
                    protocol.name(),
                    ListenAddr {
                        addr: local,
                        mode: la.mode
                    }
                ));
            }
            out.push(Bound {
                protocol,
                listener: l,
                mode: la.mode,
            });
        }
    }
    if !old_tls.is_empty() {
        warn!(
            "old TLS accepted: TLS {v} and newer, CBC suites included (OpenSSL, [tls] \
             min_version = \"{v}\") on {}; it is weak: keep these listeners on a trusted LAN",
            old_tls.join(", "),
            v = cfg.tls.min_version.name()
        );
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
///
/// Sessions still logging in have their own, smaller share of `max_sessions`
/// ([`pre_login_share`]): idle sockets that never log in (a few addresses, each at its
/// `max_sessions_per_ip`) would otherwise hold every slot. When that share or the total
/// is full, the pre-login session idle longest is shed to make room, so a new device
/// still gets in and logged-in users are never crowded out by sockets that only wait.
struct Sessions {
    counts: Mutex<Counts>,
    /// What [`Seat::active`] times are measured from.
    epoch: std::time::Instant,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            counts: Mutex::default(),
            epoch: std::time::Instant::now(),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<Host, usize>,
    /// Sessions that have not logged in yet, by id (oldest first).
    pre_login: BTreeMap<u64, (Host, Arc<SeatState>)>,
}

impl Counts {
    /// Frees one slot of `host`.
    fn release(&mut self, host: Host) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&host);
            }
        }
    }
}

/// What a session and the table share about it.
struct SeatState {
    /// When the client last sent bytes, in milliseconds since [`Sessions::epoch`].
    active_ms: AtomicU64,
    /// Set (under the table's lock) when the table shed the session: its slot is then
    /// released already.
    shed: AtomicBool,
    /// Cancelled to shed the session (the session's own shutdown token).
    token: CancellationToken,
}

/// The pre-login share of `max_sessions`: a quarter (at least one). Logging in takes a
/// round trip or two, so a quarter of the slots serves far more devices logging in at
/// once than any office has, and leaves three quarters for sessions that logged in.
pub fn pre_login_share(max_sessions: usize) -> usize {
    (max_sessions / 4).max(1)
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Total,
    PerIp,
}

/// What an accepted connection got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    /// A free slot.
    Free,
    /// The slot of the pre-login session with this id, shed for it.
    Shed(u64),
}

/// One running session's place in [`Sessions`]; dropping it frees the place.
struct Slot {
    table: Arc<Sessions>,
    host: Host,
    id: u64,
    protocol: Protocol,
    state: Arc<SeatState>,
}

/// A connection asking for a slot.
struct Arrival {
    host: Host,
    /// The session id (they grow, so a lower one is older).
    id: u64,
    protocol: Protocol,
    /// The session's shutdown token, cancelled if it is shed later.
    token: CancellationToken,
}

impl Sessions {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a new session, shedding the pre-login session idle longest if the
    /// total or the pre-login share is full.
    fn acquire(
        self: &Arc<Self>,
        arrival: Arrival,
        max: usize,
        max_per_ip: usize,
    ) -> Result<(Slot, Admitted), Full> {
        let Arrival {
            host,
            id,
            protocol,
            token,
        } = arrival;
        let mut c = self.counts();
        if c.per_ip.get(&host).copied().unwrap_or(0) >= max_per_ip {
            return Err(Full::PerIp);
        }
        let share = pre_login_share(max);
        let mut admitted = Admitted::Free;
        if c.total >= max || c.pre_login.len() >= share {
            // Shed only when that makes room: after a reload lowered the limits, the
            // sessions above them are not closed for nothing.
            let room = c.total <= max && c.pre_login.len() <= share;
            let victim = c
                .pre_login
                .iter()
                .min_by_key(|(id, (_, s))| (s.active_ms.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            match victim.filter(|_| room) {
                Some(victim) => {
                    if let Some((victim_host, state)) = c.pre_login.remove(&victim) {
                        state.shed.store(true, Ordering::Relaxed);
                        state.token.cancel();
                        c.release(victim_host);
                    }
                    admitted = Admitted::Shed(victim);
                }
                None => return Err(Full::Total),
            }
        }
        let state = Arc::new(SeatState {
            active_ms: AtomicU64::new(self.now_ms()),
            shed: AtomicBool::new(false),
            token,
        });
        *c.per_ip.entry(host).or_insert(0) += 1;
        c.total += 1;
        c.pre_login.insert(id, (host, state.clone()));
        Ok((
            Slot {
                table: self.clone(),
                host,
                id,
                protocol,
                state,
            },
            admitted,
        ))
    }
}
impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.table.counts();
        if self.state.shed.load(Ordering::Relaxed) {
            return;
        }
        c.pre_login.remove(&self.id);
        c.release(self.host);
    }
}

impl session::Seat for Slot {
    fn active(&self) {
        self.state
            .active_ms
            .store(self.table.now_ms(), Ordering::Relaxed);
    }

    fn logged_in(&self) {
        self.table.counts().pre_login.remove(&self.id);
    }

    fn shed_reply(&self) -> Option<&'static [u8]> {
        // Read under the lock that sets it, so the answer matches the table's.
        let _c = self.table.counts();
        self.state
            .shed
            .load(Ordering::Relaxed)
            .then(|| busy_reply(self.protocol))
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
    let (protocol, mode) = (bound.protocol, bound.mode);
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
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let token = shutdown.child_token();
        let arrival = Arrival {
            host,
            id,
            protocol,
            token: token.clone(),
        };
        let slot = match sessions.acquire(arrival, limits.max_sessions, limits.max_sessions_per_ip)
        {
            Ok((slot, admitted)) => {
                if let Admitted::Shed(victim) = admitted {
                    info!(
                        client = %peer,
                        %protocol,
                        shed = victim,
                        "sessions full: closing the pre-login session idle longest to make room"
                    );
                }
                slot
            }
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
        let span = tracing::info_span!("session", id, proto = protocol.name(), client = %peer);
        // The session frees its slot itself, before it logs its end: whoever sees that
        // line (a test, an operator) may connect again at once.
        tracker.spawn(
            async move {
                let policy = session::policy(&rt, protocol, peer, mode);
                match protocol {
                    Protocol::Smtp => {
                        let phase = SmtpLogin::new(policy);
                        session::run(rt, tcp, peer, mode, phase, token, slot).await;
                    }
                    Protocol::Imap => {
                        let phase = ImapLogin::new(policy);
                        session::run(rt, tcp, peer, mode, phase, token, slot).await;
                    }
                    Protocol::Pop3 => {
                        let phase = Pop3Login::new(policy);
                        session::run(rt, tcp, peer, mode, phase, token, slot).await;
                    }
                }
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests;
