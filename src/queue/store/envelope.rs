//! The envelope file: everything about a queued message except its body, as short
//! `key value` lines an operator can read with `cat`. Byte values (addresses, upstream
//! replies, which QQ has sent in GBK) are percent-escaped, so every line is printable
//! ASCII whatever they contain. The last line carries a checksum of the lines above it:
//! a file cut short or damaged on disk fails to parse and is moved to `corrupt/`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::QueueId;
use crate::queue::classify::Class;

/// First line of every envelope file (format name and version).
const MAGIC: &str = "qqmail-proxy-queue 1";
/// Hex digits of the trailing checksum kept (64 bits: this guards against damage, not
/// against an attacker who can write the queue directory anyway).
const SUM_DIGITS: usize = 16;

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptState {
    /// Not yet accepted by the upstream: the next attempt sends to it.
    Pending,
    /// The upstream accepted it: never sent again.
    Delivered,
    /// Refused permanently (the reply as received): included in the bounce, never retried.
    Failed {
        /// The upstream's reply, bytes as received.
        reply: Vec<u8>,
    },
}

/// One envelope recipient and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address, as given in `RCPT TO` (without angle brackets).
    pub addr: String,
    /// Where it stands.
    pub state: RcptState,
}

impl Recipient {
    /// A recipient not yet tried.
    pub fn pending(addr: impl Into<String>) -> Recipient {
        Recipient {
            addr: addr.into(),
            state: RcptState::Pending,
        }
    }
}

/// The last failed attempt: how it was classified and the text to show the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// Its class (from [`crate::queue::classify`]).
    pub class: Class,
    /// The upstream's reply or the connection error, bytes as received.
    pub text: Vec<u8>,
}

/// Length and SHA-256 of the body file, checked before the body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySum {
    /// Bytes.
    pub len: u64,
    /// SHA-256 of those bytes.
    pub sha256: [u8; 32],
}

/// Everything the queue knows about a message besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The queue ID (also the file names).
    pub id: QueueId,
    /// The configured account that delivers it (its deliveries are paced together).
    pub account: String,
    /// `MAIL FROM` as sent upstream, i.e. after the sender rewrite.
    pub sender: String,
    /// The client said `MAIL FROM:<>` (it is itself a bounce or a notification): no
    /// bounce is ever generated for it, so two systems cannot bounce to each other.
    pub null_sender: bool,
    /// The recipients and their states, in `RCPT TO` order.
    pub recipients: Vec<Recipient>,
    /// When the message was accepted (the DSN's Arrival-Date; `max_age` counts from it).
    pub queued_at: SystemTime,
    /// Not before this time is the next attempt made.
    pub next_attempt: SystemTime,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<LastError>,
    /// An earlier attempt sent the final dot but got no reply: the upstream may already
    /// have the message, so the next delivery may duplicate it (logged and counted).
    pub possibly_duplicated: bool,
    /// The body's length and checksum.
    pub body: BodySum,
}

impl Envelope {
    /// Recipients still to be delivered.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
    }

    /// No recipient is pending: the message can leave the queue (after any bounce).
    pub fn is_finished(&self) -> bool {
        self.pending().next().is_none()
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut line = |key: &str, value: &str| {
            out.push_str(key);
            if !value.is_empty() {
                out.push(' ');
                out.push_str(value);
            }
            out.push('\n');
        };
        line(MAGIC, "");
        line("id", self.id.as_str());
        line("account", &escape(self.account.as_bytes()));
        line("sender", &escape(self.sender.as_bytes()));
        line("null-sender", flag(self.null_sender));
        line("queued", &secs(self.queued_at).to_string());
        line("next", &secs(self.next_attempt).to_string());
        line("attempts", &self.attempts.to_string());
        line("possibly-duplicated", flag(self.possibly_duplicated));
        line("body-len", &self.body.len.to_string());
        line("body-sha256", &hex(&self.body.sha256));
        if let Some(e) = &self.last_error {
            line(
                "last-error",
                &format!("{} {}", e.class.as_str(), escape(&e.text)),
            );
        }
        for r in &self.recipients {
            let addr = escape(r.addr.as_bytes());
            let value = match &r.state {
                RcptState::Pending => format!("pending {addr}"),
                RcptState::Delivered => format!("delivered {addr}"),
                RcptState::Failed { reply } => format!("failed {addr} {}", escape(reply)),
            };
            line("rcpt", &value);
        }
        let sum = hex(&Sha256::digest(out.as_bytes()))[..SUM_DIGITS].to_string();
        out.push_str("end ");
        out.push_str(&sum);
        out.push('\n');
        out.into_bytes()
    }

    /// Parses a file written by [`Envelope::encode`]; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not ASCII text".to_string())?;
        let body_end = text
            .strip_suffix('\n')
            .and_then(|t| t.rfind('\n'))
            .map(|i| i + 1)
            .ok_or("too short")?;
        let (lines, last) = text.split_at(body_end);
        let sum = last
            .strip_prefix("end ")
            .and_then(|s| s.strip_suffix('\n'))
            .ok_or("no end line (cut short?)")?;
        if hex(&Sha256::digest(lines.as_bytes()))[..SUM_DIGITS] != *sum {
            return Err("checksum mismatch".into());
        }
        let mut lines = lines.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("first line is not {MAGIC:?}"));
        }
        let mut fields = Fields::default();
        for l in lines {
            fields.take(l)?;
        }
        fields.finish()
    }
}

