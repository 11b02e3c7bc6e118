//! `add_missing` and the collector that applies it, as tables (block in -> block out).

use super::*;
use crate::proto::smtp::header::{HeaderCollector, Headers};

const ACC: &str = "12345@qq.com";

fn values() -> Missing {
    Missing {
        date: "Mon, 7 Dec 2026 08:00:00 +0800".into(),
        message_id: "<1.2.3@gw.example>".into(),
    }
}

const ALL3: &str =
    "From: <12345@qq.com>\r\nDate: Mon, 7 Dec 2026 08:00:00 +0800\r\nMessage-ID: <1.2.3@gw.example>\r\n";

#[test]
fn add_missing_table() {
    let cases: Vec<(String, Option<String>)> = vec![
        // Nothing there: all three, before the blank line.
        ("Subject: x\r\n\r\n".into(), Some(format!("Subject: x\r\n{ALL3}\r\n"))),
        // No header block at all (an empty message).
        (String::new(), Some(ALL3.into())),
        // A message that is all header lines (no blank line): added at its end.
        ("Subject: x\r\n".into(), Some(format!("Subject: x\r\n{ALL3}"))),
        // All present, in any case and with obsolete blanks before the colon: untouched.
        (
            "from: a@b\r\nDATE : Sun, 6 Dec 2026 01:00:00 +0000\r\nmessage-id: <x@y>\r\n\r\n".into(),
            None,
        ),
        // Only what is missing; folded fields stay byte for byte.
        (
            "From: \"Scanner\"\r\n <scan@printer.local>\r\nSubject: a\r\n b\r\n\r\n".into(),
            Some(
                "From: \"Scanner\"\r\n <scan@printer.local>\r\nSubject: a\r\n b\r\n\
                 Date: Mon, 7 Dec 2026 08:00:00 +0800\r\nMessage-ID: <1.2.3@gw.example>\r\n\r\n"
                    .into(),
            ),
        ),
        (
            "Message-ID: <m@x>\r\nDate: Sun, 6 Dec 2026 01:00:00 +0000\r\n\r\n".into(),
            Some(
                "Message-ID: <m@x>\r\nDate: Sun, 6 Dec 2026 01:00:00 +0000\r\n\
                 From: <12345@qq.com>\r\n\r\n"
                    .into(),
            ),
        ),
        // A bare-LF block gets bare-LF fields.
        (
            "Subject: x\n\n".into(),
            Some(
                "Subject: x\nFrom: <12345@qq.com>\nDate: Mon, 7 Dec 2026 08:00:00 +0800\n\
                 Message-ID: <1.2.3@gw.example>\n\n"
                    .into(),
            ),
        ),
        // `From` in a longer name is not a From field.
        (
            "From-Device: scanner\r\nDate: d\r\nMessage-ID: <m@x>\r\n\r\n".into(),
            Some("From-Device: scanner\r\nDate: d\r\nMessage-ID: <m@x>\r\nFrom: <12345@qq.com>\r\n\r\n".into()),
        ),
    ];
    for (input, want) in cases {
        let got = add_missing(input.as_bytes(), &values(), ACC)
            .map(|v| String::from_utf8(v).expect("utf-8"));
        assert_eq!(got, want, "{input:?}");
    }
}

/// Feeds `msg` in `chunk`-sized pieces; returns what the collector released.
fn collect(mut c: HeaderCollector, msg: &[u8], chunk: usize) -> Option<Vec<u8>> {
    let pieces: Vec<&[u8]> = msg.chunks(chunk).collect();
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        match c.feed(piece, i + 1 == pieces.len(), ACC) {
            Headers::NeedMore => {}
            Headers::Ready(bytes) => {
                out.extend_from_slice(&bytes);
                pieces[i + 1..]
                    .iter()
                    .for_each(|p| out.extend_from_slice(p));
                return Some(out);
            }
            Headers::TooLarge | Headers::BareCr => return None,
        }
    }
    None
}

#[test]
fn collector_adds_once_whatever_the_chunking() {
    let big = format!(
        "Subject: x\r\nX-Pad: {}\r\n\r\nbody\r\n.\r\n",
        "p".repeat(200)
    );
    let cases: Vec<(&str, HeaderCollector, String, Option<String>)> = vec![
        (
            "adding only",
            HeaderCollector::adding_only(4096, values()),
            "Subject: x\r\n\r\nbody\r\n.\r\n".into(),
            Some(format!("Subject: x\r\n{ALL3}\r\nbody\r\n.\r\n")),
        ),
        (
            "adding only, whole message is headers",
            HeaderCollector::adding_only(4096, values()),
            "Subject: x\r\n.\r\n".into(),
            Some(format!("Subject: x\r\n{ALL3}.\r\n")),
        ),
        (
            "adding only: a block over the limit passes unchanged",
            HeaderCollector::adding_only(64, values()),
            big.clone(),
            Some(big.clone()),
        ),
        (
            "adding only: a bare CR is no reason to refuse",
            HeaderCollector::adding_only(4096, values()),
            "Subject: a\rb\r\n\r\nx\r\n.\r\n".into(),
            Some(format!("Subject: a\rb\r\n{ALL3}\r\nx\r\n.\r\n")),
        ),
        (
            "From rewrite, then the rest added once",
            HeaderCollector::new(4096).also_adding(values()),
            "From: <scan@printer.local>\r\n\r\nx\r\n.\r\n".into(),
            Some(
                "From: <12345@qq.com>\r\nReply-To: <scan@printer.local>\r\n\
                 Date: Mon, 7 Dec 2026 08:00:00 +0800\r\nMessage-ID: <1.2.3@gw.example>\r\n\r\nx\r\n.\r\n"
                    .into(),
            ),
        ),
        (
            "From rewrite still refuses a block over the limit",
            HeaderCollector::new(64).also_adding(values()),
            big,
            None,
        ),
    ];
    for (name, collector, msg, want) in cases {
        for chunk in [1, 2, 3, 5, 7, 64, 512] {
            let got = collect(collector.clone(), msg.as_bytes(), chunk)
                .map(|v| String::from_utf8(v).expect("utf-8"));
            assert_eq!(got, want, "{name}, chunk {chunk}");
        }
    }
}
