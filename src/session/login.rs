//! The login phase of a session: drives the protocol's pure machine (`proto::*`) with the
//! client's bytes under the pre-auth deadline, performs its actions (replies, STARTTLS,
//! credential checks with the upstream login, the allow-listed SMTP start) and hands a
//! logged-in client to the relay.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connect::{login_upstream, Purpose, Upstream};
use super::early_end::{refuse_cross_protocol, timed_out};
use super::stream::ClientStream;
use super::{close, send, take, Outcome, Report, Seat, PRE_AUTH_READ};
use crate::auth::Verdict;
use crate::config::{Account, Delivery};
use crate::host::Host;
use crate::proto::{Action, Credentials, LoginOutcome, LoginPhase, Protocol};
use crate::runtime::Runtime;
use crate::upstream::pool::Refill;

/// What the login phase ended with.
pub(super) enum LoggedIn {
    /// Authenticated, upstream ready; the spare's refill waits for the session.
    Upstream(Arc<Account>, Box<Upstream>, Refill),
    /// SMTP client from an allow-listed address: the relay connects on MAIL.
    Unauthenticated(Arc<Account>),
    /// SMTP user with `delivery = "queue"`: checked locally only, no upstream login, so
    /// a printer can hand its scan over while the upstream is down (issue 12).
    Queued(Arc<Account>),
}

/// Who the client is and what the phase answers to, fixed for the session.
pub(super) struct Ctx<'a> {
    pub rt: &'a Runtime,
    pub peer: SocketAddr,
    pub host: Host,
    pub shutdown: &'a CancellationToken,
    pub seat: &'a dyn Seat,
}

/// One step's verdict: go on, or the phase is over (with a logged-in client, or not).
type Step = ControlFlow<Option<(ClientStream, LoggedIn)>>;

/// Runs the login phase to its end: `Some` with the client and what it logged in to, or
/// `None` when the session is over (the report says why).
pub(super) async fn login_phase<P: LoginPhase>(
    cx: &Ctx<'_>,
    mut client: ClientStream,
    buf: &mut BytesMut,
    phase: &mut P,
    report: &mut Report,
) -> Option<(ClientStream, LoggedIn)> {
    let client = &mut client;
    let io_timeout = cx.rt.config.limits.pre_auth_timeout;
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
        let step = match phase.advance(buf) {
            Action::NeedMore => read(cx, client, buf, phase, deadline, report).await,
            Action::Reply(bytes) => match send(client, &bytes, io_timeout, report).await {
                true => ControlFlow::Continue(()),
                false => stop(report, Outcome::Error),
            },
            Action::Close(bytes) => {
                let _ = send(client, &bytes, io_timeout, report).await;
                close(client).await;
                if report.outcome == Outcome::Ok
                    && report.auth_failures > 0
                    && report.user.is_none()
                {
                    report.outcome = Outcome::AuthFailed;
                }
                ControlFlow::Break(None)
            }
            Action::CrossProtocol(bytes) => {
                refuse_cross_protocol(cx.rt, client, buf, cx.peer, P::PROTOCOL, &bytes, report)
                    .await;
                ControlFlow::Break(None)
            }
            Action::StartTls(bytes) => starttls(cx, client, buf, phase, &bytes, report).await,
            Action::Login(creds) => login(cx, client, phase, creds, report).await,
            Action::Proceed => ControlFlow::Break(proceed(cx, client, report)),
        };
        if let ControlFlow::Break(done) = step {
            if done.is_none() {
                settle(phase, report);
            }
            return done;
        }
    }
}

/// A session that ends in the login phase after being refused (530) without a later
/// failure of its own ends as `Refused`, so the log never calls it a normal end.
fn settle<P: LoginPhase>(phase: &P, report: &mut Report) {
    let quiet_end = matches!(report.outcome, Outcome::Ok | Outcome::ClientClosed);
    if quiet_end && report.user.is_none() && phase.refused() {
        report.outcome = Outcome::Refused;
    }
}

