//! The one session pipeline shared by SMTP, IMAP and POP3:
//! accept → greeting → login phase (optional STARTTLS) → local auth → upstream TLS and
//! injected login → relay. Each protocol contributes only its pure login-phase machine
//! (`proto::*`) and its upstream login (`upstream::*`); the relay is `relay::splice` for
//! IMAP and POP3 and the transaction relay `smtp::relay` for SMTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::Verdict;
use crate::config::Account;
use crate::host::Host;
use crate::proto::{Action, LoginOutcome, LoginPhase, Policy, Protocol, StartTlsMode};
use crate::runtime::Runtime;
use crate::upstream::pool::Refill;
use crate::upstream::{self, UpstreamError};

mod early_end;
pub mod relay;
pub mod smtp;
pub mod stream;

use early_end::{refuse_cross_protocol, timed_out};
use stream::ClientStream;

/// Largest read from a client before login.
const PRE_AUTH_READ: usize = 4096;

/// How a session ended, for the session log line and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Normal end (QUIT/LOGOUT, or the relay closed cleanly).
    Ok,
    /// The client went away before logging in.
    ClientClosed,
    /// Wrong local credentials (and the client gave up or was closed).
    AuthFailed,
    /// The upstream could not be reached or refused the login.
    UpstreamError,
    /// A timeout (pre-auth or idle).
    Timeout,
    /// The STARTTLS handshake failed.
    TlsFailed,
    /// A read or write error.
    Error,
    /// The proxy shut down.
    Shutdown,
    /// Still logging in when the sessions were full: closed to make room for a new one.
    Shed,
    /// The client sent HTTP (a cross-protocol attack) and was closed at once.
    CrossProtocol,
}

impl Outcome {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientClosed => "client_closed",
            Outcome::AuthFailed => "auth_failed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::TlsFailed => "tls_failed",
            Outcome::Error => "error",
            Outcome::Shutdown => "shutdown",
            Outcome::Shed => "shed",
            Outcome::CrossProtocol => "cross_protocol",
        }
    }
}

/// What a session did, logged as one line when it ends.
#[derive(Debug)]
pub struct Report {
    /// The local user who logged in, if any.
    pub user: Option<String>,
    /// The account used, if any.
    pub account: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Bytes from the client.
    pub from_client: u64,
    /// Bytes to the client.
    pub to_client: u64,
    /// SMTP messages accepted upstream.
    pub messages: u64,
    /// Failed local logins.
    pub auth_failures: u32,
}

impl Report {
    fn new() -> Report {
        Report {
            user: None,
            account: None,
            outcome: Outcome::Ok,
            from_client: 0,
            to_client: 0,
            messages: 0,
            auth_failures: 0,
        }
    }
}

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

/// A logged-in upstream of any protocol.
pub enum Upstream {
    /// SMTP, ready for MAIL.
    Smtp(upstream::smtp::SmtpUpstream),
    /// IMAP, authenticated state.
    Imap(upstream::imap::ImapUpstream),
    /// POP3, transaction state.
    Pop3(upstream::pop3::Pop3Upstream),
}

/// How an upstream login is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A client is logging in: a warm spare may serve it, and a burst of such logins
    /// keeps one ready.
    ClientLogin,
    /// Anything else (the SMTP relay reconnecting, `check`): a plain new connection.
    Plain,
}

/// Connects to the account's upstream for `protocol` and logs in with its code. A warm
/// spare's refill, if this login started one, begins at once.
pub async fn upstream_login(
    rt: &Runtime,
    protocol: Protocol,
    account: &Account,
    purpose: Purpose,
) -> Result<Upstream, UpstreamError> {
    login_upstream(rt, protocol, account, purpose)
        .await
        .map(|(up, _refill)| up)
}

