//! Bounces: the delivery status notification (RFC 3464) sent to the account's own
//! address when a message fails permanently or outlives `max_age`, so the owner sees it
//! in the QQ inbox. A `multipart/report; report-type=delivery-status` (RFC 6522) of three
//! parts: a human-readable text (English and a line of Chinese), the machine-readable
//! `message/delivery-status`, and the original headers as `text/rfc822-headers`.
//!
//! The whole notification is 7-bit (the human text and any 8-bit original headers are
//! base64), has CRLF line ends and lines of at most 998 bytes (RFC 5322 §2.1.1), so it
//! needs no `8BITMIME` from the upstream. Pure: the caller passes the time and a nonce.
//!
//! Loops: none is built for a message whose client sender was `<>`, and the bounce is
//! itself queued with a null sender, so a bounce that cannot be delivered is dropped,
//! never bounced.

use std::time::SystemTime;

use base64::Engine;

use super::store::{Envelope, RcptState};

/// The longest reply text quoted (a reply is a line or two; this keeps lines < 998).
const MAX_DIAGNOSTIC: usize = 800;
/// RFC 5322 §2.1.1: at most 998 characters a line, CRLF excluded.
pub const MAX_LINE: usize = 998;
/// At most this much of the original header block is attached.
const MAX_HEADERS: usize = 64 * 1024;

/// Why the recipients failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The upstream refused them permanently.
    Refused,
    /// `max_age` passed with no successful delivery.
    Expired,
}

/// One failed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The address.
    pub addr: String,
    /// The upstream's reply (bytes as received) or, for an expiry without one, the last
    /// connection error.
    pub reply: Vec<u8>,
}

/// What a bounce says.
#[derive(Debug, Clone)]
pub struct Bounce<'a> {
    /// This proxy's host name (`Reporting-MTA`, the Message-ID's domain).
    pub reporting_mta: &'a str,
    /// The account's address: the bounce goes there, and is sent `From` it (QQ checks
    /// the header From of what is submitted against the login).
    pub account: &'a str,
    /// The failed message's queue ID.
    pub queue_id: &'a str,
    /// When it was queued.
    pub arrival: SystemTime,
    /// Now.
    pub now: SystemTime,
    /// Why.
    pub reason: Reason,
    /// Who.
    pub failed: Vec<Failed>,
    /// The original message's header block (see [`header_block`]).
    pub original_headers: &'a [u8],
    /// A random number for the MIME boundary and Message-ID.
    pub nonce: u64,
}

impl<'a> Bounce<'a> {
    /// The bounce for a queued message: its permanently failed recipients, plus (when
    /// `reason` is `Expired`) those still pending, with the last error. `None` when
    /// nothing is to be said: the client's sender was `<>`, or no recipient failed.
    #[allow(clippy::too_many_arguments)]
    pub fn for_envelope(
        env: &'a Envelope,
        reason: Reason,
        account: &'a str,
        reporting_mta: &'a str,
        original_headers: &'a [u8],
        now: SystemTime,
        nonce: u64,
    ) -> Option<Bounce<'a>> {
        if env.null_sender {
            return None;
        }
        let last = env.last_error.as_ref().map(|e| e.text.clone());
        let failed: Vec<Failed> = env
            .recipients
            .iter()
            .filter_map(|r| {
                match (&r.state, reason) {
                    (RcptState::Failed { reply }, _) => Some(reply.clone()),
                    (RcptState::Pending, Reason::Expired) => Some(last.clone().unwrap_or_default()),
                    _ => None,
                }
                .map(|reply| Failed {
                    addr: r.addr.clone(),
                    reply,
                })
            })
            .collect();
        (!failed.is_empty()).then_some(Bounce {
            reporting_mta,
            account,
            queue_id: env.id.as_str(),
            arrival: env.queued_at,
            now,
            reason,
            failed,
            original_headers,
            nonce,
        })
    }

    /// The notification's text (CRLF, not dot-stuffed; see [`dot_stuff`]).
    pub fn render(&self) -> Vec<u8> {
        let boundary = format!("=_qqmail-proxy-dsn-{:016x}", self.nonce);
        let date = rfc5322_date(self.now);
        let mut out = Vec::new();
        put(
            &mut out,
            &format!("From: \"Mail Delivery System\" <{}>", ascii(self.account)),
        );
        put(&mut out, &format!("To: <{}>", ascii(self.account)));
        put(
            &mut out,
            &format!(
                "Subject: Undelivered Mail Returned to Sender {}",
                encoded_word("退信")
            ),
        );
        put(&mut out, &format!("Date: {date}"));
        put(
            &mut out,
            &format!(
                "Message-ID: <{}.{:016x}.dsn@{}>",
                ascii(self.queue_id),
                self.nonce,
                ascii(self.reporting_mta)
            ),
        );
        // RFC 3834: an automatic message; well-behaved systems never answer it.
        put(&mut out, "Auto-Submitted: auto-replied");
        put(&mut out, "MIME-Version: 1.0");
        put(
            &mut out,
            "Content-Type: multipart/report; report-type=delivery-status;",
        );
        put(&mut out, &format!("\tboundary=\"{boundary}\""));
        put(&mut out, "");
        put(&mut out, "This is a MIME-encapsulated message.");
        put(&mut out, "");
        put(&mut out, &format!("--{boundary}"));
        put(&mut out, "Content-Type: text/plain; charset=utf-8");
        put(&mut out, "Content-Transfer-Encoding: base64");
        put(&mut out, "Content-Description: Notification");
        put(&mut out, "");
        for line in base64_lines(self.human_text().as_bytes()) {
            put(&mut out, &line);
        }
        put(&mut out, "");
        put(&mut out, &format!("--{boundary}"));
        put(&mut out, "Content-Type: message/delivery-status");
        put(&mut out, "Content-Description: Delivery report");
        put(&mut out, "");
        for line in self.status_fields(&date) {
            put(&mut out, &line);
        }
        put(&mut out, &format!("--{boundary}"));
        put(&mut out, "Content-Type: text/rfc822-headers");
        put(&mut out, "Content-Description: Undelivered Message Headers");
        let headers = normalise_headers(self.original_headers);
        if headers.is_ascii() {
            put(&mut out, "");
            out.extend_from_slice(&headers);
        } else {
            put(&mut out, "Content-Transfer-Encoding: base64");
            put(&mut out, "");
            for line in base64_lines(&headers) {
                put(&mut out, &line);
            }
        }
        put(&mut out, "");
        put(&mut out, &format!("--{boundary}--"));
        out
    }

    fn human_text(&self) -> String {
        let mut t = format!(
            "This is qqmail-proxy on {}.\r\n\r\n\
             Your message (queue ID {}) could not be delivered to the recipients below.\r\n",
            self.reporting_mta, self.queue_id
        );
        t.push_str(match self.reason {
            Reason::Refused => "The mail server refused them; its reply is shown after each.\r\n",
            Reason::Expired => {
                "It could not be delivered in the time allowed ([queue] max_age); \
                 the last error is shown after each.\r\n"
            }
        });
        t.push_str("\r\n您的邮件未能投递给下列收件人，邮件服务器的回复附在每个地址之后。\r\n\r\n");
        for f in &self.failed {
            t.push_str(&format!("<{}>: {}\r\n", f.addr, shown(&f.reply, false)));
        }
        t
    }

    fn status_fields(&self, date: &str) -> Vec<String> {
        let mut v = vec![
            format!("Reporting-MTA: dns; {}", ascii(self.reporting_mta)),
            format!("X-Queue-ID: {}", ascii(self.queue_id)),
            format!("Arrival-Date: {}", rfc5322_date(self.arrival)),
            String::new(),
        ];
        for f in &self.failed {
            v.push(format!("Final-Recipient: rfc822; {}", ascii(&f.addr)));
            v.push("Action: failed".into());
            v.push(format!("Status: {}", status_code(&f.reply, self.reason)));
            if !f.reply.is_empty() {
                let kind = if reply_code(&f.reply) {
                    "smtp"
                } else {
                    "X-qqmail-proxy"
                };
                v.push(format!(
                    "Diagnostic-Code: {kind}; {}",
                    shown(&f.reply, true)
                ));
            }
            v.push(format!("Last-Attempt-Date: {date}"));
            v.push(String::new());
        }
        v
    }
}

