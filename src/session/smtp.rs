//! The SMTP transaction relay after login (RFC 5321 §3.3): MAIL (sender rewritten to the
//! account, as QQ requires), RCPT and DATA go to the upstream and its replies come back
//! byte for byte. DATA streams through in 64 KiB chunks; the client sees 250 only after
//! the upstream said 250, and a 4xx whenever the upstream fails mid-message. The upstream
//! connection is opened lazily (allow-listed clients) and reopened after a drop.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{upstream_login, Outcome, Purpose, Report, Upstream};
use crate::config::{Account, RewriteSender};
use crate::net::show;
use crate::proto::line::{Frame, LineFramer};
use crate::proto::smtp::command::{self, reply, Command, Extensions};
use crate::proto::smtp::data::DataScanner;
use crate::proto::smtp::header;
use crate::proto::smtp::MAX_ERRORS;
use crate::proto::Protocol;
use crate::runtime::Runtime;
use crate::upstream::smtp::{read_reply, Reply, ReplyError, SmtpUpstream};
use crate::upstream::UpstreamError;

use super::stream::ClientStream;

/// Bytes read from the client per DATA read.
const DATA_READ: usize = 64 * 1024;
/// Largest header block buffered for `rewrite_sender = "header"`; a larger one passes
/// unchanged.
const MAX_HEADER: usize = 256 * 1024;

/// Where the mail transaction is (RFC 5321 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tx {
    /// No transaction.
    Idle,
    /// MAIL accepted; `sender` is what the client asked for (for logs).
    Mail { sender: String },
    /// At least one RCPT accepted.
    Rcpt { sender: String, recipients: usize },
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
    account: Arc<Account>,
    up: Option<SmtpUpstream>,
    tx: Tx,
    errors: u32,
    /// Upstream logins made by this relay (reconnects).
    up_logins: u32,
    report: &'a mut Report,
    shutdown: &'a CancellationToken,
}