/// Ends the phase with `outcome`.
fn stop(report: &mut Report, outcome: Outcome) -> Step {
    report.outcome = outcome;
    ControlFlow::Break(None)
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

/// Reads more client bytes before the deadline; ends the phase on EOF, the deadline, a
/// shutdown (or being shed to make room) or an error.
async fn read<P: LoginPhase>(
    cx: &Ctx<'_>,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    phase: &P,
    deadline: tokio::time::Instant,
    report: &mut Report,
) -> Step {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let before = buf.len();
    match read_more(client, buf, left, cx.shutdown).await {
        Read::Data => {
            cx.seat.active();
            report.from_client += (buf.len() - before) as u64;
            ControlFlow::Continue(())
        }
        Read::Eof if report.auth_failures > 0 => stop(report, Outcome::AuthFailed),
        Read::Eof => stop(report, Outcome::ClientClosed),
        Read::Timeout => {
            timed_out(client, phase, report).await;
            ControlFlow::Break(None)
        }
        Read::Shutdown => {
            let (reply, outcome) = match cx.seat.shed_reply() {
                Some(busy) => (busy.to_vec(), Outcome::Shed),
                None => (phase.shutdown_reply(), Outcome::Shutdown),
            };
            let _ = send(client, &reply, Duration::from_secs(1), report).await;
            stop(report, outcome)
        }
        Read::Error(e) => {
            debug!(error = %e, "client read failed");
            stop(report, Outcome::Error)
        }
    }
}

/// Answers STARTTLS and runs the handshake. Plaintext pipelined behind the command is
/// discarded unread (RFC 3207 §6, CVE-2011-0411).
async fn starttls<P: LoginPhase>(
    cx: &Ctx<'_>,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    phase: &mut P,
    reply: &[u8],
    report: &mut Report,
) -> Step {
    let io_timeout = cx.rt.config.limits.pre_auth_timeout;
    if !send(client, reply, io_timeout, report).await {
        return stop(report, Outcome::Error);
    }
    if !buf.is_empty() {
        warn!(
            bytes = buf.len(),
            "discarding plaintext sent after STARTTLS"
        );
        crate::secrets::wipe(&mut buf[..]);
        buf.clear();
    }
    match super::accept::handshake(cx.rt, take(client), cx.peer).await {
        Some(tls) => *client = tls,
        None => return stop(report, Outcome::TlsFailed),
    }
    report.tls = super::TlsUse::StartTls;
    phase.tls_started();
    ControlFlow::Continue(())
}

/// Checks the credentials, logs in upstream, and answers with the protocol's reply.
async fn login<P: LoginPhase>(
    cx: &Ctx<'_>,
    client: &mut ClientStream,
    phase: &mut P,
    creds: Credentials,
    report: &mut Report,
) -> Step {
    let (outcome, pending) = verify::<P>(cx, &creds, report).await;
    drop(creds);
    let succeeded = matches!(outcome, LoginOutcome::Success { .. });
    // A local refusal is noted as the client saw it; an upstream one `verify` noted as
    // the upstream said it.
    let local_refusal = matches!(
        outcome,
        LoginOutcome::BadCredentials | LoginOutcome::TooManyFailures
    );
    let io_timeout = cx.rt.config.limits.pre_auth_timeout;
    let reply = phase.login_result(outcome);
    if let (true, Action::Reply(bytes) | Action::Close(bytes)) = (local_refusal, &reply) {
        report.note_reply(bytes);
    }
    match reply {
        Action::Reply(bytes) => {
            if !send(client, &bytes, io_timeout, report).await {
                return stop(report, Outcome::Error);
            }
            if !succeeded {
                return ControlFlow::Continue(());
            }
            cx.seat.logged_in();
            report.outcome = Outcome::Ok;
            ControlFlow::Break(pending.map(|done| (take(client), done)))
        }
        Action::Close(bytes) => {
            let _ = send(client, &bytes, io_timeout, report).await;
            close(client).await;
            ControlFlow::Break(None)
        }
        _ => ControlFlow::Break(None),
    }
}

/// The local verdict on `creds` and, if accepted, the upstream login: what to tell the
/// protocol machine, and what the session goes on with.
async fn verify<P: LoginPhase>(
    cx: &Ctx<'_>,
    creds: &Credentials,
    report: &mut Report,
) -> (LoginOutcome, Option<LoggedIn>) {
    let rt = cx.rt;
    report.user = Some(creds.user.clone());
    match rt.auth.verify_from(cx.host, creds).await {
        Verdict::Accepted(account) => {
            report.account = Some(account.id.clone());
            let delivery = smtp_delivery::<P>(rt, &creds.user);
            if delivery == Some(Delivery::Queue) {
                let done = LoggedIn::Queued(account);
                return (LoginOutcome::Success { capabilities: None }, Some(done));
            }
            match login_upstream(rt, P::PROTOCOL, &account, Purpose::ClientLogin).await {
                Ok((up, refill)) => {
                    let capabilities = match &up {
                        Upstream::Imap(i) => i.capabilities.clone(),
                        _ => None,
                    };
                    let done = LoggedIn::Upstream(account, Box::new(up), refill);
                    (LoginOutcome::Success { capabilities }, Some(done))
                }
                Err(e) if delivery == Some(Delivery::Fallback) && !e.is_rejection() => {
                    // Fallback queues what the upstream cannot take right now: this
                    // session's messages, since it cannot even log in.
                    info!(account = %account.id, error = %e, "upstream unreachable at login; this fallback session queues");
                    let done = LoggedIn::Queued(account);
                    (LoginOutcome::Success { capabilities: None }, Some(done))
                }
                Err(e) => {
                    report.outcome = Outcome::UpstreamError;
                    report.note_error(&e.to_string());
                    let outcome = if e.is_rejection() {
                        LoginOutcome::UpstreamRejected
                    } else {
                        LoginOutcome::UpstreamUnavailable {
                            reason: e.client_text(),
                        }
                    };
                    (outcome, None)
                }
            }
        }
        Verdict::Rejected => {
            report.auth_failures += 1;
            rt.metrics.auth_failed(P::PROTOCOL);
            info!(user = %creds.user, client = %cx.peer, "local login failed");
            report.user = None;
            if report.auth_failures >= rt.config.limits.max_auth_failures {
                report.outcome = Outcome::AuthFailed;
                (LoginOutcome::TooManyFailures, None)
            } else {
                (LoginOutcome::BadCredentials, None)
            }
        }
        Verdict::Busy => {
            // Nothing was checked: a temporary failure, which clients retry.
            info!(client = %cx.peer, "local login deferred: too many password checks at once");
            report.user = None;
            let reason: String = "too many logins at once, try again shortly".into();
            report.note_error(&reason);
            (LoginOutcome::UpstreamUnavailable { reason }, None)
        }
        Verdict::LockedOut => {
            report.auth_failures += 1;
            rt.metrics.auth_failed(P::PROTOCOL);
            report.user = None;
            report.outcome = Outcome::AuthFailed;
            (LoginOutcome::TooManyFailures, None)
        }
    }
}

/// How an SMTP `user`'s messages are delivered (its own `delivery`, else `[smtp]
/// delivery`; generated users have none of their own); `None` for IMAP and POP3.
fn smtp_delivery<P: LoginPhase>(rt: &Runtime, user: &str) -> Option<Delivery> {
    let cfg = &rt.config;
    let u = cfg.users.iter().find(|u| u.name == user);
    (P::PROTOCOL == Protocol::Smtp).then(|| cfg.delivery_of(u))
}

/// An allow-listed SMTP client starts a transaction without AUTH: it sends as the
/// configured account.
fn proceed(
    cx: &Ctx<'_>,
    client: &mut ClientStream,
    report: &mut Report,
) -> Option<(ClientStream, LoggedIn)> {
    let cfg = &cx.rt.config;
    let account = cfg
        .smtp
        .as_ref()
        .and_then(|s| s.unauthenticated_account)
        .and_then(|i| cfg.accounts.get(i))
        .cloned()?;
    cx.seat.logged_in();
    report.account = Some(account.id.clone());
    Some((take(client), LoggedIn::Unauthenticated(account)))
}
