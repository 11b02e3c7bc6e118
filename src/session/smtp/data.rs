//! DATA in the SMTP relay (RFC 5321 §4.1.1.4): the message streams to the upstream in
//! 64 KiB chunks while the relay watches the upstream for an early reply. A server that
//! refuses mid-message (QQ's `550`, a `552` size limit) usually says so and closes; the
//! relay then stops forwarding, takes that reply (bounded in size and time), reads the
//! client's data to its end so the client's session stays in step (§4.1.1.4: the client
//! sends until `<CRLF>.<CRLF>` whatever happens), and answers with the server's 4xx/5xx byte
//! for byte. Only without a whole reply does the client get the proxy's own 451, and it
//! gets 250 only when the upstream said 250 after the end of data. The proxy refuses a
//! message itself (the upstream dropped without the final dot, the rest read and dropped)
//! for an ambiguous end of data (SMTP smuggling, 554 5.6.11) and, in header-rewrite
//! mode, for a header block too large to rewrite (552 5.3.4).

use std::borrow::Cow;

use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use super::super::Outcome;
pub(super) use super::sink::{store_chunk, Sink, Streamed};
pub(super) use super::watch::Interrupt;
use super::watch::{salvage_reply, send_watching, SALVAGE_WAIT};
use super::{Relay, Tx, DATA_READ};
use crate::config::RewriteSender;
use crate::net::{show, LineError};
use crate::proto::smtp::command::reply;
use crate::proto::smtp::data::DataScanner;
use crate::proto::smtp::header::{self, HeaderCollector, Headers};
use crate::upstream::smtp::{read_reply, Reply, ReplyError};

/// Once the upstream is gone mid-message, how much more of it is read and dropped (to
/// keep the client's session in step) when the provider's SIZE is unknown; past that
/// (or past SIZE and this much again) the client is answered and the session closed.
const DISCARD_MAX: u64 = 128 * 1024 * 1024;

/// Why the proxy itself refuses a message, whatever the upstream would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// An ambiguous end-of-data sequence (SMTP smuggling): some servers would end the
    /// message there and read the rest as commands.
    Smuggling,
    /// With `rewrite_sender = "header"`, a header block over [`header::MAX_HEADER`]: its
    /// From could not be rewritten, and must not pass as written.
    HeaderTooLarge,
    /// With `rewrite_sender = "header"`, a header block holding a bare CR: a reader that
    /// breaks lines there would see a From the rewrite did not.
    HeaderBareCr,
}

impl Refusal {
    /// The reply to the end of data.
    pub(super) fn reply(self) -> &'static str {
        match self {
            Refusal::Smuggling => reply::SMUGGLING,
            Refusal::HeaderTooLarge => header::HEADER_TOO_LARGE,
            Refusal::HeaderBareCr => header::HEADER_BARE_CR,
        }
    }

    /// Why, for the log.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::Smuggling => "ambiguous end-of-data sequence (SMTP smuggling)",
            Refusal::HeaderTooLarge => "header block too large to rewrite its From",
            Refusal::HeaderBareCr => "bare CR in the header block, whose From must be rewritten",
        }
    }
}