/// [`upstream_login`] for a session: the caller holds the [`Refill`] while the session
/// runs, so that the next spare's handshake does not compete with this session.
pub(super) async fn login_upstream(
    rt: &Runtime,
    protocol: Protocol,
    account: &Account,
    purpose: Purpose,
) -> Result<(Upstream, Refill), UpstreamError> {
    let server = match protocol {
        Protocol::Smtp => account.smtp.as_ref(),
        Protocol::Imap => account.imap.as_ref(),
        Protocol::Pop3 => account.pop3.as_ref(),
    }
    .ok_or(UpstreamError::NotConfigured(protocol.name()))?;
    let tls = rt
        .upstream_tls(account)
        .ok_or(UpstreamError::NotConfigured(protocol.name()))?;
    let timeout = rt.config.limits.upstream_timeout;
    let started = Instant::now();
    let ctx = upstream::Ctx::new(account, server, timeout);
    let pool = rt.pool.as_ref().filter(|_| purpose == Purpose::ClientLogin);
    let key = (account.id.clone(), protocol);
    use upstream::pool::login_with;
    let result = match protocol {
        Protocol::Smtp => {
            let hostname = rt.config.hostname.as_str();
            login_with::<upstream::smtp::Dialog, _, _, _>(pool, key, server, tls, &ctx, |c| {
                upstream::smtp::login(c, &ctx, account, hostname)
            })
            .await
            .map(|(u, r)| (Upstream::Smtp(u), r))
        }
        Protocol::Imap => {
            login_with::<upstream::imap::Dialog, _, _, _>(pool, key, server, tls, &ctx, |c| {
                upstream::imap::login(c, &ctx, account)
            })
            .await
            .map(|(u, r)| (Upstream::Imap(u), r))
        }
        Protocol::Pop3 => {
            login_with::<upstream::pop3::Dialog, _, _, _>(pool, key, server, tls, &ctx, |c| {
                upstream::pop3::login(c, &ctx, account)
            })
            .await
            .map(|(u, r)| (Upstream::Pop3(u), r))
        }
    };
    let server_name = server.to_string();
    match &result {
        Ok((up, _)) => {
            if let Upstream::Smtp(s) = up {
                if let Some(size) = s.caps.size.filter(|&n| n > 0) {
                    rt.learn_smtp_size(account, size);
                }
            }
            rt.metrics
                .upstream_ok(protocol, &server_name, started.elapsed());
            debug!(account = %account.id, upstream = %server_name, "upstream login ok");
        }
        Err(e) => {
            rt.metrics.upstream_error(protocol, &server_name, e.kind());
            warn!(
                account = %account.id,
                email = %account.email,
                upstream = %server_name,
                error = %e,
                hint = e.hint().unwrap_or(""),
                "upstream login failed"
            );
        }
    }
    result
}

