//! The gateway's log lines about mail (issue 19, wall 1): one info line per message
//! handed on (relayed, refused, queued), one warn line per message not handed on and one per refusal of a sender or a recipient,
//! each with the local user, the account, the envelope (the sender as sent upstream,
//! after any rewrite), the reply shown safely and a plain-language hint. A printer cannot
//! show its owner an error, so this is the only place a refusal can be read (besides the
//! status page: each refusal is also noted as the session's error, `Report::error`). The
//! client's address is on the session's span; envelopes and replies carry no secret.

use tracing::{info, warn};

use super::Relay;
use crate::net::show;
use crate::upstream::hint;

/// Longest reply text logged: QQ's longest known reply (535 with its help link) fits.
const REPLY_MAX: usize = 400;

/// A reply as one log value: invalid UTF-8 (GBK) escaped, control characters blanked so
/// it cannot forge a line, cut at [`REPLY_MAX`] bytes.
fn shown(raw: &[u8]) -> String {
    crate::proto::reply_text(&show(raw), REPLY_MAX)
}

/// Where in the transaction a sender or recipient was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    /// `MAIL FROM`: the sender.
    Mail,
    /// `RCPT TO`: one recipient.
    Rcpt,
}

impl Relay<'_> {
    fn user(&self) -> &str {
        self.report.user.as_deref().unwrap_or("-")
    }

    /// One line for a sender or recipient refused with `raw` (the upstream's reply, or
    /// the proxy's own); `address` is the refused one.
    pub(super) fn log_refused(&mut self, at: At, address: &str, raw: &[u8]) {
        self.report.note_reply(raw);
        let (user, account) = (self.user(), self.account.id.as_str());
        let (reply, hint) = (shown(raw), hint::for_reply(raw));
        match at {
            At::Mail => {
                info!(
                    user,
                    account,
                    sender = address,
                    reply,
                    hint,
                    "sender refused"
                )
            }
            At::Rcpt => {
                let sender = self.tx.sender().unwrap_or("-");
                info!(
                    user,
                    account,
                    sender,
                    recipient = address,
                    reply,
                    hint,
                    "recipient refused"
                )
            }
        }
    }

    /// One line for a whole message: `what` it became (`relayed`, `refused by
    /// upstream`, `queued` ...), its envelope and size, and the reply the client got.
    pub(super) fn log_message(
        &mut self,
        what: &'static str,
        (sender, recipients): (&str, &[String]),
        size: usize,
        raw: &[u8],
    ) {
        if !raw.starts_with(b"2") {
            self.report.note_reply(raw);
        }
        let (user, account) = (self.user(), self.account.id.as_str());
        let (reply, hint) = (shown(raw), hint::for_reply(raw));
        let recipients = recipients.join(",");
        info!(
            user,
            account, sender, recipients, size, reply, hint, "message {what}"
        );
    }

    /// One warn line for a message that was NOT handed on after its data arrived: the
    /// proxy refused it, the upstream failed mid-message, or the queue could not store
    /// it; `why` says which, `raw` is the reply the client got (a 4xx or 5xx: never a
    /// false `250`).
    pub(super) fn log_not_sent(
        &self,
        why: &str,
        (sender, recipients): (&str, &[String]),
        size: usize,
        raw: &[u8],
    ) {
        let (user, account) = (self.user(), self.account.id.as_str());
        let reply = shown(raw);
        let recipients = recipients.join(",");
        warn!(
            user,
            account,
            sender,
            recipients,
            size,
            reply,
            reason = why,
            "message not sent"
        );
    }
}