impl Relay<'_> {
    /// Streams the message (RFC 5321 §4.1.1.4). Never answers 250 on its own.
    pub(super) async fn data(&mut self) -> bool {
        let Some(r) = self.upstream_command(b"DATA\r\n").await else {
            return self.upstream_lost().await;
        };
        if r.code != 354 {
            return self.pass_on(&r).await;
        }
        if !self.send(&r.raw).await {
            return false;
        }
        let sink = match self.fallback_writer() {
            Some(w) => Sink::Both(Box::new(w)),
            None => Sink::Upstream,
        };
        match self.stream_message(sink).await {
            Ok(Streamed {
                refused: None,
                interrupted,
                size,
                sink: Sink::Both(w),
            }) if w.is_ok() => self.fallback_end(interrupted, size, *w).await,
            Ok(m) => self.end_of_data(m.refused, m.interrupted, m.size).await,
            Err(keep_going) => keep_going,
        }
    }

    /// Reads the message to its end through the smuggling scanner and (with
    /// `rewrite_sender = "header"`) the From rewrite, feeding `sink`: the one loop of the
    /// relay and of the queue. `Err(keep_going)` when the session ended or was answered.
    pub(super) async fn stream_message(&mut self, mut sink: Sink) -> Result<Streamed, bool> {
        let rewrite_header =
            self.rt.config.smtp.as_ref().map(|s| s.rewrite_sender) == Some(RewriteSender::Header);
        let mut headers = rewrite_header.then(|| HeaderCollector::new(header::MAX_HEADER));
        let mut scanner = DataScanner::new();
        let mut size = 0usize;
        // Set when the proxy refuses the message itself; nothing more goes upstream.
        let mut refused: Option<Refusal> = None;
        // Set when the upstream interrupted the message, with the reply it sent if whole.
        let mut interrupted: Option<(Interrupt, Option<Reply>)> = None;
        let discard_max = self
            .rt
            .smtp_size(&self.account)
            .map_or(DISCARD_MAX, |n| n.saturating_add(DISCARD_MAX / 16));
        let mut discarded = 0u64;
        loop {
            if self.sink_gone(&sink, refused) && discarded > discard_max {
                let lost = sink.lost_reply();
                return Err(self
                    .stop_discarding(refused, interrupted, discarded, lost)
                    .await);
            }
            if self.buf.is_empty() && !self.read_data().await {
                return Err(false);
            }
            let scan = scanner.feed(&self.buf);
            if scan.smuggling.is_some() {
                // Some servers would end the message here and read the rest as
                // commands: never let them see it.
                refused.get_or_insert(Refusal::Smuggling);
            }
            let n = scan.end.unwrap_or(self.buf.len());
            let chunk = self.buf.split_to(n);
            size += n;
            let ended = scan.end.is_some();
            let out = outgoing(
                &mut headers,
                &mut refused,
                &chunk,
                ended,
                &self.account.email,
            );
            if refused.is_some() {
                // Drop the upstream mid-message, without the final dot, so it discards
                // whatever it already has; the rest is read and dropped.
                self.up = None;
            }
            if self.sink_gone(&sink, refused) {
                discarded += n as u64;
            }
            // After an interruption `up` is gone: the rest of the message is read and
            // dropped, so the client's next command is read as one.
            match (out, &mut sink) {
                (Some(bytes), Sink::Upstream) if self.up.is_some() => {
                    if let Err(why) = self.forward_upstream(&bytes).await {
                        let salvaged = self.salvage().await;
                        interrupted = Some((why, salvaged));
                    }
                }
                (Some(bytes), Sink::Store(w)) => store_chunk(w, &bytes, ended),
                (Some(bytes), Sink::Both(w)) => {
                    store_chunk(w, &bytes, ended);
                    if self.up.is_some() {
                        if let Err(why) = self.forward_upstream(&bytes).await {
                            let salvaged = self.salvage().await;
                            interrupted = Some((why, salvaged));
                        }
                    }
                }
                _ => {}
            }
            if ended {
                break;
            }
        }
        Ok(Streamed {
            refused,
            interrupted,
            size,
            sink,
        })
    }

    /// Nothing more goes anywhere: the rest of the message is read and dropped.
    fn sink_gone(&self, sink: &Sink, refused: Option<Refusal>) -> bool {
        match sink {
            Sink::Upstream => self.up.is_none(),
            Sink::Store(w) => w.is_err() || refused.is_some(),
            Sink::Both(w) => refused.is_some() || (self.up.is_none() && w.is_err()),
        }
    }

    /// The client went on sending, past the bound, a message nobody will take: answers
    /// now (the proxy's refusal, else the upstream's, else 451) and ends the session,
    /// since whatever it sends next is still message text.
    async fn stop_discarding(
        &mut self,
        refused: Option<Refusal>,
        interrupted: Option<(Interrupt, Option<Reply>)>,
        discarded: u64,
        lost: &'static str,
    ) -> bool {
        let who = if refused.is_some() {
            "proxy"
        } else {
            "upstream"
        };
        warn!(
            discarded,
            "client kept sending a message the {who} refused; closing"
        );
        let text = match (refused, interrupted) {
            (Some(why), _) => why.reply().as_bytes().to_vec(),
            (None, Some((_, Some(r)))) => r.raw,
            _ => lost.as_bytes().to_vec(),
        };
        self.send(&text).await;
        false
    }

    /// Reads the next part of the message into the buffer; false when the client left or
    /// timed out (the upstream is then dropped without the final dot, so it discards the
    /// partial message).
    async fn read_data(&mut self) -> bool {
        self.buf.reserve(DATA_READ);
        let timeout = self.rt.config.limits.command_timeout;
        let read = tokio::time::timeout(timeout, self.client.read_buf(&mut self.buf)).await;
        if let Ok(Ok(n)) = read {
            if n > 0 {
                self.report.from_client += n as u64;
                return true;
            }
        }
        self.up = None;
        if read.is_err() {
            self.report.outcome = Outcome::Timeout;
            let text = format!(
                "421 4.4.2 {} Error: timeout exceeded\r\n",
                self.rt.config.hostname
            );
            self.send(text.as_bytes()).await;
        } else {
            self.report.outcome = Outcome::ClientClosed;
        }
        false
    }

    /// After the end of data: the proxy's own refusal, the upstream's early reply, or the
    /// upstream's verdict on the whole message.
    pub(super) async fn end_of_data(
        &mut self,
        refused: Option<Refusal>,
        interrupted: Option<(Interrupt, Option<Reply>)>,
        size: usize,
    ) -> bool {
        let (sender, recipients) = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Rcpt { sender, recipients } => (sender, recipients),
            _ => (String::new(), 0),
        };
        if let Some(why) = refused {
            warn!(from = %sender, size, "message refused: {}", why.reason());
            return self.send(why.reply().as_bytes()).await;
        }
        if let Some((why, salvaged)) = interrupted {
            return match salvaged {
                Some(r) => {
                    info!(
                        from = %sender,
                        recipients,
                        size,
                        reason = %why,
                        reply = %show(&r.raw),
                        "message refused by upstream during DATA"
                    );
                    self.pass_on(&r).await
                }
                None => {
                    warn!(from = %sender, size, error = %why, "upstream failed during DATA; client told 451");
                    self.send(reply::DATA_LOST.as_bytes()).await
                }
            };
        }
        self.upstream_verdict(&sender, recipients, size).await
    }

    /// The upstream's reply to the end of data (`Err(None)`: no upstream).
    pub(super) async fn read_verdict(&mut self) -> Result<Reply, Option<ReplyError>> {
        let data_timeout = self.rt.config.limits.upstream_data_timeout;
        match self.up.as_mut() {
            None => Err(None),
            Some(up) => read_reply(&mut up.conn, data_timeout).await.map_err(Some),
        }
    }

    /// Reads and passes on the upstream's reply to the end of data.
    async fn upstream_verdict(&mut self, sender: &str, recipients: usize, size: usize) -> bool {
        match self.read_verdict().await {
            Ok(r) => self.pass_verdict(sender, recipients, size, &r).await,
            Err(e) => {
                self.up = None;
                let timed_out = matches!(e, Some(ReplyError::Line(LineError::Timeout)));
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

    /// Passes the upstream's verdict on the whole message to the client, counting and
    /// logging it.
    pub(super) async fn pass_verdict(
        &mut self,
        sender: &str,
        recipients: usize,
        size: usize,
        r: &Reply,
    ) -> bool {
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
        if !(200..300).contains(&r.code) {
            // The refusal may have been sent early, before the end of the message, by a
            // server that then reads the rest as commands and answers them: its later
            // replies would be out of step with ours. A fresh connection costs one
            // login; a stale reply could be a 250 for the next message.
            self.up = None;
        }
        self.pass_on(r).await
    }

    async fn forward_upstream(&mut self, bytes: &[u8]) -> Result<(), Interrupt> {
        let timeout = self.rt.config.limits.upstream_timeout;
        match self.up.as_mut() {
            Some(up) => send_watching(&mut up.conn, bytes, timeout).await,
            None => Err(Interrupt::Closed),
        }
    }

    /// After the upstream interrupted DATA: the whole 4xx/5xx reply it already sent, if
    /// any. The connection is retired either way: its state is unknown, and a server that
    /// replied early may read the rest of the message as commands.
    async fn salvage(&mut self) -> Option<Reply> {
        let mut up = self.up.take()?;
        let got = salvage_reply(&mut up.conn, SALVAGE_WAIT).await;
        debug!(reply = ?got.as_ref().map(|r| show(&r.raw)), "reply taken from an interrupted upstream");
        got.filter(|r| (400..600).contains(&r.code))
    }
}

/// What of `chunk` goes upstream now: all of it; nothing once the message is refused;
/// with header rewriting, nothing until the header block is whole, then the rewritten
/// block and what followed it (the collector is dropped), or nothing ever if the block is
/// too large (the message is then refused).
fn outgoing<'c>(
    headers: &mut Option<HeaderCollector>,
    refused: &mut Option<Refusal>,
    chunk: &'c [u8],
    ended: bool,
    account: &str,
) -> Option<Cow<'c, [u8]>> {
    if refused.is_some() {
        return None;
    }
    let Some(h) = headers.as_mut() else {
        return Some(Cow::Borrowed(chunk));
    };
    match h.feed(chunk, ended, account) {
        Headers::NeedMore => None,
        Headers::Ready(bytes) => {
            *headers = None;
            Some(Cow::Owned(bytes))
        }
        Headers::TooLarge => {
            *headers = None;
            *refused = Some(Refusal::HeaderTooLarge);
            None
        }
        Headers::BareCr => {
            *headers = None;
            *refused = Some(Refusal::HeaderBareCr);
            None
        }
    }
}