/// The login-phase policy for a client of `protocol` at `peer`.
pub fn policy(rt: &Runtime, protocol: Protocol, peer: SocketAddr) -> Policy {
    let cfg = &rt.config;
    let listener = match protocol {
        Protocol::Smtp => cfg.smtp.as_ref().map(|s| &s.listener),
        Protocol::Imap => cfg.imap.as_ref(),
        Protocol::Pop3 => cfg.pop3.as_ref(),
    };
    let starttls = match (listener.map(|l| l.starttls), &rt.acceptor) {
        (Some(mode), Some(_)) => mode,
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

enum Read {
    Data,
    Eof,
    Timeout,
    Shutdown,
    Error(std::io::Error),
}

async fn read_more(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Read {
    buf.reserve(PRE_AUTH_READ);
    tokio::select! {
        r = tokio::time::timeout(timeout, client.read_buf(buf)) => match r {
            Err(_) => Read::Timeout,
            Ok(Ok(0)) => Read::Eof,
            Ok(Ok(_)) => Read::Data,
            Ok(Err(e)) => Read::Error(e),
        },
        _ = shutdown.cancelled() => Read::Shutdown,
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

/// What the login phase ended with.
enum LoggedIn {
    /// Authenticated, upstream ready; the spare's refill waits for the session.
    Upstream(Arc<Account>, Box<Upstream>, Refill),
    /// SMTP client from an allow-listed address: the relay connects on MAIL.
    Unauthenticated(Arc<Account>),
}

/// Runs one client session to the end and logs it. `slot` (the server's session count
/// for this client) is dropped just before the end is logged, so that the line is seen
/// only once the session no longer counts against the limits.
pub async fn run<P: LoginPhase>(
    rt: Arc<Runtime>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut phase: P,
    shutdown: CancellationToken,
    slot: impl Seat,
) -> Report {
    let protocol = P::PROTOCOL;
    rt.metrics.session_started(protocol);
    let started = Instant::now();
    let mut report = Report::new();
    let host = Host::of_peer(peer.ip(), tcp.local_addr().ok().map(|a| a.ip()));
    let client = ClientStream::Plain(tcp);
    let mut buf = BytesMut::with_capacity(PRE_AUTH_READ);
    let logged_in = login_phase(
        &rt,
        client,
        &mut buf,
        (peer, host),
        &mut phase,
        (&shutdown, &slot),
        &mut report,
    )
    .await;
    if let Some((client, done)) = logged_in {
        let limits = &rt.config.limits;
        match done {
            // `_refill` lives until the relay is over (or SETTLE has passed).
            LoggedIn::Upstream(account, up, _refill) => match *up {
                Upstream::Imap(upstream::imap::ImapUpstream { conn, .. })
                | Upstream::Pop3(upstream::pop3::Pop3Upstream { conn }) => {
                    let (stream, leftover) = conn.into_parts();
                    let ended =
                        relay::splice(client, buf, stream, leftover, limits.idle_timeout, shutdown)
                            .await;
                    finish_splice(&mut report, ended);
                }
                Upstream::Smtp(up) => {
                    smtp::relay(&rt, client, buf, account, Some(up), &shutdown, &mut report).await;
                }
            },
            LoggedIn::Unauthenticated(account) => {
                smtp::relay(&rt, client, buf, account, None, &shutdown, &mut report).await;
            }
        }
    }
    rt.metrics.session_ended(
        protocol,
        report.outcome.label(),
        report.from_client,
        report.to_client,
    );
    drop(slot);
    info!(
        user = report.user.as_deref().unwrap_or("-"),
        account = report.account.as_deref().unwrap_or("-"),
        result = report.outcome.label(),
        messages = report.messages,
        bytes_in = report.from_client,
        bytes_out = report.to_client,
        auth_failures = report.auth_failures,
        duration_ms = started.elapsed().as_millis() as u64,
        "session end"
    );
    report
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

#[allow(clippy::too_many_arguments)]
async fn login_phase<P: LoginPhase>(
    rt: &Runtime,
    mut client: ClientStream,
    buf: &mut BytesMut,
    (peer, host): (SocketAddr, Host),
    phase: &mut P,
    (shutdown, seat): (&CancellationToken, &dyn Seat),
    report: &mut Report,
) -> Option<(ClientStream, LoggedIn)> {
    let client = &mut client;
    let limits = &rt.config.limits;
    let io_timeout = limits.pre_auth_timeout;
    if !send(client, &phase.greeting(), io_timeout, report).await {
        report.outcome = Outcome::ClientClosed;
        return None;
    }
    // The pre-auth deadline bounds the whole login phase, not each read, so that a
    // client sending one byte a minute (slowloris) is still closed in time.
    let deadline = tokio::time::Instant::now() + io_timeout;
    loop {
        // Checked on every turn, not only when a read is due: a read of bytes already
        // queued never waits, so a client that keeps a command always waiting (NOOP or
        // CAPA as fast as they are answered) would otherwise never meet the deadline.
        if tokio::time::Instant::now() >= deadline {
            timed_out(client, phase, report).await;
            return None;
        }
        match phase.advance(buf) {
            Action::NeedMore => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let before = buf.len();
                match read_more(client, buf, left, shutdown).await {
                    Read::Data => {
                        seat.active();
                        report.from_client += (buf.len() - before) as u64;
                    }
                    Read::Eof => {
                        report.outcome = if report.auth_failures > 0 {
                            Outcome::AuthFailed
                        } else {
                            Outcome::ClientClosed
                        };
                        return None;
                    }
                    Read::Timeout => {
                        timed_out(client, phase, report).await;
                        return None;
                    }
                    Read::Shutdown => {
                        let (reply, outcome) = match seat.shed_reply() {
                            Some(busy) => (busy.to_vec(), Outcome::Shed),
                            None => (phase.shutdown_reply(), Outcome::Shutdown),
                        };
                        let _ = send(client, &reply, Duration::from_secs(1), report).await;
                        report.outcome = outcome;
                        return None;
                    }
                    Read::Error(e) => {
                        debug!(error = %e, "client read failed");
                        report.outcome = Outcome::Error;
                        return None;
                    }
                }
            }
            Action::Reply(bytes) => {
                if !send(client, &bytes, io_timeout, report).await {
                    report.outcome = Outcome::Error;
                    return None;
                }
            }
            Action::Close(bytes) => {
                let _ = send(client, &bytes, io_timeout, report).await;
                close(client).await;
                if report.outcome == Outcome::Ok
                    && report.auth_failures > 0
                    && report.user.is_none()
                {
                    report.outcome = Outcome::AuthFailed;
                }
                return None;
            }
            Action::CrossProtocol(bytes) => {
                refuse_cross_protocol(rt, client, buf, peer, P::PROTOCOL, &bytes, report).await;
                return None;
            }
            Action::StartTls(bytes) => {
                if !send(client, &bytes, io_timeout, report).await {
                    report.outcome = Outcome::Error;
                    return None;
                }
                if !buf.is_empty() {
                    // RFC 3207 §6 / CVE-2011-0411: never act on plaintext pipelined
                    // behind STARTTLS.
                    warn!(
                        bytes = buf.len(),
                        "discarding plaintext sent after STARTTLS"
                    );
                    crate::secrets::wipe(&mut buf[..]);
                    buf.clear();
                }
                match start_tls(rt, take(client), io_timeout).await {
                    Some(tls) => *client = tls,
                    None => {
                        report.outcome = Outcome::TlsFailed;
                        return None;
                    }
                }
                phase.tls_started();
            }
            Action::Login(creds) => {
                let mut pending: Option<LoggedIn> = None;
                report.user = Some(creds.user.clone());
                let outcome = match rt.auth.verify_from(host, &creds).await {
                    Verdict::Accepted(account) => {
                        report.account = Some(account.id.clone());
                        match login_upstream(rt, P::PROTOCOL, &account, Purpose::ClientLogin).await
                        {
                            Ok((up, refill)) => {
                                let capabilities = match &up {
                                    Upstream::Imap(i) => i.capabilities.clone(),
                                    _ => None,
                                };
                                pending = Some(LoggedIn::Upstream(account, Box::new(up), refill));
                                LoginOutcome::Success { capabilities }
                            }
                            Err(e) => {
                                report.outcome = Outcome::UpstreamError;
                                if e.is_rejection() {
                                    LoginOutcome::UpstreamRejected
                                } else {
                                    LoginOutcome::UpstreamUnavailable {
                                        reason: e.client_text(),
                                    }
                                }
                            }
                        }
                    }
                    Verdict::Rejected => {
                        report.auth_failures += 1;
                        rt.metrics.auth_failed(P::PROTOCOL);
                        info!(user = %creds.user, client = %peer, "local login failed");
                        report.user = None;
                        if report.auth_failures >= limits.max_auth_failures {
                            report.outcome = Outcome::AuthFailed;
                            LoginOutcome::TooManyFailures
                        } else {
                            LoginOutcome::BadCredentials
                        }
                    }
                    Verdict::Busy => {
                        // Nothing was checked: a temporary failure, which clients retry.
                        info!(client = %peer, "local login deferred: too many password checks at once");
                        report.user = None;
                        LoginOutcome::UpstreamUnavailable {
                            reason: "too many logins at once, try again shortly".into(),
                        }
                    }
                    Verdict::LockedOut => {
                        report.auth_failures += 1;
                        rt.metrics.auth_failed(P::PROTOCOL);
                        report.user = None;
                        report.outcome = Outcome::AuthFailed;
                        LoginOutcome::TooManyFailures
                    }
                };
                drop(creds);
                let succeeded = matches!(outcome, LoginOutcome::Success { .. });
                let reply = phase.login_result(outcome);
                match reply {
                    Action::Reply(bytes) => {
                        if !send(client, &bytes, io_timeout, report).await {
                            report.outcome = Outcome::Error;
                            return None;
                        }
                        if succeeded {
                            seat.logged_in();
                            report.outcome = Outcome::Ok;
                            return pending.take().map(|done| (take(client), done));
                        }
                    }
                    Action::Close(bytes) => {
                        let _ = send(client, &bytes, io_timeout, report).await;
                        close(client).await;
                        return None;
                    }
                    _ => return None,
                }
            }
            Action::Proceed => {
                let account = rt
                    .config
                    .smtp
                    .as_ref()
                    .and_then(|s| s.unauthenticated_account)
                    .and_then(|i| rt.config.accounts.get(i))
                    .cloned();
                return match account {
                    Some(a) => {
                        seat.logged_in();
                        report.account = Some(a.id.clone());
                        Some((take(client), LoggedIn::Unauthenticated(a)))
                    }
                    None => None,
                };
            }
        }
    }
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

async fn start_tls(rt: &Runtime, client: ClientStream, timeout: Duration) -> Option<ClientStream> {
    let acceptor = rt.acceptor.clone()?;
    let ClientStream::Plain(tcp) = client else {
        return None;
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(ClientStream::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            info!(error = %e, "client STARTTLS handshake failed");
            None
        }
        Err(_) => {
            info!("client STARTTLS handshake timed out");
            None
        }
    }
}
