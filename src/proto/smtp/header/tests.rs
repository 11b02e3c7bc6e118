//! The header rewrite and the header collector, as tables and properties.

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
        let got = rewrite_originator(input.as_bytes(), acc).map(|v| String::from_utf8(v).unwrap());
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
        b"Sender",
        b"sender ",
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
        let _ = rewrite_originator(&block, ACCOUNT);
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
        let result = rewrite_originator(block, ACCOUNT);
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
        prop_assert!(
            !fields.iter().any(|(name, _)| name.eq_ignore_ascii_case(b"Sender")),
            "a Sender field is left in {:?}", shown
        );
        let value = froms[0].trim_ascii();
        let name = value
            .strip_suffix(format!("<{ACCOUNT}>").as_bytes())
            .map(<[u8]>::trim_ascii);
        prop_assert!(
            name.is_some_and(plain_phrase) || value == ACCOUNT.as_bytes(),
            "From does not name only the account: {:?}", shown
        );
        if let Some(out) = result {
            prop_assert_eq!(rewrite_originator(&out, ACCOUNT), None, "unstable: {:?}", shown);
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
        let got = rewrite_originator(input.as_bytes(), acc).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got.as_deref(), *want, "{input:?}");
    }
    // A blank first line (bare LF too) means there are no header fields at all.
    assert_eq!(header_end(b"\nFrom: x\n\nbody"), Some(1));
    assert_eq!(header_end(b"A: b\n\r\nbody"), Some(7));
}

/// Sender names the transmitting agent (RFC 5322 §3.6.2), which is the account once From
/// is: every Sender field goes, folded or not, even beside a From already right.
#[test]
fn sender_is_dropped_table() {
    let acc = "12345@qq.com";
    let cases: &[(&str, Option<&str>)] = &[
        (
            "From: a@x.com\r\nSender: evil@x.com\r\nSubject: s\r\n\r\n",
            Some("From: <12345@qq.com>\r\nReply-To: a@x.com\r\nSubject: s\r\n\r\n"),
        ),
        (
            "From: <12345@qq.com>\r\nSender: \"Boss\"\r\n\t<boss@evil.example>\r\n\r\n",
            Some("From: <12345@qq.com>\r\n\r\n"),
        ),
        (
            "sender : a@x.com\nSENDER: b@y.com\nTo: t@z\n\n",
            Some("From: <12345@qq.com>\nTo: t@z\n\n"),
        ),
        (
            " orphan\r\nSender: evil@x.com\r\n\r\n",
            Some(" orphan\r\nFrom: <12345@qq.com>\r\n\r\n"),
        ),
        // Not a Sender field: kept.
        (
            "From: <12345@qq.com>\r\nX-Sender: a@x.com\r\nSenders: b\r\n\r\n",
            None,
        ),
        // A message with nothing before its end gets a CRLF From, never a bare LF.
        ("", Some("From: <12345@qq.com>\r\n")),
    ];
    for (input, want) in cases {
        let got = rewrite_originator(input.as_bytes(), acc).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got.as_deref(), *want, "{input:?}");
    }
}

/// What a collector makes of `stream` (a whole DATA stream, terminator included) fed in
/// pieces of `chunk` bytes: `Some(bytes sent)` or `None` for a refusal ([`Headers::TooLarge`]
/// or [`Headers::BareCr`]).
fn collect(stream: &[u8], chunk: usize, limit: usize) -> Option<Vec<u8>> {
    let mut c = HeaderCollector::new(limit);
    let pieces: Vec<&[u8]> = stream.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let ended = i + 1 == pieces.len();
        match c.feed(piece, ended, ACCOUNT) {
            Headers::NeedMore => assert!(!ended, "NeedMore at the end of data"),
            Headers::TooLarge | Headers::BareCr => return None,
            Headers::Ready(mut out) => {
                out.extend(pieces[i + 1..].iter().flat_map(|p| p.iter()));
                return Some(out);
            }
        }
    }
    panic!("no decision for {:?}", String::from_utf8_lossy(stream));
}

/// `Subject: xxx…` padded so that the line (CRLF included) is `len` bytes long.
fn subject_line(len: usize) -> String {
    format!("Subject: {}\r\n", "x".repeat(len - 11))
}

