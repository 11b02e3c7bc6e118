//! Folder choice and modified UTF-7, as tables.

use super::*;

#[test]
fn modified_utf7_table() {
    // RFC 3501 §5.1.3's own example, QQ's folders (FACTS.md), NetEase's Sent, and the
    // edge cases: `&`, a character outside the BMP (a surrogate pair), plain ASCII.
    let cases = [
        ("Sent Messages", "Sent Messages"),
        ("已发送", "&XfJT0ZAB-"),
        ("其他文件夹", "&UXZO1mWHTvZZOQ-"),
        ("其他文件夹/QQ邮件订阅", "&UXZO1mWHTvZZOQ-/QQ&kK5O9ouilgU-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("A&B", "A&-B"),
        ("😀", "&2D3eAA-"),
        ("[Gmail]/Sent Mail", "[Gmail]/Sent Mail"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(mutf7(input), want, "{input:?}");
    }
}

/// Lines of a server's answer.
type Lines = &'static [&'static [u8]];

#[test]
fn list_line_table() {
    type Want = Option<(Lines, &'static [u8])>;
    let cases: &[(&[u8], Want)] = &[
        (
            b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Messages\"\r\n",
            Some((&[b"\\HasNoChildren", b"\\Sent"], b"Sent Messages")),
        ),
        (b"* LIST () \"/\" INBOX\r\n", Some((&[], b"INBOX"))),
        (
            b"* list (\\Sent) NIL Sent\r\n",
            Some((&[b"\\Sent"], b"Sent")),
        ),
        (
            b"* XLIST (\\HasNoChildren \\SentMail) \".\" \"&XfJT0ZAB-\"\r\n",
            Some((&[b"\\HasNoChildren", b"\\SentMail"], b"&XfJT0ZAB-")),
        ),
        (
            b"* LIST (\\Sent) \"/\" {13}\r\nSent Messages\r\n",
            Some((&[b"\\Sent"], b"Sent Messages")),
        ),
        (
            b"* LIST (\\Sent) \"\\\\\" \"a\\\"b\"\r\n",
            Some((&[b"\\Sent"], b"a\"b")),
        ),
        (b"* LSUB (\\Sent) \"/\" Sent\r\n", None),
        (b"* OK still here\r\n", None),
        (b"* LIST (\\Sent \"/\" Sent\r\n", None),
        (b"* LIST (\\Sent) \"/\" \"unterminated\r\n", None),
        (b"* LIST (\\Sent) \"/\" {99}\r\nshort\r\n", None),
        (b"* LIST", None),
    ];
    for (line, want) in cases {
        let got = parse_list(line);
        let want = want.map(|(attrs, name)| Listed {
            attrs: attrs.iter().map(|a| a.to_vec()).collect(),
            name: name.to_vec(),
        });
        assert_eq!(got, want, "{}", line.escape_ascii());
    }
}

const QQ_LIST: Lines = &[
    b"* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n",
    b"* LIST (\\HasNoChildren) \"/\" \"Sent Messages\"\r\n",
    b"* LIST (\\HasNoChildren) \"/\" \"Drafts\"\r\n",
    b"* LIST (\\NoSelect \\HasChildren) \"/\" \"&UXZO1mWHTvZZOQ-\"\r\n",
];
const QQ_XLIST: Lines = &[
    b"* XLIST (\\HasNoChildren \\Inbox) \"/\" \"INBOX\"\r\n",
    b"* XLIST (\\HasNoChildren \\Sent) \"/\" \"Sent Messages\"\r\n",
];
const DOVECOT_LIST: Lines = &[
    b"* LIST (\\HasNoChildren) \".\" INBOX\r\n",
    b"* LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n",
    b"* LIST (\\HasNoChildren) \".\" \"Sent Messages\"\r\n",
];
const NETEASE_LIST: Lines = &[
    b"* LIST () \"/\" \"INBOX\"\r\n",
    b"* LIST () \"/\" \"&g0l6P3ux-\"\r\n",
    b"* LIST () \"/\" \"&XfJT0ZAB-\"\r\n",
];

#[test]
fn folder_choice_table() {
    type Want = Option<(&'static [u8], Found)>;
    let cases: &[(Lines, Lines, &str, Want)] = &[
        // SPECIAL-USE wins over a folder carrying the preset's name.
        (
            DOVECOT_LIST,
            &[],
            "Sent Messages",
            Some((b"Sent", Found::SpecialUse)),
        ),
        // QQ: no SPECIAL-USE, XLIST marks it.
        (
            QQ_LIST,
            QQ_XLIST,
            "Sent Messages",
            Some((b"Sent Messages", Found::Xlist)),
        ),
        // \SentMail (old Gmail XLIST) counts too.
        (
            QQ_LIST,
            &[b"* XLIST (\\SentMail) \"/\" \"Outbox 2\"\r\n"],
            "Sent Messages",
            Some((b"Outbox 2", Found::Xlist)),
        ),
        // Neither: the preset's name, in modified UTF-7, when listed.
        (
            QQ_LIST,
            &[],
            "Sent Messages",
            Some((b"Sent Messages", Found::Preset)),
        ),
        (
            NETEASE_LIST,
            &[],
            "已发送",
            Some((b"&XfJT0ZAB-", Found::Preset)),
        ),
        // The preset's folder is not there: no Sent folder (never created).
        (NETEASE_LIST, &[], "Sent Messages", None),
        (&[], &[], "Sent Messages", None),
    ];
    for (list, xlist, preset, want) in cases {
        let got = choose(list, xlist, preset);
        let want = want.map(|(n, f)| (n.to_vec(), f));
        assert_eq!(got, want, "{preset:?} in {list:?}");
    }
}
