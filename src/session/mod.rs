//! The one session pipeline shared by SMTP, IMAP and POP3:
//! accept → greeting → login phase (optional STARTTLS) → local auth → upstream TLS and
//! injected login → relay. Each protocol contributes only its pure login-phase machine
//! (`proto::*`) and its upstream login (`upstream::*`); the relay is `relay::splice` for
//! IMAP and POP3 and the transaction relay `smtp::relay` for SMTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::{Delivery, ListenMode};
use crate::host::Host;
use crate::proto::{LoginPhase, Policy, Protocol, StartTlsMode};
use crate::runtime::Runtime;
use crate::upstream;
use crate::upstream::pool::Refill;

mod accept;
mod connect;
mod early_end;
mod login;
pub mod queue;
pub mod relay;
mod report;
pub mod smtp;
pub mod stream;

pub(crate) use connect::login_upstream;
pub use connect::{upstream_login, Purpose, Upstream};
use login::{login_phase, LoggedIn};
pub use report::{Outcome, Report, TlsUse};
use stream::ClientStream;

/// Largest read from a client before login.
const PRE_AUTH_READ: usize = 4096;

/// A session's place in the server's session table, as the pipeline reports to it: the
/// table sheds the pre-login session idle longest when it is full (see `server`).
pub trait Seat: Send + Sync {
    /// The client sent bytes before logging in.
    fn active(&self);
    /// The client logged in (or, allow-listed, began to send mail): the session no longer
    /// counts as a pre-login one and is never shed.
    fn logged_in(&self);
    /// When the table shed this session (its shutdown token was cancelled for that): the
    /// reply to send before closing.
    fn shed_reply(&self) -> Option<&'static [u8]>;
}

/// The login-phase policy for a client of `protocol` at `peer`.
pub fn policy(rt: &Runtime, protocol: Protocol, peer: SocketAddr, mode: ListenMode) -> Policy {
    let cfg = &rt.config;
    let listener = match protocol {
        Protocol::Smtp => cfg.smtp.as_ref().map(|s| &s.listener),
        Protocol::Imap => cfg.imap.as_ref(),
        Protocol::Pop3 => cfg.pop3.as_ref(),
    };
    // On a tls:// listener the session is encrypted before the greeting: STARTTLS is
    // neither advertised nor accepted (RFC 8314 §3.3).
    let starttls = match (listener.map(|l| l.starttls), &rt.acceptor, mode) {
        (Some(starttls), Some(_), ListenMode::Plain | ListenMode::Auto) => starttls,
        _ => StartTlsMode::Off,
    };
    let smtp = cfg.smtp.as_ref();
    let allow_unauthenticated = protocol == Protocol::Smtp
        && smtp.is_some_and(|s| {
            s.allow_unauthenticated
                .iter()
                .any(|n| n.contains(&peer.ip()))
        });
    let size_account = smtp
        .and_then(|s| s.unauthenticated_account)
        .and_then(|i| cfg.accounts.get(i))
        .or_else(|| cfg.accounts.first());
    Policy {
        starttls,
        max_line: cfg.limits.max_line_length,
        max_literal: cfg.limits.max_literal_size,
        hostname: cfg.hostname.clone(),
        allow_unauthenticated,
        smtp_size: size_account.and_then(|a| rt.smtp_size(a)),
    }
}

async fn send(
    client: &mut ClientStream,
    bytes: &[u8],
    timeout: Duration,
    report: &mut Report,
) -> bool {
    report.to_client += bytes.len() as u64;
    let write = async {
        client.write_all(bytes).await?;
        client.flush().await
    };
    matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
}

