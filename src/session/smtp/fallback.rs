//! `delivery = "fallback"` in the SMTP relay (issue 12): the transaction is relayed as
//! in `relay` mode, and the message is copied into a queue writer while it streams (no
//! fsync). The upstream's 250 discards the copy; a permanent refusal is passed to the
//! client unchanged, as today; a temporary failure (a drop or timeout mid-message, a
//! 4xx or 421, QQ's "frequency limited" 550s, no reply to the final dot) makes the copy
//! durable and the client gets `250 2.0.0 Ok: queued as ID`: the client hears QQ's
//! real verdict whenever QQ can give one, and never loses what QQ could not take now.
//! The verdict goes through the queue's one table, [`classify`].

use tracing::{info, warn};

use super::data::Interrupt;
use super::queued::{address, Queued};
use super::{Mode, Relay, Tx};
use crate::net::show;
use crate::queue::classify::{classify, Class, Outcome, Stage};
use crate::queue::deliver::Intake;
use crate::queue::store::{NewMessage, StoreError, Writer};
use crate::upstream::smtp::Reply;

/// The envelope the upstream accepted, kept for the copy.
pub(super) struct Fallback {
    intake: Option<Intake>,
    sender: String,
    null_sender: bool,
    recipients: Vec<String>,
}

impl Fallback {
    /// Over the running deliverer's intake (`None`: no copies are kept).
    pub(super) fn new(intake: Option<Intake>) -> Fallback {
        Fallback {
            intake,
            sender: String::new(),
            null_sender: false,
            recipients: Vec::new(),
        }
    }

    /// The upstream accepted `MAIL FROM` with `sender` (after the rewrite).
    pub(super) fn mail(&mut self, sender: String, null_sender: bool) {
        self.sender = sender;
        self.null_sender = null_sender;
        self.recipients.clear();
    }

    /// The upstream accepted `RCPT TO` with this argument.
    pub(super) fn rcpt(&mut self, arg: &[u8]) {
        if let Some(a) = address(arg) {
            self.recipients
                .push(String::from_utf8_lossy(a).into_owned());
        }
    }

    /// A new transaction.
    pub(super) fn reset(&mut self) {
        self.recipients.clear();
    }
}

/// Whether a reply is only a "not now": the copy is kept and queued.
fn temporary(stage: Stage, r: &Reply) -> bool {
    let d = classify(&Outcome::Reply {
        stage,
        code: r.code,
        text: &r.raw,
    });
    !matches!(d.class, Class::Delivered | Class::Permanent)
}

