//! The SMTP transaction relay after login (RFC 5321 §3.3): MAIL (sender rewritten to the
//! account, as QQ requires), RCPT and DATA go to the upstream and its replies come back
//! byte for byte. DATA streams through in 64 KiB chunks (the `data` module); the client
//! sees 250 only after the upstream said 250, the upstream's own 4xx/5xx when it refuses
//! mid-message, and the proxy's 451 when it fails without one. The upstream connection is
//! opened lazily (allow-listed clients) and reopened after a drop or a 421. With
//! `delivery = "queue"` the transaction is answered locally and stored (`queued`); with
//! `"fallback"` it is relayed with a queue copy kept on a temporary failure (`fallback`).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{login_upstream, Outcome, Purpose, Report, Upstream};
use crate::config::{Account, Delivery, RewriteSender};
use crate::net::show;
use crate::proto::line::{Frame, LineEndings, LineFramer};
use crate::proto::smtp::command::{self, reply, Command, Extensions};
use crate::proto::smtp::MAX_ERRORS;
use crate::proto::Protocol;
use crate::queue::classify::Stage;
use crate::runtime::Runtime;
use crate::upstream::pool::Refill;
use crate::upstream::smtp::{read_reply, Reply, ReplyError, SmtpUpstream};
use crate::upstream::UpstreamError;

use super::stream::ClientStream;
use verdict::At;

mod data;
mod fallback;
mod limit;
mod pipeline;
mod queued;
mod sink;
pub mod stamp;
mod verdict;
mod watch;

/// Why there is no upstream reply after `upstream_command` gave none (for logs).
const LOST: &str = "the upstream connection was lost";

/// Bytes read from the client per DATA read.
const DATA_READ: usize = 64 * 1024;

/// Where the mail transaction is (RFC 5321 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tx {
    /// No transaction.
    Idle,
    /// MAIL accepted; `sender` is what went upstream, after any rewrite (for logs).
    Mail { sender: String },
    /// At least one RCPT accepted: the addresses, in order (for logs).
    Rcpt {
        sender: String,
        recipients: Vec<String>,
    },
}

impl Tx {
    /// The sender of the transaction, if one was accepted.
    fn sender(&self) -> Option<&str> {
        match self {
            Tx::Idle => None,
            Tx::Mail { sender } | Tx::Rcpt { sender, .. } => Some(sender),
        }
    }

    /// The transaction with one more accepted recipient.
    fn with_recipient(self, addr: String) -> Tx {
        match self {
            Tx::Mail { sender } => Tx::Rcpt {
                sender,
                recipients: vec![addr],
            },
            Tx::Rcpt {
                sender,
                mut recipients,
            } => {
                recipients.push(addr);
                Tx::Rcpt { sender, recipients }
            }
            Tx::Idle => Tx::Idle,
        }
    }

    /// Ends the transaction, returning its sender and recipients (empty when none).
    fn take(&mut self) -> (String, Vec<String>) {
        match std::mem::replace(self, Tx::Idle) {
            Tx::Idle => (String::new(), Vec::new()),
            Tx::Mail { sender } => (sender, Vec::new()),
            Tx::Rcpt { sender, recipients } => (sender, recipients),
        }
    }
}

enum ClientRead {
    Line(BytesMut),
    TooLong,
    Gone(Outcome),
}

struct Relay<'a> {
    rt: &'a Runtime,
    client: ClientStream,
    buf: BytesMut,
    framer: LineFramer,
    /// The bare-LF DATA rule has been logged for this session.
    told_bare_lf: bool,
    account: Arc<Account>,
    up: Option<SmtpUpstream>,
    tx: Tx,
    errors: u32,
    /// Upstream logins made by this relay (reconnects).
    up_logins: u32,
    /// The warm spare's refill started by this relay's first login, held until it ends.
    _refill: Refill,
    report: &'a mut Report,
    shutdown: &'a CancellationToken,
    /// How messages are handed on.
    mode: Mode,
}

/// How a session hands its messages on (`[smtp] delivery`, `[[user]] delivery`).
enum Mode {
    /// Relayed; the client gets the upstream's verdict.
    Relay,
    /// `queue`: the transaction is answered locally and stored.
    Queue(queued::Queued),
    /// `fallback`: relayed, with a copy kept for the queue on a temporary failure.
    Fallback(fallback::Fallback),
}

impl Mode {
    fn queue(&mut self) -> Option<&mut queued::Queued> {
        match self {
            Mode::Queue(q) => Some(q),
            _ => None,
        }
    }

    fn fallback(&mut self) -> Option<&mut fallback::Fallback> {
        match self {
            Mode::Fallback(f) => Some(f),
            _ => None,
        }
    }

    fn is_queue(&self) -> bool {
        matches!(self, Mode::Queue(_))
    }
}