/// The fields seen so far while decoding.
#[derive(Default)]
struct Fields {
    id: Option<QueueId>,
    account: Option<String>,
    sender: Option<String>,
    null_sender: Option<bool>,
    queued: Option<SystemTime>,
    next: Option<SystemTime>,
    attempts: Option<u32>,
    dup: Option<bool>,
    body_len: Option<u64>,
    body_sha: Option<[u8; 32]>,
    last_error: Option<LastError>,
    recipients: Vec<Recipient>,
}

impl Fields {
    fn take(&mut self, line: &str) -> Result<(), String> {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let bad = || format!("bad {key} line");
        fn set<T>(slot: &mut Option<T>, v: Option<T>, key: &str) -> Result<(), String> {
            let v = v.ok_or_else(|| format!("bad {key} line"))?;
            if slot.replace(v).is_some() {
                return Err(format!("{key} given twice"));
            }
            Ok(())
        }
        match key {
            "id" => set(&mut self.id, QueueId::parse(value), key),
            "account" => set(&mut self.account, unescape_str(value), key),
            "sender" => set(&mut self.sender, unescape_str(value), key),
            "null-sender" => set(&mut self.null_sender, parse_flag(value), key),
            "queued" => set(&mut self.queued, parse_time(value), key),
            "next" => set(&mut self.next, parse_time(value), key),
            "attempts" => set(&mut self.attempts, value.parse().ok(), key),
            "possibly-duplicated" => set(&mut self.dup, parse_flag(value), key),
            "body-len" => set(&mut self.body_len, value.parse().ok(), key),
            "body-sha256" => set(&mut self.body_sha, parse_sha(value), key),
            "last-error" => {
                let (class, text) = value.split_once(' ').unwrap_or((value, ""));
                let e = Class::from_token(class).zip(unescape(text));
                let e = e.map(|(class, text)| LastError { class, text });
                set(&mut self.last_error, e, key)
            }
            "rcpt" => {
                let mut parts = value.split(' ');
                let (state, addr) = (parts.next(), parts.next().and_then(unescape_str));
                let state = match (state, parts.next()) {
                    (Some("pending"), None) => RcptState::Pending,
                    (Some("delivered"), None) => RcptState::Delivered,
                    (Some("failed"), Some(r)) => RcptState::Failed {
                        reply: unescape(r).ok_or_else(bad)?,
                    },
                    _ => return Err(bad()),
                };
                if parts.next().is_some() {
                    return Err(bad());
                }
                let addr = addr.ok_or_else(bad)?;
                self.recipients.push(Recipient { addr, state });
                Ok(())
            }
            _ => Err(format!("unknown line {key:?}")),
        }
    }

    fn finish(self) -> Result<Envelope, String> {
        fn need<T>(v: Option<T>, key: &str) -> Result<T, String> {
            v.ok_or_else(|| format!("no {key} line"))
        }
        if self.recipients.is_empty() {
            return Err("no rcpt line".into());
        }
        Ok(Envelope {
            id: need(self.id, "id")?,
            account: need(self.account, "account")?,
            sender: need(self.sender, "sender")?,
            null_sender: need(self.null_sender, "null-sender")?,
            recipients: self.recipients,
            queued_at: need(self.queued, "queued")?,
            next_attempt: need(self.next, "next")?,
            attempts: need(self.attempts, "attempts")?,
            last_error: self.last_error,
            possibly_duplicated: need(self.dup, "possibly-duplicated")?,
            body: BodySum {
                len: need(self.body_len, "body-len")?,
                sha256: need(self.body_sha, "body-sha256")?,
            },
        })
    }
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn parse_flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Whole seconds since 1970 (times before it are stored as 0).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let n: u64 = s.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(n))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_sha(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Percent-escapes everything but printable ASCII other than `%` (so no space, no line
/// end, no 8-bit byte reaches the file). The empty value is written as `%`, alone.
fn escape(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    if s == "%" {
        return Some(Vec::new());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_graphic() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

fn unescape_str(s: &str) -> Option<String> {
    String::from_utf8(unescape(s)?).ok()
}

/// For the tests of everything that shows or stores envelopes: a message with three
/// recipients — one pending, one delivered, one failed with `failed_reply` — queued at
/// 1000 s after the epoch, next attempt at 1400 s, two attempts, no error yet. Tests set
/// the fields they are about with `Envelope { .., ..sample(reply) }`.
#[cfg(test)]
pub(crate) fn sample(failed_reply: &[u8]) -> Envelope {
    Envelope {
        id: QueueId::parse("0190A0B0C0D0E12345678").expect("id"),
        account: "main".into(),
        sender: "printer@qq.com".into(),
        null_sender: false,
        recipients: vec![
            Recipient::pending("bob@example.com"),
            Recipient {
                addr: "carol@example.com".into(),
                state: RcptState::Delivered,
            },
            Recipient {
                addr: "dave@example.com".into(),
                state: RcptState::Failed {
                    reply: failed_reply.to_vec(),
                },
            },
        ],
        queued_at: UNIX_EPOCH + Duration::from_secs(1000),
        next_attempt: UNIX_EPOCH + Duration::from_secs(1400),
        attempts: 2,
        last_error: None,
        possibly_duplicated: false,
        body: BodySum {
            len: 4321,
            sha256: [0; 32],
        },
    }
}

#[cfg(test)]
mod tests;
