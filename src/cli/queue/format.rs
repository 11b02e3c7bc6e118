//! Pure text for the `queue` commands: the `postqueue -p`-like listing, one message's
//! envelope for `queue show`, the header block cut from a stored body, and the
//! plain-language hint for a message's last error. No I/O here, so all of it is tested
//! as tables.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::logging::escape;
use crate::queue::classify::Class;
use crate::queue::store::{Envelope, LastError, RcptState};

/// A duration as the largest whole unit: `45s`, `12m`, `3h`, `2d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A size in bytes for people: `512 B`, `12 KiB` (rounded up), `3.4 MiB`.
pub fn size(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    match n {
        0..KIB => format!("{n} B"),
        KIB..MIB => format!("{} KiB", n.div_ceil(KIB)),
        _ => format!("{:.1} MiB", n as f64 / MIB as f64),
    }
}

/// Bytes as received (QQ has sent GBK), shown as text with control characters escaped
/// so a reply can never forge a line of the listing.
fn shown(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

/// What the operator can do about a last error, in the words `qqmail-proxy check` uses.
pub fn hint(e: &LastError) -> &'static str {
    let text = e.text.to_ascii_lowercase();
    let has = |needle: &[u8]| memchr::memmem::find(&text, needle).is_some();
    if has(b"frequency") || e.class == Class::RateLimited {
        return "the provider is rate-limiting this account or address (QQ: \"frequency limited\"): \
                the queue waits at least 15 minutes; avoid repeated test logins";
    }
    match e.class {
        Class::CodeRefused => {
            "the authorization code is wrong or was revoked, or the SMTP service is off: generate \
             a new code in QQ Mail → Settings → Account (POP3/IMAP/SMTP service), update the \
             proxy's auth code, then `qqmail-proxy queue retry --all`"
        }
        Class::Permanent => {
            "the provider refused this message or recipient for good: it is bounced to the sender"
        }
        _ if has(b"certificate") || has(b"tls") => crate::upstream::hint::TLS_UNTRUSTED,
        _ if has(b"cannot reach") || has(b"timed out") || has(b"timeout") => {
            "the provider could not be reached: check the network, DNS and firewall; the queue \
             retries with back-off until [queue] max_age"
        }
        _ => "the provider deferred the message: the queue retries with back-off until [queue] max_age",
    }
}

fn state(s: &RcptState) -> String {
    match s {
        RcptState::Pending => "pending".into(),
        RcptState::Delivered => "delivered".into(),
        RcptState::Failed { reply } => format!("failed: {}", shown(reply).trim_end()),
    }
}

/// When the next attempt is, relative to `now`.
fn next(env: &Envelope, now: SystemTime) -> String {
    match env.next_attempt.duration_since(now) {
        Ok(d) if d.as_secs() > 0 => format!("in {}", age(d)),
        _ => "now".into(),
    }
}

/// One message of the listing: a heading line, then sender, recipients and last error.
fn entry(out: &mut String, env: &Envelope, now: SystemTime) {
    let waited = now.duration_since(env.queued_at).unwrap_or_default();
    let _ = writeln!(
        out,
        "{:<21}  {:>5}  {:>9}  {:<12}  {:>8}  {}",
        env.id.as_str(),
        age(waited),
        size(env.body.len),
        shown(env.account.as_bytes()),
        env.attempts,
        next(env, now)
    );
    let sender = if env.null_sender {
        "<>".to_string()
    } else {
        shown(env.sender.as_bytes())
    };
    let _ = writeln!(out, "  from: {sender}");
    for r in &env.recipients {
        let _ = writeln!(
            out,
            "  to:   {} ({})",
            shown(r.addr.as_bytes()),
            state(&r.state)
        );
    }
    if let Some(e) = &env.last_error {
        let _ = writeln!(
            out,
            "  last error ({}): {}",
            e.class.as_str(),
            shown(&e.text).trim_end()
        );
        let _ = writeln!(out, "  hint: {}", hint(e));
    }
    if env.possibly_duplicated {
        let _ = writeln!(out, "  note: an earlier attempt got no reply to its final dot; the next one may deliver a second copy");
    }
}

/// The whole listing, like `postqueue -p`: one block per message, then the count line.
pub fn list(envs: &[Envelope], now: SystemTime) -> String {
    if envs.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = format!(
        "{:<21}  {:>5}  {:>9}  {:<12}  {:>8}  {}\n",
        "ID", "AGE", "SIZE", "ACCOUNT", "ATTEMPTS", "NEXT"
    );
    for env in envs {
        entry(&mut out, env, now);
        out.push('\n');
    }
    let total: u64 = envs.iter().map(|e| e.body.len).sum();
    let noun = if envs.len() == 1 {
        "message"
    } else {
        "messages"
    };
    let _ = writeln!(out, "-- {} {noun}, {} in queue", envs.len(), size(total));
    out
}

/// One message's envelope for `queue show`.
pub fn envelope(env: &Envelope, now: SystemTime) -> String {
    let mut out = String::new();
    let waited = now.duration_since(env.queued_at).unwrap_or_default();
    let _ = writeln!(out, "id:        {}", env.id);
    let _ = writeln!(out, "account:   {}", shown(env.account.as_bytes()));
    let _ = writeln!(
        out,
        "size:      {} ({} bytes)",
        size(env.body.len),
        env.body.len
    );
    let _ = writeln!(out, "age:       {}", age(waited));
    let _ = writeln!(out, "attempts:  {}", env.attempts);
    let _ = writeln!(out, "next:      {}", next(env, now));
    let mut rest = String::new();
    entry(&mut rest, env, now);
    // The heading line is the listing's; the lines below it are the same.
    for line in rest.lines().skip(1) {
        let _ = writeln!(out, "{}", line.trim_start());
    }
    out
}

/// The message text for display: every line of `stored` (transmission form, CRLF) with
/// its leading dot-stuffing removed (RFC 5321 §4.5.2) and control characters escaped;
/// with `headers_only`, up to (not including) the first empty line.
pub fn message_text(stored: &[u8], headers_only: bool) -> String {
    let mut out = String::new();
    for line in stored.split_inclusive(|&b| b == b'\n') {
        let bare = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if headers_only && bare.is_empty() {
            break;
        }
        let unstuffed = bare.strip_prefix(b".").unwrap_or(bare);
        out.push_str(&shown(unstuffed));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