#[test]
fn collector_table_at_every_chunk_size() {
    const LIMIT: usize = 64;
    let from = "From: a@x.com\r\n";
    let rewritten = "From: <12345@qq.com>\r\nReply-To: a@x.com\r\n";
    // (stream, what is sent: None = refused)
    let cases: Vec<(String, Option<String>)> = vec![
        (
            format!("{from}\r\nbody\r\n.\r\n"),
            Some(format!("{rewritten}\r\nbody\r\n.\r\n")),
        ),
        // A header block of exactly the limit, blank line included, is rewritten ...
        (
            format!(
                "{}{from}\r\nb\r\n.\r\n",
                subject_line(LIMIT - 2 - from.len())
            ),
            Some(format!(
                "{}{rewritten}\r\nb\r\n.\r\n",
                subject_line(LIMIT - 2 - from.len())
            )),
        ),
        // ... one byte more is refused, wherever the From is.
        (
            format!(
                "{}{from}\r\nb\r\n.\r\n",
                subject_line(LIMIT - 1 - from.len())
            ),
            None,
        ),
        (
            format!("{}{from}\r\nb\r\n.\r\n", subject_line(LIMIT * 4)),
            None,
        ),
        // A message that is all header: the limit holds for it without the terminator.
        (
            format!("{}{from}.\r\n", subject_line(LIMIT - from.len())),
            Some(format!(
                "{}{rewritten}.\r\n",
                subject_line(LIMIT - from.len())
            )),
        ),
        (
            format!("{}{from}.\r\n", subject_line(LIMIT + 1 - from.len())),
            None,
        ),
        // A bare CR in the header block: a reader breaking lines there would see a
        // From the rewrite did not, so the message is refused; one in the body passes.
        (
            format!("Subject: x\rFrom: boss@evil.example\r\n{from}\r\nb\r\n.\r\n"),
            None,
        ),
        (format!("{from}X-A: 1\r\r\n\r\nb\r\n.\r\n"), None),
        (
            format!("{from}\r\nbody\rmore\r\n.\r\n"),
            Some(format!("{rewritten}\r\nbody\rmore\r\n.\r\n")),
        ),
        // The blank line may be a bare LF; the empty message gets its From.
        (
            "From: a@x.com\n\nbody\r\n.\r\n".to_owned(),
            Some("From: <12345@qq.com>\nReply-To: a@x.com\n\nbody\r\n.\r\n".to_owned()),
        ),
        (
            ".\r\n".to_owned(),
            Some("From: <12345@qq.com>\r\n.\r\n".to_owned()),
        ),
        (
            "\r\nFrom: a@x.com\r\n.\r\n".to_owned(),
            Some("From: <12345@qq.com>\r\n\r\nFrom: a@x.com\r\n.\r\n".to_owned()),
        ),
    ];
    for (stream, want) in &cases {
        for chunk in [1, 2, 3, 4, 5, 7, 16, 64, 512] {
            let got = collect(stream.as_bytes(), chunk, LIMIT)
                .map(|v| String::from_utf8(v).expect("UTF-8"));
            assert_eq!(&got, want, "{stream:?} chunk {chunk}");
        }
    }
}

#[test]
fn too_large_reply_names_the_limit() {
    let kib = format!("{} KiB", MAX_HEADER / 1024);
    assert!(HEADER_TOO_LARGE.starts_with("552 5.3.4 "));
    assert!(HEADER_TOO_LARGE.ends_with("\r\n"));
    assert!(HEADER_TOO_LARGE.contains(&kib), "{HEADER_TOO_LARGE}");
    assert_eq!(HEADER_TOO_LARGE.matches("\r\n").count(), 1);
}

proptest! {
    /// Chunking never changes what is sent (or whether the message is refused), and what
    /// is sent is the rewrite of the header block as `header_end` finds it, or the refusal
    /// exactly when that block is over the limit.
    #[test]
    fn collector_matches_the_whole_message_view(
        header in header_block(),
        body in proptest::sample::select(BODIES),
        limit in 0usize..200,
        chunk in 1usize..40,
    ) {
        let mut stream = [&header[..], body].concat();
        if !stream.is_empty() && !stream.ends_with(b"\r\n") {
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b".\r\n");
        let whole = collect(&stream, stream.len(), limit);
        prop_assert_eq!(&collect(&stream, chunk, limit), &whole);
        let end = header_end(&stream).unwrap_or(stream.len() - 3);
        if end > limit {
            prop_assert_eq!(whole, None);
        } else {
            let (block, rest) = stream.split_at(end);
            let mut want = rewrite_originator(block, ACCOUNT).unwrap_or_else(|| block.to_vec());
            want.extend_from_slice(rest);
            prop_assert_eq!(whole, Some(want));
        }
    }
}