impl Relay<'_> {
    /// In fallback mode, after the upstream failed before the message text (`Ok`: its
    /// reply to MAIL, RCPT or DATA; `Err`: why there was none): if the failure is temporary
    /// by the queue's table, the rest of this session is queued, and true is returned
    /// (the caller then answers through queue mode). False, nothing changed, when the
    /// session is not in fallback mode, no queue runs, or the refusal is permanent (it
    /// goes to the client unchanged, as in relay mode).
    ///
    /// Recipients the upstream already accepted in this transaction are carried into the
    /// queued envelope, and the upstream's half-done transaction is abandoned (the
    /// connection is dropped before any DATA, so it delivers nothing): the whole message
    /// then goes through the queue, once, to every recipient the client was told 250.
    /// Relaying to the accepted ones now and queuing only the refused one would need two
    /// copies of the body, the relayed one racing the client's verdict; one queued
    /// message keeps "nothing lost, nothing sent twice" simple, at the cost of a delay
    /// for recipients QQ would have taken at once (Postfix defers the same way). Later
    /// RCPTs of the session are checked locally only, as in queue mode: a permanent
    /// refusal of one of them becomes a bounce to the account.
    pub(super) fn fallback_to_queue(&mut self, stage: Stage, reply: Result<&Reply, &str>) -> bool {
        let Some(f) = self.mode.fallback() else {
            return false;
        };
        let Some(intake) = f.intake.clone() else {
            return false;
        };
        let why = match reply {
            Ok(r) if !temporary(stage, r) => return false,
            Ok(r) => format!("it replied {}", show(&r.raw)),
            Err(lost) => lost.to_string(),
        };
        let carried = match stage {
            Stage::Rcpt | Stage::Data => std::mem::take(&mut f.recipients),
            _ => Vec::new(),
        };
        let (sender, null_sender) = (f.sender.clone(), f.null_sender);
        warn!(account = %self.account.id, ?stage, reason = %why, carried = carried.len(),
            "upstream failed temporarily before the message: fallback queues this session's mail");
        // Drop the upstream mid-transaction: it delivers nothing without a final dot.
        self.up = None;
        self.mode = Mode::Queue(Queued::carrying(intake, sender, null_sender, carried));
        true
    }

    /// The writer for this message's copy, when in fallback mode; a store that cannot
    /// take it only costs the safety net (logged), never the relay.
    pub(super) async fn fallback_writer(&mut self) -> Option<Result<Writer, StoreError>> {
        let f = self.mode.fallback()?;
        let intake = f.intake.clone()?;
        let msg = NewMessage {
            account: self.account.id.clone(),
            sender: f.sender.clone(),
            null_sender: f.null_sender,
            recipients: std::mem::take(&mut f.recipients),
        };
        match super::sink::begin(&intake.store, msg, None).await {
            Ok(w) => Some(Ok(w)),
            Err(e) => {
                warn!(account = %self.account.id, error = %e, "queue: no fallback copy of this message; it is relayed only");
                None
            }
        }
    }

    /// The end of a relayed message with its copy: discard the copy on 250 or a
    /// permanent refusal (passed on as the relay does), queue it on a temporary failure.
    pub(super) async fn fallback_end(
        &mut self,
        interrupted: Option<(Interrupt, Option<Reply>)>,
        size: usize,
        copy: Result<Writer, StoreError>,
    ) -> bool {
        if let Some((why, salvaged)) = interrupted {
            return match salvaged {
                Some(r) if !temporary(Stage::Data, &r) => {
                    drop(copy);
                    self.end_of_data(None, Some((why, Some(r))), size).await
                }
                _ => {
                    let reason = why.to_string();
                    self.fallback_queue(copy, size, &reason, false).await
                }
            };
        }
        let (sender, recipients) = match &self.tx {
            Tx::Rcpt { sender, recipients } => (sender.clone(), recipients.clone()),
            _ => (String::new(), Vec::new()),
        };
        match self.read_verdict().await {
            Ok(r) if !temporary(Stage::EndOfData, &r) => {
                drop(copy);
                self.tx = Tx::Idle;
                self.pass_verdict((&sender, &recipients), size, &r).await
            }
            Ok(r) => {
                self.up = None;
                let reason = format!("upstream replied {}", show(&r.raw));
                self.fallback_queue(copy, size, &reason, false).await
            }
            Err(e) => {
                self.up = None;
                // The final dot went out and no reply came: the upstream may have the
                // message; the queued copy is retried and flagged (RFC 5321 §6.1).
                let reason = e.map_or("no upstream".to_string(), |e| e.to_string());
                self.fallback_queue(copy, size, &reason, true).await
            }
        }
    }

    async fn fallback_queue(
        &mut self,
        copy: Result<Writer, StoreError>,
        size: usize,
        reason: &str,
        dup: bool,
    ) -> bool {
        let (sender, recipients) = self.tx.take();
        info!(from = %sender, size, reason, "upstream failed temporarily; fallback queues the message");
        let intake = self.mode.fallback().and_then(|f| f.intake.clone());
        self.commit_queued(copy, (&sender, &recipients), size, dup, intake)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_only_a_not_now() {
        let cases: [(Stage, &str, bool); 7] = [
            (Stage::EndOfData, "250 OK\r\n", false),
            (Stage::EndOfData, "451 4.3.0 try later\r\n", true),
            (Stage::EndOfData, "421 closing\r\n", true),
            (Stage::EndOfData, "550 Ip frequency limited\r\n", true),
            (Stage::EndOfData, "550 Mailbox not found\r\n", false),
            (Stage::Data, "552 5.3.4 too big\r\n", false),
            (Stage::Data, "554 DT:SPM spam\r\n", false),
        ];
        for (stage, raw, want) in cases {
            let r = Reply {
                code: raw[..3].parse().unwrap_or(0),
                raw: raw.as_bytes().to_vec(),
            };
            assert_eq!(temporary(stage, &r), want, "{raw}");
        }
    }
}