/// Runs the relay until QUIT, a timeout, or the client leaves, handing messages on as
/// `delivery` says (`Queue` also for a `fallback` login whose upstream was unreachable).
/// `(buf, endings)`: what the login phase left unread, and how its lines ended.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    rt: &Runtime,
    client: ClientStream,
    (buf, endings): (BytesMut, LineEndings),
    account: Arc<Account>,
    up: Option<SmtpUpstream>,
    delivery: Delivery,
    shutdown: &CancellationToken,
    report: &mut Report,
) {
    let intake = || rt.queue.get().cloned();
    let mode = match delivery {
        Delivery::Relay => Mode::Relay,
        Delivery::Queue => Mode::Queue(queued::Queued::new(intake())),
        Delivery::Fallback => Mode::Fallback(fallback::Fallback::new(intake())),
    };
    let mut r = Relay {
        rt,
        client,
        buf,
        framer: LineFramer::new(rt.config.limits.max_line_length).with_endings(endings),
        told_bare_lf: false,
        account,
        up,
        tx: Tx::Idle,
        errors: 0,
        up_logins: 0,
        _refill: Refill::none(),
        report,
        shutdown,
        mode,
    };
    r.run().await;
}

impl Relay<'_> {
    async fn run(&mut self) {
        loop {
            if self.tx == Tx::Idle && self.shutdown.is_cancelled() {
                self.send(reply::SHUTDOWN.as_bytes()).await;
                self.report.outcome = Outcome::Shutdown;
                break;
            }
            let mut line = match self.next_line().await {
                ClientRead::Line(l) => l,
                ClientRead::TooLong => {
                    if !self.error(reply::TOO_LONG).await {
                        break;
                    }
                    continue;
                }
                ClientRead::Gone(outcome) => {
                    self.report.outcome = outcome;
                    break;
                }
            };
            let keep_going = self.command(&line).await;
            crate::secrets::wipe(&mut line);
            if !keep_going {
                break;
            }
        }
        if let Some(up) = self.up.as_mut() {
            // QQ may reset the connection on QUIT; a message already accepted is sent anyway.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                up.conn.send(b"QUIT\r\n", std::time::Duration::from_secs(2)),
            )
            .await;
        }
        super::close(&mut self.client).await;
    }

    /// Handles one command; false ends the session.
    async fn command(&mut self, line: &[u8]) -> bool {
        match command::parse(line) {
            Command::Ehlo(client) => {
                self.reset_upstream_tx().await;
                let ext = Extensions {
                    starttls: false,
                    auth: true,
                    size: self.rt.smtp_size(&self.account),
                };
                let text = command::ehlo_reply(&self.rt.config.hostname, client, &ext);
                self.send(&text).await
            }
            Command::Helo(_) => {
                self.reset_upstream_tx().await;
                let text = format!("250 {}\r\n", self.rt.config.hostname);
                self.send(text.as_bytes()).await
            }
            Command::StartTls => {
                self.error("503 5.5.1 Error: STARTTLS is not possible after authentication\r\n")
                    .await
            }
            Command::Auth { .. } => self.error(reply::AUTH_AGAIN).await,
            Command::Mail { path, params } => {
                if self.tx != Tx::Idle {
                    return self.error(reply::NESTED_MAIL).await;
                }
                if self.mode.is_queue() {
                    return self.queued_mail(path, params).await;
                }
                self.mail(path, params).await
            }
            Command::Rcpt { arg } => match &self.tx {
                Tx::Idle => self.error(reply::NEED_MAIL).await,
                _ if !self.may_mail(arg) => self.refuse_recipient(arg).await,
                _ if self.mode.is_queue() => self.queued_rcpt(arg).await,
                _ => self.rcpt(arg).await,
            },
            Command::Data => match &self.tx {
                Tx::Idle => self.error(reply::NEED_MAIL).await,
                Tx::Mail { .. } => self.error(reply::NEED_RCPT).await,
                Tx::Rcpt { .. } if self.mode.is_queue() => self.queued_data().await,
                Tx::Rcpt { .. } => self.data().await,
            },
            Command::Rset => {
                self.reset_upstream_tx().await;
                self.send(reply::OK.as_bytes()).await
            }
            Command::Noop => self.send(reply::OK.as_bytes()).await,
            Command::Vrfy => self.send(reply::VRFY.as_bytes()).await,
            Command::Help => self.send(reply::HELP.as_bytes()).await,
            Command::Quit => {
                self.send(reply::BYE.as_bytes()).await;
                false
            }
            Command::Bdat => self.error(reply::NOT_IMPLEMENTED).await,
            Command::BadSyntax(text) => self.error(text).await,
            Command::Unknown => self.error(reply::UNKNOWN).await,
            Command::Http => self.cross_protocol().await,
        }
    }

    async fn mail(&mut self, path: &[u8], params: &[u8]) -> bool {
        let email = self.account.email.clone();
        let sender: &[u8] = match self.rt.config.smtp.as_ref().map(|s| s.rewrite_sender) {
            Some(RewriteSender::Off) => path,
            _ => email.as_bytes(),
        };
        if sender != path {
            debug!(original = %show(path), sender = %email, "envelope sender rewritten");
        }
        let cmd = command::mail_from(sender, params);
        // A kept-open upstream may have timed out between transactions: retry once on a
        // fresh connection before giving up.
        for attempt in 0..2 {
            let fresh = match self.ensure_upstream().await {
                Ok(fresh) => fresh,
                // The upstream cannot be reached now: a temporary failure, so in fallback
                // mode this session's mail goes into the queue (issue 12).
                Err(e)
                    if !e.is_rejection()
                        && self.fallback_to_queue(Stage::Mail, Err(&e.to_string())) =>
                {
                    return self.queued_mail(path, params).await;
                }
                Err(e) => {
                    self.report.note_error(&e.to_string());
                    let text = if e.is_rejection() {
                        "451 4.7.0 upstream rejected the stored authorization code; message not sent\r\n"
                            .to_string()
                    } else {
                        format!(
                            "451 4.4.1 {}\r\n",
                            crate::proto::smtp::one_line(&e.client_text())
                        )
                    };
                    return self.send(text.as_bytes()).await;
                }
            };
            match self.upstream_command(&cmd).await {
                // An upstream that timed the idle connection out answers the next command
                // with 421 (RFC 5321 §3.8): reconnect once instead of failing the client.
                Some(r) if r.code == 421 && !fresh && attempt == 0 => {
                    debug!("upstream closed the idle connection (421); reconnecting");
                    self.up = None;
                    continue;
                }
                Some(r) if self.fallback_to_queue(Stage::Mail, Ok(&r)) => {
                    return self.queued_mail(path, params).await;
                }
                Some(r) => {
                    if r.is_positive() {
                        self.tx = Tx::Mail {
                            sender: show(sender),
                        };
                        let sent = String::from_utf8_lossy(sender).into_owned();
                        if let Some(f) = self.mode.fallback() {
                            f.mail(sent, path.is_empty());
                        }
                    } else {
                        self.log_refused(At::Mail, &show(sender), &r.raw);
                    }
                    return self.pass_on(&r).await;
                }
                None if !fresh && attempt == 0 => continue,
                None => break,
            }
        }
        if self.fallback_to_queue(Stage::Mail, Err(LOST)) {
            return self.queued_mail(path, params).await;
        }
        self.upstream_lost().await
    }

    /// RCPT relayed to the upstream. In fallback mode a temporary refusal (or a drop)
    /// turns the transaction into a queued one (see `fallback`).
    async fn rcpt(&mut self, arg: &[u8]) -> bool {
        let mut cmd = b"RCPT TO:".to_vec();
        cmd.extend_from_slice(arg);
        cmd.extend_from_slice(b"\r\n");
        let r = self.upstream_command(&cmd).await;
        if self.fallback_to_queue(Stage::Rcpt, r.as_ref().ok_or(LOST)) {
            return self.queued_rcpt(arg).await;
        }
        let Some(r) = r else {
            return self.upstream_lost().await;
        };
        let addr = show(queued::address(arg).unwrap_or(arg));
        if r.is_positive() {
            if let Some(f) = self.mode.fallback() {
                f.rcpt(arg);
            }
            self.tx = std::mem::replace(&mut self.tx, Tx::Idle).with_recipient(addr);
        } else {
            self.log_refused(At::Rcpt, &addr, &r.raw);
        }
        self.pass_on(&r).await
    }

    /// Opens and logs into the upstream if needed; true when the connection is new.
    async fn ensure_upstream(&mut self) -> Result<bool, UpstreamError> {
        if self.up.is_some() {
            return Ok(false);
        }
        // A reconnect inside a session is not a burst of client logins: no warm spare.
        let purpose = if self.report.user.is_some() || self.up_logins > 0 {
            Purpose::Plain
        } else {
            Purpose::ClientLogin
        };
        self.up_logins += 1;
        match login_upstream(self.rt, Protocol::Smtp, &self.account, purpose).await? {
            (Upstream::Smtp(s), refill) => {
                self.up = Some(s);
                // An allow-listed device's first MAIL is its login: hold the warm
                // spare's refill while the relay runs, as the login phase does.
                self._refill = refill;
                Ok(true)
            }
            _ => Err(UpstreamError::NotConfigured("smtp")),
        }
    }

    /// Sends a command upstream and reads the reply; `None` (and the connection dropped)
    /// when the upstream fails.
    async fn upstream_command(&mut self, cmd: &[u8]) -> Option<Reply> {
        let timeout = self.rt.config.limits.upstream_timeout;
        let up = self.up.as_mut()?;
        if !up.conn.buffer().is_empty() {
            // Bytes nobody asked for (we never pipeline upstream): the replies are out
            // of step with the commands, so none of them can be trusted.
            debug!("unsolicited bytes from the upstream; dropping the connection");
            self.up = None;
            return None;
        }
        let result = match up.conn.send(cmd, timeout).await {
            Ok(()) => read_reply(&mut up.conn, timeout).await,
            Err(e) => Err(ReplyError::Line(e)),
        };
        match result {
            // 421: the server is closing the connection (RFC 5321 §3.8); relay the reply
            // but do not use the connection again.
            Ok(r) if r.code == 421 => {
                self.up = None;
                Some(r)
            }
            Ok(r) => Some(r),
            Err(e) => {
                debug!(error = %e, "upstream command failed");
                self.up = None;
                None
            }
        }
    }

    async fn upstream_lost(&mut self) -> bool {
        self.tx = Tx::Idle;
        warn!(account = %self.account.id, "upstream SMTP connection lost; client told 451");
        self.fail("451 4.4.2 Error: connection to the upstream server was lost; try again\r\n")
            .await
    }

    async fn reset_upstream_tx(&mut self) {
        self.queued_reset();
        if self.tx != Tx::Idle && self.up.is_some() {
            let _ = self.upstream_command(b"RSET\r\n").await;
        }
        self.tx = Tx::Idle;
    }

    async fn next_line(&mut self) -> ClientRead {
        let timeout = self.rt.config.limits.command_timeout;
        loop {
            match self.framer.next_frame(&mut self.buf) {
                Frame::Line(l) => return ClientRead::Line(l),
                Frame::TooLong => return ClientRead::TooLong,
                Frame::NeedMore => {}
            }
            self.buf.reserve(4096);
            let idle = self.tx == Tx::Idle;
            let read = tokio::select! {
                r = tokio::time::timeout(timeout, self.client.read_buf(&mut self.buf)) => r,
                _ = self.shutdown.cancelled(), if idle => {
                    self.send(reply::SHUTDOWN.as_bytes()).await;
                    return ClientRead::Gone(Outcome::Shutdown);
                }
            };
            match read {
                Ok(Ok(0)) => return ClientRead::Gone(Outcome::Ok),
                Ok(Ok(n)) => self.report.from_client += n as u64,
                Ok(Err(_)) => return ClientRead::Gone(Outcome::Error),
                Err(_) => {
                    let text = format!(
                        "421 4.4.2 {} Error: timeout exceeded\r\n",
                        self.rt.config.hostname
                    );
                    self.send(text.as_bytes()).await;
                    return ClientRead::Gone(Outcome::Timeout);
                }
            }
        }
    }

    /// An HTTP line after MAIL from an allow-listed address: as in the login phase
    /// (`session::refuse_cross_protocol`), nothing more is read; one reply, then the
    /// session ends. The session's span carries the client's address.
    async fn cross_protocol(&mut self) -> bool {
        crate::secrets::wipe(&mut self.buf[..]);
        self.buf.clear();
        warn!(
            protocol = "smtp",
            "HTTP request on a mail port refused and the connection closed: a web page may be \
             driving a browser against this gateway (cross-protocol attack)"
        );
        self.rt.metrics.cross_protocol(Protocol::Smtp);
        self.report.outcome = Outcome::CrossProtocol;
        self.send(reply::HTTP_REFUSED.as_bytes()).await;
        false
    }

    async fn error(&mut self, text: &str) -> bool {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.send(reply::TOO_MANY_ERRORS.as_bytes()).await;
            return false;
        }
        self.send(text.as_bytes()).await
    }

    /// Passes an upstream reply on, byte for byte; false (end the session) after a 421,
    /// which announces that the channel is being closed (RFC 5321 §3.8): the client must
    /// not be left talking to a session whose upstream has gone.
    async fn pass_on(&mut self, r: &Reply) -> bool {
        self.send(&r.raw).await && r.code != 421
    }

    /// Sends the proxy's own refusal of a message (the upstream lost, the queue unable to
    /// store it), noting it as the session's error.
    async fn fail(&mut self, text: &str) -> bool {
        self.report.note_reply(text.as_bytes());
        self.send(text.as_bytes()).await
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.report.to_client += bytes.len() as u64;
        let timeout = self.rt.config.limits.command_timeout;
        let client = &mut self.client;
        let write = async {
            client.write_all(bytes).await?;
            client.flush().await
        };
        matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
    }
}
