//! The one table that decides what an upstream outcome means for a queued message:
//! delivered, retry later, back off for a rate limit, suspect the stored code, or bounce.
//! The deliverer, the `fallback` mode (which answers the client 250-queued only on a
//! temporary failure) and the metrics all ask here, so they can never disagree.
//!
//! Replies are matched as bytes (QQ has sent GBK text), never decoded.

use crate::upstream::UpstreamError;

/// Where in the upstream dialog the outcome happened (RFC 5321 §4.3.2 order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The server's greeting.
    Greeting,
    /// `EHLO` (or STARTTLS negotiation).
    Ehlo,
    /// `AUTH` with the account's code.
    Auth,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO` (concerns one recipient).
    Rcpt,
    /// `DATA` (the 354 step) or the message text being sent.
    Data,
    /// The reply to the final `.` (RFC 5321 §4.1.1.4).
    EndOfData,
}

impl Stage {
    /// Stages before `MAIL FROM`: nothing about the message has been said yet.
    fn is_session(self) -> bool {
        matches!(self, Stage::Greeting | Stage::Ehlo | Stage::Auth)
    }
}

/// What happened on the way to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// No session: connect refused, DNS, TLS or certificate failure, or a timeout before
    /// any reply.
    Unreachable,
    /// The connection broke (or timed out) at `stage`, without a reply to the final dot.
    Dropped(Stage),
    /// The final dot was sent and no reply came (timeout or close): the upstream may or
    /// may not have taken the message.
    NoFinalReply,
    /// A reply, bytes as received.
    Reply {
        /// The step it answered.
        stage: Stage,
        /// Its code.
        code: u16,
        /// Its text, every line (the code included).
        text: &'a [u8],
    },
}

/// The verdict of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A positive reply: the step succeeded (after the final dot: delivered).
    Delivered,
    /// Try again later, with the usual back-off.
    Temporary,
    /// QQ's "frequency limited" family: back off at least 15 minutes, for the whole account.
    RateLimited,
    /// `535` to the stored code: retried once after a short pause (QQ has sent it
    /// intermittently with a valid code); a second one holds the account.
    CodeRefused,
    /// A refusal of this message or recipient: bounce.
    Permanent,
}

impl Class {
    /// The token stored in envelope files and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Delivered => "delivered",
            Class::Temporary => "temporary",
            Class::RateLimited => "ratelimited",
            Class::CodeRefused => "coderefused",
            Class::Permanent => "permanent",
        }
    }

    /// The inverse of [`Class::as_str`].
    pub fn from_token(s: &str) -> Option<Class> {
        [
            Class::Delivered,
            Class::Temporary,
            Class::RateLimited,
            Class::CodeRefused,
            Class::Permanent,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Whom a verdict concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One recipient (a reply to its `RCPT TO`).
    Recipient,
    /// Every pending recipient of this message.
    Message,
    /// Every message of the account (a session-level failure or a rate limit): the
    /// deliverer pauses the account rather than trying its other messages at once.
    Account,
}

/// The table's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What it means.
    pub class: Class,
    /// Whom it concerns.
    pub scope: Scope,
    /// The final dot may have been taken: the retry may deliver a second copy (RFC 5321
    /// §6.1 prefers that to a loss); logged as "possibly duplicated" and counted.
    pub possibly_duplicated: bool,
}

/// QQ's rate-limit replies: 550s that are temporary in effect (`550 Connection frequency
/// limited`, `Ip …`, `Sender …`, `Domain …`). Matched on the shared phrase, ASCII
/// case-insensitively, so a new member of the family is not bounced.
const RATE_LIMIT_PHRASE: &[u8] = b"frequency limited";

