//! `rewrite_sender = "header"`: rewrites the message's `From:` header to the account
//! address, keeping the display name and adding `Reply-To:` with the original sender
//! (RFC 5322 §3.6.2), so replies still reach the person or device that wrote it. QQ
//! rejects a missing From (`550 The "From" header is missing or invalid`), so one is
//! added when absent.

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

/// Rewrites the header block `block` (the message up to and including the blank line)
/// so that it has exactly one `From:` and it names `account`. Returns `None` when nothing
/// needs to change.
pub fn rewrite_from(block: &[u8], account: &str) -> Option<Vec<u8>> {
    let fields = fields(block);
    let newline: &[u8] = if block.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let froms: Vec<usize> = (0..fields.len())
        .filter(|&i| name_is(fields[i], b"From"))
        .collect();
    let has_reply_to = fields.iter().any(|f| name_is(f, b"Reply-To"));
    let mut out = Vec::with_capacity(block.len() + account.len() + 64);
    match froms.first() {
        None => {
            // Continuation lines at the very top belong to no field; a From put before
            // them would absorb them (RFC 5322 §2.2.3), address and all. It goes after.
            let at = match fields.first() {
                Some(f) if matches!(f.first(), Some(b' ' | b'\t')) => f.len(),
                _ => 0,
            };
            out.extend_from_slice(&block[..at]);
            if at > 0 && !block[..at].ends_with(b"\n") {
                out.extend_from_slice(newline);
            }
            out.extend_from_slice(b"From: <");
            out.extend_from_slice(account.as_bytes());
            out.extend_from_slice(b">");
            out.extend_from_slice(newline);
            out.extend_from_slice(&block[at..]);
        }
        Some(&idx) => {
            let unfolded = unfolded_value(fields[idx]);
            if froms.len() == 1 && names_only(&unfolded, account) {
                return None;
            }
            for (i, f) in fields.iter().enumerate() {
                if i != idx {
                    // RFC 5322 §3.6 allows one From; another would be a second sender.
                    if !froms.contains(&i) {
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

    use proptest::prelude::*;

    const ACCOUNT: &str = "12345@qq.com";
    /// Bodies after the generated header; a From there must stay untouched.
    const BODIES: &[&[u8]] = &[b"", b"From: evil@x.com\r\n", b"\nFrom: <evil@x.com>\n\nx\n"];

    /// Header fields of a block the way a lenient reader sees them (RFC 5322 §2.2.3
    /// unfolding, §4.5 obsolete blanks before the colon): `(name, unfolded value)`, up to
    /// the first blank line; continuation lines before any field belong to none.
    fn parse_fields(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut orphan = true;
        for line in block.split_inclusive(|&b| b == b'\n') {
            let text: Vec<u8> = line
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            if text.is_empty() {
                break;
            }
            if matches!(text[0], b' ' | b'\t') {
                if let (false, Some(last)) = (orphan, out.last_mut()) {
                    last.1.extend_from_slice(&text);
                }
                continue;
            }
            orphan = false;
            let colon = text.iter().position(|&b| b == b':').unwrap_or(text.len());
            let name = text[..colon].trim_ascii_end().to_vec();
            let value = text.get(colon + 1..).unwrap_or_default().to_vec();
            out.push((name, value));
        }
        out
    }

    /// A display name that cannot be read as an address: outside quoted strings, none
    /// of the specials that separate or delimit mailboxes (RFC 5322 §3.2.3).
    fn plain_phrase(name: &[u8]) -> bool {
        let mut quoted = false;
        let mut escaped = false;
        for &b in name {
            match (quoted, escaped, b) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, _, b'"') => quoted = !quoted,
                (false, _, b'<' | b'>' | b'@' | b',' | b';' | b':' | b'(' | b')' | b'\\') => {
                    return false
                }
                _ => {}
            }
        }
        !quoted
    }

    fn field_name() -> impl Strategy<Value = Vec<u8>> {
        let names: &[&[u8]] = &[
            b"From",
            b"from",
            b"FROM",
            b"From ",
            b"From\t",
            b"Reply-To",
            b"Subject",
            b"To",
            b"X-Mailer",
            b" ",
            b"\t",
            b"",
            b"Fro",
        ];
        proptest::sample::select(names).prop_map(<[u8]>::to_vec)
    }

    fn field_value() -> impl Strategy<Value = Vec<u8>> {
        let tricky: &[&[u8]] = &[
            b" \"Scanner\" <scan@printer.local>",
            b" <evil@x.com> <scan@p.l>",
            b" \"A\" <a@x.com>, \"B\" <b@y.com>",
            b" a@x.com, b@y.com",
            b" Office <12345@qq.com>",
            b" 12345@qq.com",
            b" =?UTF-8?B?5omr5o+P5Luq?= <s@p.l>",
            b" \"quoted <x@y> \\\" \" <s@p.l>",
            b" <>",
            b"",
        ];
        prop_oneof![
            proptest::sample::select(tricky).prop_map(<[u8]>::to_vec),
            "[ -~]{0,30}".prop_map(String::into_bytes),
        ]
    }

    /// A header block: fields (some folded, some duplicated, odd names and leading
    /// continuation lines included), one line ending throughout, and maybe a blank line.
    fn header_block() -> impl Strategy<Value = Vec<u8>> {
        let field = (field_name(), field_value(), any::<bool>());
        (
            proptest::collection::vec(field, 0..8),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(fields, crlf, blank)| {
                let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                let mut out = Vec::new();
                for (name, value, fold) in fields {
                    out.extend_from_slice(&name);
                    if !name.trim_ascii().is_empty() {
                        out.push(b':');
                    }
                    match (fold, value.iter().rposition(|&b| b == b' ')) {
                        (true, Some(at)) if at > 0 => {
                            out.extend_from_slice(&value[..at]);
                            out.extend_from_slice(nl);
                            out.extend_from_slice(&value[at..]);
                        }
                        _ => out.extend_from_slice(&value),
                    }
                    out.extend_from_slice(nl);
                }
                if blank {
                    out.extend_from_slice(nl);
                }
                out
            })
    }

    proptest! {
        /// Arbitrary bytes never panic either function.
        #[test]
        fn random_bytes_never_panic(block in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Some(end) = header_end(&block) {
                prop_assert!(end <= block.len());
            }
            let _ = rewrite_from(&block, ACCOUNT);
        }

        /// Whenever a rewrite happens, the result has exactly one From field, naming the
        /// account after at most a plain display name, and rewriting it again changes
        /// nothing. Without a rewrite, the header already had exactly that. The message is
        /// split as the relay splits it: the header block up to `header_end`, or all of it.
        #[test]
        fn rewrite_leaves_exactly_one_from_naming_the_account(
            header in header_block(),
            body in proptest::sample::select(BODIES),
        ) {
            let message = [&header[..], body].concat();
            let end = header_end(&message).unwrap_or(message.len());
            let (block, rest) = message.split_at(end);
            let result = rewrite_from(block, ACCOUNT);
            let mut checked = result.clone().unwrap_or_else(|| block.to_vec());
            checked.extend_from_slice(rest);
            let fields = parse_fields(&checked);
            let froms: Vec<&Vec<u8>> = fields
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(b"From"))
                .map(|(_, value)| value)
                .collect();
            let shown = String::from_utf8_lossy(&checked).into_owned();
            prop_assert_eq!(froms.len(), 1, "From fields in {:?}", shown);
            let value = froms[0].trim_ascii();
            let name = value
                .strip_suffix(format!("<{ACCOUNT}>").as_bytes())
                .map(<[u8]>::trim_ascii);
            prop_assert!(
                name.is_some_and(plain_phrase) || value == ACCOUNT.as_bytes(),
                "From does not name only the account: {:?}", shown
            );
            if let Some(out) = result {
                prop_assert_eq!(rewrite_from(&out, ACCOUNT), None, "unstable: {:?}", shown);
            }
        }
    }

    /// The spoofing shapes the property test found, one by one.
    #[test]
    fn rewrite_spoofing_table() {
        let acc = "12345@qq.com";
        let cases: &[(&str, Option<&str>)] = &[
            // A second From would be a second sender: dropped.
            (
                "From: a@x.com\r\nFrom: 12345@qq.com\r\n\r\n",
                Some("From: <12345@qq.com>\r\nReply-To: a@x.com\r\n\r\n"),
            ),
            (
                "From: 12345@qq.com\r\nfrom : evil@x.com\r\n\r\n",
                Some("From: <12345@qq.com>\r\nReply-To: 12345@qq.com\r\n\r\n"),
            ),
            // Obsolete blanks before the colon still make a From field.
            (
                "From : evil@x.com\r\n\r\n",
                Some("From: <12345@qq.com>\r\nReply-To: evil@x.com\r\n\r\n"),
            ),
            // Top continuation lines would fold into a From put before them.
            (
                " <evil@x.com>\r\nSubject: x\r\n\r\n",
                Some(" <evil@x.com>\r\nFrom: <12345@qq.com>\r\nSubject: x\r\n\r\n"),
            ),
            // Display names that hold mailbox syntax are not kept.
            (
                "From: \"A\" <a@x.com>, \"B\" <b@y.com>\r\n\r\n",
                Some("From: <12345@qq.com>\r\nReply-To: \"A\" <a@x.com>, \"B\" <b@y.com>\r\n\r\n"),
            ),
            (
                "From: <evil@x.com> <12345@qq.com>\r\n\r\n",
                Some("From: <12345@qq.com>\r\nReply-To: <evil@x.com> <12345@qq.com>\r\n\r\n"),
            ),
            ("From: \"Me <x>\" <12345@qq.com>\r\n\r\n", None),
        ];
        for (input, want) in cases {
            let got = rewrite_from(input.as_bytes(), acc).map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_deref(), *want, "{input:?}");
        }
        // A blank first line (bare LF too) means there are no header fields at all.
        assert_eq!(header_end(b"\nFrom: x\n\nbody"), Some(1));
        assert_eq!(header_end(b"A: b\n\r\nbody"), Some(7));
    }
}