/// Runs the relay until QUIT, a timeout, or the client leaves.
pub async fn relay(
    rt: &Runtime,
    client: ClientStream,
    buf: BytesMut,
    account: Arc<Account>,
    up: Option<SmtpUpstream>,
    shutdown: &CancellationToken,
    report: &mut Report,
) {
    let mut r = Relay {
        rt,
        client,
        buf,
        framer: LineFramer::new(rt.config.limits.max_line_length),
        account,
        up,
        tx: Tx::Idle,
        errors: 0,
        up_logins: 0,
        report,
        shutdown,
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
                self.mail(path, params).await
            }
            Command::Rcpt { arg } => match &self.tx {
                Tx::Idle => self.error(reply::NEED_MAIL).await,
                _ => {
                    let mut cmd = b"RCPT TO:".to_vec();
                    cmd.extend_from_slice(arg);
                    cmd.extend_from_slice(b"\r\n");
                    match self.upstream_command(&cmd).await {
                        Some(r) => {
                            if r.is_positive() {
                                self.tx = match std::mem::replace(&mut self.tx, Tx::Idle) {
                                    Tx::Mail { sender } => Tx::Rcpt {
                                        sender,
                                        recipients: 1,
                                    },
                                    Tx::Rcpt { sender, recipients } => Tx::Rcpt {
                                        sender,
                                        recipients: recipients + 1,
                                    },
                                    Tx::Idle => Tx::Idle,
                                };
                            }
                            self.send(&r.raw).await
                        }
                        None => self.upstream_lost().await,
                    }
                }
            },
            Command::Data => match &self.tx {
                Tx::Idle => self.error(reply::NEED_MAIL).await,
                Tx::Mail { .. } => self.error(reply::NEED_RCPT).await,
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
                Err(e) => {
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
                Some(r) => {
                    if r.is_positive() {
                        self.tx = Tx::Mail { sender: show(path) };
                    }
                    return self.send(&r.raw).await;
                }
                None if !fresh && attempt == 0 => continue,
                None => break,
            }
        }
        self.upstream_lost().await
    }

    /// Streams the message (RFC 5321 §4.1.1.4). Never answers 250 on its own.
    async fn data(&mut self) -> bool {
        let Some(r) = self.upstream_command(b"DATA\r\n").await else {
            return self.upstream_lost().await;
        };
        if r.code != 354 {
            return self.send(&r.raw).await;
        }
        if !self.send(&r.raw).await {
            return false;
        }
        let rewrite_header =
            self.rt.config.smtp.as_ref().map(|s| s.rewrite_sender) == Some(RewriteSender::Header);
        let mut headers: Option<Vec<u8>> = rewrite_header.then(Vec::new);
        let mut scanner = DataScanner::new();
        let mut size = 0usize;
        let timeout = self.rt.config.limits.command_timeout;
        loop {
            if self.buf.is_empty() {
                self.buf.reserve(DATA_READ);
                let read = tokio::time::timeout(timeout, self.client.read_buf(&mut self.buf)).await;
                match read {
                    Ok(Ok(n)) if n > 0 => self.report.from_client += n as u64,
                    other => {
                        // The client left mid-message: drop the upstream without the final
                        // dot, so it discards the partial message.
                        self.up = None;
                        self.report.outcome = if other.is_err() {
                            Outcome::Timeout
                        } else {
                            Outcome::ClientClosed
                        };
                        if other.is_err() {
                            let text = format!(
                                "421 4.4.2 {} Error: timeout exceeded\r\n",
                                self.rt.config.hostname
                            );
                            self.send(text.as_bytes()).await;
                        }
                        return false;
                    }
                }
            }
            let scan = scanner.feed(&self.buf);
            if scan.smuggling.is_some() {
                // Some servers would end the message here and read the rest as
                // commands: never let them see it.
                self.up = None;
            }
            let n = scan.end.unwrap_or(self.buf.len());
            let chunk = self.buf.split_to(n);
            size += n;
            if !scanner.smuggled() && self.up.is_some() {
                let ok = match headers.as_mut() {
                    None => self.forward_upstream(&chunk).await,
                    Some(h) => {
                        h.extend_from_slice(&chunk);
                        match self.take_headers(h, scan.end.is_some()) {
                            Some(bytes) => {
                                headers = None;
                                self.forward_upstream(&bytes).await
                            }
                            None => true,
                        }
                    }
                };
                if !ok {
                    self.up = None;
                }
            }
            if scan.end.is_some() {
                break;
            }
        }
        let (sender, recipients) = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Rcpt { sender, recipients } => (sender, recipients),
            _ => (String::new(), 0),
        };
        if scanner.smuggled() {
            warn!(from = %sender, "message refused: ambiguous end-of-data sequence (SMTP smuggling)");
            return self.send(reply::SMUGGLING.as_bytes()).await;
        }
        let data_timeout = self.rt.config.limits.upstream_data_timeout;
        let verdict = match self.up.as_mut() {
            None => Err(None),
            Some(up) => read_reply(&mut up.conn, data_timeout).await.map_err(Some),
        };
        match verdict {
            Ok(r) => {
                let accepted = r.code == 250;
                if accepted {
                    self.report.messages += 1;
                    self.rt.metrics.message_relayed();
                }
                info!(
                    from = %sender,
                    recipients,
                    size,
                    reply = %show(&r.raw),
                    "message {}",
                    if accepted { "relayed" } else { "refused by upstream" }
                );
                self.send(&r.raw).await
            }
            Err(e) => {
                self.up = None;
                let timed_out = matches!(e, Some(ReplyError::Line(crate::net::LineError::Timeout)));
                warn!(from = %sender, size, error = ?e.map(|e| e.to_string()), "upstream failed during DATA; client told 451");
                let text = if timed_out {
                    reply::DATA_TIMEOUT
                } else {
                    reply::DATA_LOST
                };
                self.send(text.as_bytes()).await
            }
        }
    }

    /// With header rewriting: once the header block is complete (or the message ends, or
    /// it grows too large), returns the bytes to send.
    fn take_headers(&self, h: &mut Vec<u8>, message_ended: bool) -> Option<Vec<u8>> {
        let email = &self.account.email;
        if let Some(end) = header::header_end(h) {
            let body = h.split_off(end);
            let mut out = header::rewrite_from(h, email).unwrap_or_else(|| std::mem::take(h));
            out.extend_from_slice(&body);
            return Some(out);
        }
        if message_ended {
            // The whole message is header lines; keep the terminating ".\r\n" last.
            let cut = h.len().saturating_sub(3);
            let tail = h.split_off(cut);
            let mut out = header::rewrite_from(h, email).unwrap_or_else(|| std::mem::take(h));
            out.extend_from_slice(&tail);
            return Some(out);
        }
        if h.len() > MAX_HEADER {
            warn!("header block over {MAX_HEADER} bytes: From left unchanged");
            return Some(std::mem::take(h));
        }
        None
    }

    async fn forward_upstream(&mut self, bytes: &[u8]) -> bool {
        let timeout = self.rt.config.limits.upstream_timeout;
        match self.up.as_mut() {
            Some(up) => up.conn.send(bytes, timeout).await.is_ok(),
            None => false,
        }
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
        match upstream_login(self.rt, Protocol::Smtp, &self.account, purpose).await? {
            Upstream::Smtp(s) => {
                self.up = Some(s);
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
        self.send(b"451 4.4.2 Error: connection to the upstream server was lost; try again\r\n")
            .await
    }

    async fn reset_upstream_tx(&mut self) {
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

    async fn error(&mut self, text: &str) -> bool {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.send(reply::TOO_MANY_ERRORS.as_bytes()).await;
            return false;
        }
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