/// Classifies one outcome. The rules, in order:
/// - a positive reply (2xx, 3xx) → Delivered;
/// - no reply to the final dot → Temporary, possibly duplicated;
/// - unreachable, dropped, any 4xx (421 included) → Temporary;
/// - a 5xx containing "frequency limited" → RateLimited, account-wide;
/// - `535` to AUTH → CodeRefused; any other 5xx before `MAIL FROM` (greeting, EHLO,
///   AUTH) → Temporary, account-wide: it speaks of the session, not of the message, so
///   the message is not bounced for it (`max_age` still ends it);
/// - any other 5xx (MAIL, RCPT, DATA, end of data) → Permanent;
/// - anything else (a code outside 200..=599) → Temporary.
pub fn classify(outcome: &Outcome<'_>) -> Decision {
    let (class, scope, dup) = match *outcome {
        Outcome::Unreachable => (Class::Temporary, Scope::Account, false),
        // A broken connection concerns every pending recipient, even during RCPT.
        Outcome::Dropped(stage) if stage.is_session() => (Class::Temporary, Scope::Account, false),
        Outcome::Dropped(_) => (Class::Temporary, Scope::Message, false),
        Outcome::NoFinalReply => (Class::Temporary, Scope::Message, true),
        Outcome::Reply { stage, code, text } => {
            let class = match code {
                200..=399 => Class::Delivered,
                500..=599 if is_rate_limit(text) => Class::RateLimited,
                535 if stage == Stage::Auth => Class::CodeRefused,
                500..=599 if !stage.is_session() => Class::Permanent,
                _ => Class::Temporary,
            };
            let scope = match class {
                Class::RateLimited | Class::CodeRefused => Scope::Account,
                _ => scope_of(stage),
            };
            (class, scope, false)
        }
    };
    Decision {
        class,
        scope,
        possibly_duplicated: dup,
    }
}

fn scope_of(stage: Stage) -> Scope {
    match stage {
        Stage::Greeting | Stage::Ehlo | Stage::Auth => Scope::Account,
        Stage::Rcpt => Scope::Recipient,
        Stage::Mail | Stage::Data | Stage::EndOfData => Scope::Message,
    }
}

fn is_rate_limit(text: &[u8]) -> bool {
    text.windows(RATE_LIMIT_PHRASE.len())
        .any(|w| w.eq_ignore_ascii_case(RATE_LIMIT_PHRASE))
}

impl<'a> Outcome<'a> {
    /// The outcome of a failed upstream login ([`crate::upstream::connect`] then
    /// [`crate::upstream::smtp::login`]), for the deliverer.
    pub fn from_login_error(e: &'a UpstreamError) -> Outcome<'a> {
        let stage_of = |s: &str| match s {
            "greeting" => Stage::Greeting,
            "AUTH" => Stage::Auth,
            _ => Stage::Ehlo,
        };
        let reply = |stage, text: &'a [u8]| Outcome::Reply {
            stage,
            code: reply_code(text).unwrap_or(0),
            text,
        };
        match e {
            UpstreamError::Refused { reply: r, .. } => reply(Stage::Greeting, r),
            UpstreamError::Rejected { reply: r, .. } | UpstreamError::TempFail { reply: r, .. } => {
                reply(Stage::Auth, r)
            }
            UpstreamError::Protocol {
                stage, reply: r, ..
            } => reply(stage_of(stage), r),
            UpstreamError::Closed { stage, .. } => Outcome::Dropped(stage_of(stage)),
            UpstreamError::NotConfigured(_)
            | UpstreamError::Connect { .. }
            | UpstreamError::Tls { .. }
            | UpstreamError::NoStartTls { .. }
            | UpstreamError::PlaintextInjection { .. }
            | UpstreamError::Timeout { .. } => Outcome::Unreachable,
        }
    }
}

/// The three-digit code at the start of a reply.
fn reply_code(text: &[u8]) -> Option<u16> {
    let d = text.get(..3)?;
    d.iter()
        .all(u8::is_ascii_digit)
        .then(|| d.iter().fold(0u16, |n, b| n * 10 + u16::from(b - b'0')))
}

#[cfg(test)]
mod tests;
