//! Which mailbox is the Sent folder, from the server's own answers (pure, no I/O): a
//! `LIST` entry marked `\Sent` (SPECIAL-USE, RFC 6154 §2), else an `XLIST` entry marked
//! `\Sent` or `\SentMail` (the pre-RFC 6154 Gmail/QQ extension), else the provider
//! preset's name if the server lists it. Names are compared and sent in their wire form:
//! modified UTF-7 (RFC 3501 §5.1.3), which [`mutf7`] produces for the preset's name.

use base64::Engine as _;

/// One mailbox from a `* LIST` or `* XLIST` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name attributes (`\Sent`, `\HasNoChildren`, ...), as sent.
    pub attrs: Vec<Vec<u8>>,
    /// The mailbox name in its wire form (modified UTF-7), quoting or literal undone.
    pub name: Vec<u8>,
}

impl Listed {
    fn has(&self, attr: &[u8]) -> bool {
        self.attrs.iter().any(|a| a.eq_ignore_ascii_case(attr))
    }
}

/// Where the Sent folder was found, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Marked `\Sent` in LIST (RFC 6154).
    SpecialUse,
    /// Marked `\Sent` or `\SentMail` in XLIST.
    Xlist,
    /// The provider preset's name, listed by the server.
    Preset,
}

/// Parses one untagged `LIST` or `XLIST` response (RFC 3501 §7.2.2): `* LIST (attrs)
/// delimiter name`, the name an atom, a quoted string, or a literal (which
/// `upstream::imap::read_response` keeps inline as `{n}\r\n<bytes>`). `None` for any other line.
pub fn parse_list(line: &[u8]) -> Option<Listed> {
    let upper = line.get(..8)?.to_ascii_uppercase();
    let rest = if upper.starts_with(b"* LIST ") {
        &line[7..]
    } else if upper.starts_with(b"* XLIST ") {
        &line[8..]
    } else {
        return None;
    };
    let rest = rest.strip_prefix(b"(")?;
    let close = memchr::memchr(b')', rest)?;
    let attrs = rest[..close]
        .split(|&b| b == b' ')
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let rest = rest[close + 1..].strip_prefix(b" ")?;
    // The hierarchy delimiter: a quoted character or NIL.
    let (_, rest) = string(rest)?;
    let rest = rest.strip_prefix(b" ")?;
    let (name, tail) = string(rest)?;
    if !tail.trim_ascii().is_empty() {
        return None;
    }
    Some(Listed { attrs, name })
}

/// One IMAP string or atom at the start of `s`, and what follows it.
fn string(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    if let Some(q) = s.strip_prefix(b"\"") {
        let mut out = Vec::new();
        let mut i = 0;
        while i < q.len() {
            match q[i] {
                b'\\' => {
                    out.push(*q.get(i + 1)?);
                    i += 2;
                }
                b'"' => return Some((out, &q[i + 1..])),
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        return None;
    }
    if let Some(lit) = s.strip_prefix(b"{") {
        let close = memchr::memchr(b'}', lit)?;
        let digits = lit[..close].strip_suffix(b"+").unwrap_or(&lit[..close]);
        let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let data = lit[close + 1..].strip_prefix(b"\r\n")?;
        return Some((data.get(..n)?.to_vec(), &data[n..]));
    }
    let end = s
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_vec(), &s[end..]))
}

/// The first mailbox in `lines` carrying one of `attrs`.
fn marked(lines: &[&[u8]], attrs: &[&[u8]]) -> Option<Vec<u8>> {
    lines
        .iter()
        .filter_map(|l| parse_list(l))
        .find(|m| attrs.iter().any(|a| m.has(a)))
        .map(|m| m.name)
}

/// The Sent folder from the answers to `LIST "" "*"` and, if the server offers it,
/// `XLIST "" "*"`, else the preset's name (UTF-8) when `LIST` shows it; `None`: no Sent folder.
pub fn choose(list: &[&[u8]], xlist: &[&[u8]], preset: &str) -> Option<(Vec<u8>, Found)> {
    if let Some(name) = marked(list, &[b"\\Sent"]) {
        return Some((name, Found::SpecialUse));
    }
    if let Some(name) = marked(xlist, &[b"\\Sent", b"\\SentMail"]) {
        return Some((name, Found::Xlist));
    }
    let wire = mutf7(preset);
    list.iter()
        .filter_map(|l| parse_list(l))
        .any(|m| m.name == wire.as_bytes())
        .then(|| (wire.into_bytes(), Found::Preset))
}

/// `name` in IMAP's modified UTF-7 (RFC 3501 §5.1.3): printable ASCII as itself, `&` as
/// `&-`, anything else as UTF-16BE in base64 with `,` for `/`, no padding, between `&`
/// and `-`.
pub fn mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&b64.replace('/', ","));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            match c {
                '&' => out.push_str("&-"),
                c => out.push(c),
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests;
