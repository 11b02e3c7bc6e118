//! `rewrite_sender = "header"`: rewrites the message's `From:` header to the account
//! address, keeping the display name and adding `Reply-To:` with the original sender
//! (RFC 5322 §3.6.2), so replies still reach the person or device that wrote it. QQ
//! rejects a missing From (`550 The "From" header is missing or invalid`), so one is
//! added when absent. Any `Sender:` is dropped: it names the agent that transmitted the
//! message, which is now the account itself, and §3.6.2 says a Sender that would equal
//! the single From author SHOULD NOT be present (a foreign one would show as "sent on
//! behalf of" that address). The module also owns the collector that holds the header
//! block until it is whole, and the limit past which a message is refused rather than
//! relayed with its From unchecked.

mod collect;
mod missing;

pub use collect::{HeaderCollector, Headers, HEADER_BARE_CR, HEADER_TOO_LARGE, MAX_HEADER};
pub use missing::{add_missing, Missing};

/// The end of the header block: the index just after its first empty line, CRLF or a
/// bare LF (which printers send), at the very start included (no header fields at all).
pub fn header_end(data: &[u8]) -> Option<usize> {
    let blank_at = |start: usize| {
        let rest = data.get(start..)?;
        if rest.starts_with(b"\r\n") {
            Some(start + 2)
        } else if rest.starts_with(b"\n") {
            Some(start + 1)
        } else {
            None
        }
    };
    std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', data).map(|i| i + 1))
        .find_map(blank_at)
}

/// One header field: its bytes, folded continuation lines included.
fn fields(block: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < block.len() {
        let end = memchr::memchr(b'\n', &block[i..]).map_or(block.len(), |n| i + n + 1);
        let continuation = matches!(block.get(end), Some(b' ') | Some(b'\t'));
        if !continuation {
            out.push(&block[start..end]);
            start = end;
        }
        i = end;
    }
    if start < block.len() {
        out.push(&block[start..]);
    }
    out
}

/// True when `field` is named `name`. Blanks before the colon are obsolete syntax that
/// receivers must still accept (RFC 5322 §4.5.3), so `From :` is a From field too.
fn name_is(field: &[u8], name: &[u8]) -> bool {
    let (Some(head), Some(rest)) = (field.get(..name.len()), field.get(name.len()..)) else {
        return false;
    };
    head.eq_ignore_ascii_case(name)
        && rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b':')
}

/// The unfolded value of a field (after its colon, RFC 5322 §2.2.3), trimmed.
fn unfolded_value(field: &[u8]) -> Vec<u8> {
    let value = match memchr::memchr(b':', field) {
        Some(colon) => &field[colon + 1..],
        None => &[][..],
    };
    value
        .trim_ascii()
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// The display name of a From value (`"Scanner" <a@b>` → `"Scanner"`), if it is a plain
/// phrase. Outside quoted strings a phrase has none of the specials that delimit or
/// separate mailboxes (RFC 5322 §3.2.3, §3.4); a name that has them (`"A" <a@x>, "B"` of
/// a two-author list, or `<evil@x>`) would make the rewritten field name a second
/// mailbox beside the account, so it is dropped.
fn display_name(value: &[u8]) -> Option<&[u8]> {
    let lt = memchr::memrchr(b'<', value)?;
    let name = value[..lt].trim_ascii();
    let mut quoted = false;
    let mut escaped = false;
    for &b in name {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            (false, _, b'<' | b'>' | b'@' | b',' | b';' | b':' | b'(' | b')' | b'\\') => {
                return None
            }
            _ => {}
        }
    }
    (!name.is_empty() && !quoted).then_some(name)
}

/// True when a From value names `account` and nothing else: the bare address, or
/// `<account>` at its very end after at most a plain display name.
fn names_only(value: &[u8], account: &str) -> bool {
    let account = account.as_bytes();
    if value.eq_ignore_ascii_case(account) {
        return true;
    }
    let Some(lt) = memchr::memrchr(b'<', value) else {
        return false;
    };
    let Some(inner) = value[lt + 1..].strip_suffix(b">") else {
        return false;
    };
    inner.eq_ignore_ascii_case(account)
        && (value[..lt].trim_ascii().is_empty() || display_name(value).is_some())
}

/// The line ending a rewritten block uses: the block's own, bare LF only when it has LFs
/// and no CRLF (printers that send bare LF). An empty block gets CRLF: a bare LF added
/// before the end of data would itself look like smuggling to the upstream.
fn newline_of(block: &[u8]) -> &'static [u8] {
    let has_lf = memchr::memchr(b'\n', block).is_some();
    if has_lf && memchr::memmem::find(block, b"\r\n").is_none() {
        b"\n"
    } else {
        b"\r\n"
    }
}

/// Rewrites the header block `block` (the message up to and including the blank line)
/// so that it has exactly one `From:`, naming `account`, and no `Sender:`. Returns
/// `None` when nothing needs to change.
pub fn rewrite_originator(block: &[u8], account: &str) -> Option<Vec<u8>> {
    let fields = fields(block);
    let newline = newline_of(block);
    let is_sender = |f: &&[u8]| name_is(f, b"Sender");
    let froms: Vec<usize> = (0..fields.len())
        .filter(|&i| name_is(fields[i], b"From"))
        .collect();
    let has_reply_to = fields.iter().any(|f| name_is(f, b"Reply-To"));
    let has_sender = fields.iter().any(is_sender);
    let mut out = Vec::with_capacity(block.len() + account.len() + 64);
    match froms.first() {
        None => {
            // Continuation lines at the very top belong to no field; a From put before
            // them would absorb them (RFC 5322 §2.2.3), address and all. It goes after.
            let orphan = match fields.first() {
                Some(f) if matches!(f.first(), Some(b' ' | b'\t')) => 1,
                _ => 0,
            };
            for f in &fields[..orphan] {
                out.extend_from_slice(f);
                if !f.ends_with(b"\n") {
                    out.extend_from_slice(newline);
                }
            }
            out.extend_from_slice(b"From: <");
            out.extend_from_slice(account.as_bytes());
            out.extend_from_slice(b">");
            out.extend_from_slice(newline);
            for f in fields[orphan..].iter().filter(|f| !is_sender(f)) {
                out.extend_from_slice(f);
            }
        }
        Some(&idx) => {
            let unfolded = unfolded_value(fields[idx]);
            if froms.len() == 1 && names_only(&unfolded, account) {
                // The From is right: only Sender fields (if any) go.
                if !has_sender {
                    return None;
                }
                fields
                    .iter()
                    .filter(|f| !is_sender(f))
                    .for_each(|f| out.extend_from_slice(f));
                return Some(out);
            }
            for (i, f) in fields.iter().enumerate() {
                if i != idx {
                    // RFC 5322 §3.6 allows one From; another would be a second sender.
                    if !froms.contains(&i) && !is_sender(f) {
                        out.extend_from_slice(f);
                    }
                    continue;
                }
                out.extend_from_slice(b"From: ");
                if let Some(name) = display_name(&unfolded) {
                    out.extend_from_slice(name);
                    out.push(b' ');
                }
                out.push(b'<');
                out.extend_from_slice(account.as_bytes());
                out.push(b'>');
                out.extend_from_slice(newline);
                if !has_reply_to {
                    out.extend_from_slice(b"Reply-To: ");
                    out.extend_from_slice(&unfolded);
                    out.extend_from_slice(newline);
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