/// Runs one client session to the end and logs it. `slot` (the server's session count
/// for this client) is dropped just before the end is logged, so that the line is seen
/// only once the session no longer counts against the limits.
pub async fn run<P: LoginPhase>(
    rt: Arc<Runtime>,
    tcp: TcpStream,
    peer: SocketAddr,
    mode: ListenMode,
    mut phase: P,
    shutdown: CancellationToken,
    slot: impl Seat,
) -> Report {
    let protocol = P::PROTOCOL;
    rt.metrics.session_started(protocol);
    let started = Instant::now();
    let mut report = Report::new();
    let host = Host::of_peer(peer.ip(), tcp.local_addr().ok().map(|a| a.ip()));
    let Some(client) = accept::open(&rt, tcp, peer, mode, &mut phase, &mut report).await else {
        report.outcome = Outcome::TlsFailed;
        return end(&rt, (protocol, peer, host), started, report, slot);
    };
    let mut buf = BytesMut::with_capacity(PRE_AUTH_READ);
    let cx = login::Ctx {
        rt: &rt,
        peer,
        host,
        shutdown: &shutdown,
        seat: &slot,
    };
    let logged_in = login_phase(&cx, client, &mut buf, &mut phase, &mut report).await;
    if let Some((client, done)) = logged_in {
        let endings = phase.line_endings();
        let limits = &rt.config.limits;
        // The SMTP sessions' account, upstream and delivery mode; IMAP and POP3 splice.
        // `_refill` lives until the relay is over (or SETTLE has passed).
        let (account, up, delivery, _refill) = match done {
            LoggedIn::Upstream(account, up, refill) => match *up {
                Upstream::Imap(upstream::imap::ImapUpstream { conn, .. })
                | Upstream::Pop3(upstream::pop3::Pop3Upstream { conn }) => {
                    let (stream, leftover) = conn.into_parts();
                    let ended =
                        relay::splice(client, buf, stream, leftover, limits.idle_timeout, shutdown)
                            .await;
                    finish_splice(&mut report, ended);
                    return end(&rt, (protocol, peer, host), started, report, slot);
                }
                // Relay, or fallback (a queue login never reaches the upstream here).
                Upstream::Smtp(up) => match delivery_of(&rt, &report) {
                    Delivery::Fallback => (account, Some(up), Delivery::Fallback, refill),
                    _ => (account, Some(up), Delivery::Relay, refill),
                },
            },
            LoggedIn::Unauthenticated(account) => {
                let delivery = rt.config.delivery_of(None);
                (account, None, delivery, Refill::none())
            }
            LoggedIn::Queued(account) => (account, None, Delivery::Queue, Refill::none()),
        };
        smtp::relay(
            &rt,
            client,
            (buf, endings),
            account,
            up,
            delivery,
            &shutdown,
            &mut report,
        )
        .await;
    }
    end(&rt, (protocol, peer, host), started, report, slot)
}

/// Counts the session's end, frees its slot, then logs it (so whoever sees the line may
/// connect again at once) and records it for the status page.
fn end(
    rt: &Runtime,
    (protocol, peer, host): (Protocol, SocketAddr, Host),
    started: Instant,
    report: Report,
    slot: impl Seat,
) -> Report {
    rt.metrics.session_ended(
        protocol,
        report.outcome.label(),
        report.from_client,
        report.to_client,
    );
    drop(slot);
    macro_rules! session_end {
        ($level:expr) => {
            tracing::event!(
                $level,
                user = report.user.as_deref().unwrap_or("-"),
                account = report.account.as_deref().unwrap_or("-"),
                result = report.outcome.label(),
                messages = report.messages,
                bytes_in = report.from_client,
                bytes_out = report.to_client,
                auth_failures = report.auth_failures,
                tls = report.tls.label(),
                duration_ms = started.elapsed().as_millis() as u64,
                "session end"
            )
        };
    }
    // A health probe (Docker's HEALTHCHECK every 30 s, a monitor) would otherwise fill
    // the log with a line per probe.
    if report.is_probe() {
        session_end!(tracing::Level::DEBUG);
    } else {
        session_end!(tracing::Level::INFO);
    }
    rt.activity
        .session_ended(protocol, peer.ip(), host, &report);
    report
}

/// The delivery mode of the session's local user (`[[user]] delivery`, else `[smtp]
/// delivery`).
fn delivery_of(rt: &Runtime, report: &Report) -> Delivery {
    let user = report
        .user
        .as_deref()
        .and_then(|n| rt.config.users.iter().find(|u| u.name == n));
    rt.config.delivery_of(user)
}

fn finish_splice(report: &mut Report, (end, moved): (relay::SpliceEnd, relay::Moved)) {
    report.from_client += moved.up;
    report.to_client += moved.down;
    report.outcome = match end {
        relay::SpliceEnd::Closed => Outcome::Ok,
        relay::SpliceEnd::Idle => Outcome::Timeout,
        relay::SpliceEnd::Shutdown => Outcome::Shutdown,
        // Many servers (Dovecot, QQ) close after LOGOUT/QUIT without a TLS close_notify;
        // that is an ordinary end, not an error.
        relay::SpliceEnd::Error(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Outcome::Ok,
        relay::SpliceEnd::Error(e) => {
            debug!(error = %e, "relay ended with an error");
            Outcome::Error
        }
    };
}

/// Closes the client, bounded: a TLS close_notify to a peer that stopped reading must not
/// hold the session (and its slot) for ever.
pub(crate) async fn close(client: &mut ClientStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
}

/// Moves the stream out, leaving a closed placeholder (used only on the way out).
fn take(client: &mut ClientStream) -> ClientStream {
    std::mem::replace(client, ClientStream::Closed)
}
