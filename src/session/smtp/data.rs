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

use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use super::super::Outcome;
pub(super) use super::pipeline::Refusal;
use super::pipeline::{Pipeline, Step};
pub(super) use super::sink::{Sink, Spool, Streamed};
pub(super) use super::watch::Interrupt;
use super::watch::{salvage_reply, send_watching, SALVAGE_WAIT};
use super::{Relay, DATA_READ};
use crate::config::RewriteSender;
use crate::net::{show, LineError};
use crate::proto::smtp::command::reply;
use crate::proto::smtp::framing::DataFraming;
use crate::proto::smtp::header::{self, HeaderCollector};
use crate::queue::classify::Stage;
use crate::upstream::smtp::{read_reply, Reply, ReplyError};

/// Once the upstream is gone mid-message, how much more of it is read and dropped (to
/// keep the client's session in step) when the provider's SIZE is unknown; past that
/// (or past SIZE and this much again) the client is answered and the session closed.
const DISCARD_MAX: u64 = 128 * 1024 * 1024;

impl Relay<'_> {
    /// Streams the message (RFC 5321 §4.1.1.4). Never answers 250 on its own.
    pub(super) async fn data(&mut self) -> bool {
        let r = self.upstream_command(b"DATA\r\n").await;
        let refused = r.as_ref().is_none_or(|r| r.code != 354);
        if refused && self.fallback_to_queue(Stage::Data, r.as_ref().ok_or(super::LOST)) {
            return self.queued_data().await;
        }
        let Some(r) = r else {
            return self.upstream_lost().await;
        };
        if r.code != 354 {
            return self.pass_on(&r).await;
        }
        if !self.send(&r.raw).await {
            return false;
        }
        let sink = match self.fallback_writer().await {
            Some(w) => Sink::Both(Box::new(Spool::new(w))),
            None => Sink::Upstream,
        };
        match self.stream_message(sink).await {
            Ok(Streamed {
                refused: None,
                interrupted,
                size,
                sink: Sink::Both(w),
            }) if w.is_ok() => self.fallback_end(interrupted, size, w.finish()).await,
            Ok(m) => self.end_of_data(m.refused, m.interrupted, m.size).await,
            Err(keep_going) => keep_going,
        }
    }

    /// Reads the message to its end through the [`Pipeline`] (end-of-data framing under
    /// the session's line-ending rule, the header editor), feeding `sink`: the one loop of
    /// the relay and of the queue. `Err(keep_going)` when the session ended or was
    /// answered.
    pub(super) async fn stream_message(&mut self, mut sink: Sink) -> Result<Streamed, bool> {
        let mut pipeline = Pipeline::new(self.framing(), self.header_editor());
        let mut size = 0usize;
        // Set when the upstream interrupted the message, with the reply it sent if whole.
        let mut interrupted: Option<(Interrupt, Option<Reply>)> = None;
        let discard_max = self
            .rt
            .smtp_size(&self.account)
            .map_or(DISCARD_MAX, |n| n.saturating_add(DISCARD_MAX / 16));
        let mut discarded = 0u64;
        loop {
            let refused = pipeline.refused();
            if self.sink_gone(&sink, refused) && discarded > discard_max {
                let lost = sink.lost_reply();
                return Err(self
                    .stop_discarding(refused, interrupted, discarded, lost)
                    .await);
            }
            if self.buf.is_empty() && !self.read_data().await {
                return Err(false);
            }
            let Step { taken, ended, out } = pipeline.take(&mut self.buf, &self.account.email);
            size += taken;
            if pipeline.refused().is_some() {
                // Drop the upstream mid-message, without the final dot, so it discards
                // whatever it already has; the rest is read and dropped.
                self.up = None;
            }
            if self.sink_gone(&sink, pipeline.refused()) {
                discarded += taken as u64;
            }
            if let Some(bytes) = out {
                if let Some(why) = self.hand_on(&mut sink, &bytes, ended).await {
                    interrupted = Some(why);
                }
            }
            if ended {
                break;
            }
        }
        Ok(Streamed {
            refused: pipeline.refused(),
            interrupted,
            size,
            sink,
        })
    }

    /// Hands `bytes` to `sink`; the upstream's interruption, if it interrupted. After one
    /// `up` is gone: the rest of the message is read and dropped, so the client's next
    /// command is read as one.
    async fn hand_on(
        &mut self,
        sink: &mut Sink,
        bytes: &[u8],
        ended: bool,
    ) -> Option<(Interrupt, Option<Reply>)> {
        let upstream = match sink {
            Sink::Upstream => true,
            Sink::Store(w) => {
                w.push(bytes, ended).await;
                false
            }
            Sink::Both(w) => {
                w.push(bytes, ended).await;
                true
            }
        };
        if !upstream || self.up.is_none() {
            return None;
        }
        let why = self.forward_upstream(bytes).await.err()?;
        let salvaged = self.salvage().await;
        Some((why, salvaged))
    }

    /// The DATA framing for this session's next message: the bare-LF rule when every
    /// command line so far ended in a bare LF (logged once per session), else the strict
    /// one.
    fn framing(&mut self) -> DataFraming {
        let framing = DataFraming::for_session(self.framer.endings());
        if framing.is_bare_lf() && !self.told_bare_lf {
            self.told_bare_lf = true;
            info!(
                "client ends its lines with a bare LF: its messages may end with a bare-LF dot \
                 line, and go upstream with CRLF line ends"
            );
        }
        framing
    }

    /// The header editor for this message, if any: the From rewrite of `rewrite_sender =
    /// "header"`, and the fields `add_missing_headers` adds (fresh values per message).
    fn header_editor(&self) -> Option<HeaderCollector> {
        let smtp = self.rt.config.smtp.as_ref();
        let rewrite = smtp.map(|s| s.rewrite_sender) == Some(RewriteSender::Header);
        let missing = smtp
            .is_none_or(|s| s.add_missing_headers)
            .then(|| super::stamp::missing(&self.rt.config.hostname));
        match (rewrite, missing) {
            (true, Some(m)) => Some(HeaderCollector::new(header::MAX_HEADER).also_adding(m)),
            (true, None) => Some(HeaderCollector::new(header::MAX_HEADER)),
            (false, Some(m)) => Some(HeaderCollector::adding_only(header::MAX_HEADER, m)),
            (false, None) => None,
        }
    }

    /// Nothing more goes anywhere: the rest of the message is read and dropped.
    fn sink_gone(&self, sink: &Sink, refused: Option<Refusal>) -> bool {
        match sink {
            Sink::Upstream => self.up.is_none(),
            Sink::Store(w) => !w.is_ok() || refused.is_some(),
            Sink::Both(w) => refused.is_some() || (self.up.is_none() && !w.is_ok()),
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
        let (sender, recipients) = self.tx.take();
        let envelope = (sender.as_str(), recipients.as_slice());
        if let Some(why) = refused {
            let text = why.reply();
            self.log_not_sent(why.reason(), envelope, size, text.as_bytes());
            return self.fail(text).await;
        }
        if let Some((why, salvaged)) = interrupted {
            return match salvaged {
                Some(r) => {
                    debug!(reason = %why, "the upstream refused before the end of the message");
                    self.log_message("refused by upstream during DATA", envelope, size, &r.raw);
                    self.pass_on(&r).await
                }
                None => {
                    let why = format!("the upstream failed during DATA: {why}");
                    self.log_not_sent(&why, envelope, size, reply::DATA_LOST.as_bytes());
                    self.fail(reply::DATA_LOST).await
                }
            };
        }
        self.upstream_verdict(envelope, size).await
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
    async fn upstream_verdict(&mut self, envelope: (&str, &[String]), size: usize) -> bool {
        match self.read_verdict().await {
            Ok(r) => self.pass_verdict(envelope, size, &r).await,
            Err(e) => {
                self.up = None;
                let timed_out = matches!(e, Some(ReplyError::Line(LineError::Timeout)));
                let text = if timed_out {
                    reply::DATA_TIMEOUT
                } else {
                    reply::DATA_LOST
                };
                let why = match e {
                    Some(e) => format!("no verdict from the upstream after the data: {e}"),
                    None => "no upstream connection for the data".to_string(),
                };
                self.log_not_sent(&why, envelope, size, text.as_bytes());
                self.fail(text).await
            }
        }
    }

    /// Passes the upstream's verdict on the whole message to the client, counting and
    /// logging it.
    pub(super) async fn pass_verdict(
        &mut self,
        envelope: (&str, &[String]),
        size: usize,
        r: &Reply,
    ) -> bool {
        let accepted = r.code == 250;
        if accepted {
            self.report.messages += 1;
            self.rt.metrics.message_relayed();
        }
        let what = if accepted {
            "relayed"
        } else {
            "refused by upstream"
        };
        self.log_message(what, envelope, size, &r.raw);
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
