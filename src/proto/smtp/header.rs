//! `rewrite_sender = "header"`: rewrites the message's `From:` header to the account
//! address, keeping the display name and adding `Reply-To:` with the original sender
//! (RFC 5322 §3.6.2), so replies still reach the person or device that wrote it. QQ
//! rejects a missing From (`550 The "From" header is missing or invalid`), so one is
//! added when absent.

/// The end of the header block (`CRLF CRLF`, or a bare-LF form), as the index just after it.
pub fn header_end(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"\r\n") {
        return Some(2);
    }
    let crlf = memchr::memmem::find(data, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(data, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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

fn name_is(field: &[u8], name: &[u8]) -> bool {
    field.len() > name.len()
        && field[..name.len()].eq_ignore_ascii_case(name)
        && field[name.len()] == b':'
}

/// The display name of a From value (`"Scanner" <a@b>` → `"Scanner"`), if any.
fn display_name(value: &[u8]) -> Option<&[u8]> {
    let lt = memchr::memrchr(b'<', value)?;
    let name = value[..lt].trim_ascii();
    (!name.is_empty()).then_some(name)
}

/// The address of a From value (`"Scanner" <a@b>` → `a@b`).
fn address(value: &[u8]) -> &[u8] {
    match (memchr::memrchr(b'<', value), memchr::memrchr(b'>', value)) {
        (Some(lt), Some(gt)) if gt > lt => &value[lt + 1..gt],
        _ => value.trim_ascii(),
    }
}

/// Rewrites the header block `block` (the message up to and including the blank line)
/// so that `From:` names `account`. Returns `None` when nothing needs to change.
pub fn rewrite_from(block: &[u8], account: &str) -> Option<Vec<u8>> {
    let fields = fields(block);
    let newline: &[u8] = if block.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let from = fields.iter().position(|f| name_is(f, b"From"));
    let has_reply_to = fields.iter().any(|f| name_is(f, b"Reply-To"));
    let mut out = Vec::with_capacity(block.len() + account.len() + 64);
    match from {
        None => {
            out.extend_from_slice(b"From: <");
            out.extend_from_slice(account.as_bytes());
            out.extend_from_slice(b">");
            out.extend_from_slice(newline);
            out.extend_from_slice(block);
        }
        Some(idx) => {
            let field = fields[idx];
            let value = field[5..].trim_ascii();
            // Unfold for parsing (RFC 5322 §2.2.3).
            let unfolded: Vec<u8> = value
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            if address(&unfolded).eq_ignore_ascii_case(account.as_bytes()) {
                return None;
            }
            for (i, f) in fields.iter().enumerate() {
                if i != idx {
                    out.extend_from_slice(f);
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
mod tests {
    use super::*;

    #[test]
    fn rewrite_table() {
        let acc = "12345@qq.com";
        let cases: &[(&str, Option<&str>)] = &[
            (
                "From: \"Scanner\" <scan@printer.local>\r\nSubject: x\r\n\r\n",
                Some("From: \"Scanner\" <12345@qq.com>\r\nReply-To: \"Scanner\" <scan@printer.local>\r\nSubject: x\r\n\r\n"),
            ),
            (
                "Subject: x\r\nfrom: scan@printer.local\r\n\r\n",
                Some("Subject: x\r\nFrom: <12345@qq.com>\r\nReply-To: scan@printer.local\r\n\r\n"),
            ),
            (
                "From: Office\r\n <scan@printer.local>\r\nReply-To: boss@x.com\r\n\r\n",
                Some("From: Office <12345@qq.com>\r\nReply-To: boss@x.com\r\n\r\n"),
            ),
            ("From: Me <12345@QQ.com>\r\n\r\n", None),
            (
                "Subject: no from\r\n\r\n",
                Some("From: <12345@qq.com>\r\nSubject: no from\r\n\r\n"),
            ),
            (
                "From: =?UTF-8?B?5omr5o+P5Luq?= <s@p.l>\nTo: a@b\n\n",
                Some("From: =?UTF-8?B?5omr5o+P5Luq?= <12345@qq.com>\nReply-To: =?UTF-8?B?5omr5o+P5Luq?= <s@p.l>\nTo: a@b\n\n"),
            ),
        ];
        for (input, want) in cases {
            let got = rewrite_from(input.as_bytes(), acc).map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_deref(), *want, "{input:?}");
        }
    }

    #[test]
    fn header_end_table() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"\r\nbody"), Some(2));
        assert_eq!(header_end(b"A: b\r\n"), None);
    }
}