/// Appends one line and its CRLF.
fn put(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The RFC 3463 status: the reply's own enhanced code if it has one; else 5.0.0 for a
/// refusal and 4.4.7 ("delivery time expired") for an expiry.
pub fn status_code(reply: &[u8], reason: Reason) -> String {
    let text = reply.get(4..).unwrap_or_default();
    let word = text
        .split(|&b| b == b' ' || b == b'\r')
        .next()
        .unwrap_or_default();
    let parts: Vec<&[u8]> = word.split(|&b| b == b'.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], b"2" | b"4" | b"5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.iter().all(u8::is_ascii_digit));
    match (valid, reason) {
        (true, _) => String::from_utf8_lossy(word).into_owned(),
        (false, Reason::Refused) => "5.0.0".into(),
        (false, Reason::Expired) => "4.4.7".into(),
    }
}

fn reply_code(reply: &[u8]) -> bool {
    reply.len() >= 3 && reply[..3].iter().all(u8::is_ascii_digit)
}

/// A reply made safe to show: lines joined by spaces, control bytes dropped, at most
/// [`MAX_DIAGNOSTIC`] bytes; `seven_bit` escapes anything non-ASCII as `\xNN` (for the
/// delivery-status fields), otherwise valid UTF-8 is kept (for the human text).
fn shown(reply: &[u8], seven_bit: bool) -> String {
    let joined: Vec<u8> = reply
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(&b' ');
    let text = match std::str::from_utf8(&joined) {
        Ok(s) if !seven_bit => s.chars().filter(|c| !c.is_control()).collect::<String>(),
        _ => joined
            .iter()
            .filter(|b| !b.is_ascii_control())
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect(),
    };
    let mut cut = text.len().min(MAX_DIAGNOSTIC);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

/// Printable ASCII only (addresses and names in our own header lines).
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// RFC 2047 encoded word.
fn encoded_word(s: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

fn base64_lines(bytes: &[u8]) -> Vec<String> {
    let all = base64::engine::general_purpose::STANDARD.encode(bytes);
    all.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// The original headers with CRLF line ends (a stray CR or NUL becomes a space), lines
/// cut at [`MAX_LINE`], ending in CRLF.
fn normalise_headers(h: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.len() + 64);
    for line in h.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let line = &line[..line.len().min(MAX_LINE)];
        out.extend(
            line.iter()
                .map(|&b| if b == b'\r' || b == 0 { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The header block of a stored body (which is in transmission form, RFC 5321
/// §4.5.2): the lines before the first empty one (at most 64 KiB), dot-unstuffed.
pub fn header_block(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" || out.len() + line.len() > MAX_HEADERS {
            break;
        }
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// Dot-stuffs a text for sending after `DATA` (RFC 5321 §4.5.2): the form the queue
/// stores bodies in (the final `.` line is not added).
pub fn dot_stuff(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

/// `Fri, 15 Jan 2027 08:00:00 +0000` (RFC 5322 §3.3), in UTC.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let weekday = dt.weekday().to_string();
    let month = dt.month().to_string();
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        &weekday[..3],
        dt.day(),
        &month[..3],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests;
