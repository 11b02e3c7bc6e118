//! `[smtp] add_missing_headers`: the fields a message needs and a device often leaves out,
//! added as Postfix's `always_add_missing_headers` does. Scanners, cron scripts and
//! `mail` on a NAS send messages without `Date` or `Message-ID` (RFC 5322 §3.6 requires
//! the first, §3.6.4 says every message SHOULD have the second) and count on the
//! receiving server to add them; some providers and spam filters penalise such mail, and
//! QQ's inbound refuses a message without `From` (`550 The "From" header is missing or
//! invalid`). A field that is present is never touched: only the missing ones are added,
//! at the end of the header block (so trace fields, if any, stay first, §3.6).

use super::{fields, name_is, newline_of};

/// The values to add when missing (made by the session: a clock and a unique id); the
/// `From` added is the account's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// A `date-time` (RFC 5322 §3.3), e.g. `Mon, 7 Dec 2026 08:00:00 +0800`.
    pub date: String,
    /// A `msg-id` with its angle brackets (RFC 5322 §3.6.4), e.g. `<id@host>`.
    pub message_id: String,
}

/// The header block `block` (the message up to and including its blank line, or the
/// whole message when it has none) with `From`, `Date` and `Message-ID` added where
/// missing, just before the blank line. `None` when all three are present.
pub fn add_missing(block: &[u8], missing: &Missing, account: &str) -> Option<Vec<u8>> {
    let fields = fields(block);
    let present = |name: &[u8]| fields.iter().any(|f| name_is(f, name));
    let newline = newline_of(block);
    let mut added = Vec::new();
    let account = format!("<{account}>");
    for (name, value) in [
        ("From", account.as_str()),
        ("Date", missing.date.as_str()),
        ("Message-ID", missing.message_id.as_str()),
    ] {
        if !present(name.as_bytes()) {
            added.extend_from_slice(name.as_bytes());
            added.extend_from_slice(b": ");
            added.extend_from_slice(value.as_bytes());
            added.extend_from_slice(newline);
        }
    }
    if added.is_empty() {
        return None;
    }
    // The blank line that ends the block, if it has one, stays last.
    let at = match fields.last() {
        Some(&(b"\r\n" | b"\n")) => block.len() - fields.last().map_or(0, |f| f.len()),
        _ => block.len(),
    };
    let mut out = Vec::with_capacity(block.len() + added.len() + 2);
    out.extend_from_slice(&block[..at]);
    if at > 0 && !block[..at].ends_with(b"\n") {
        out.extend_from_slice(newline);
    }
    out.extend_from_slice(&added);
    out.extend_from_slice(&block[at..]);
    Some(out)
}

#[cfg(test)]
mod tests;
