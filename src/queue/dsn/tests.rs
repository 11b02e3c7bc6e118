use super::*;
use crate::queue::classify::Class;
use crate::queue::store::{BodySum, LastError, QueueId, Recipient};
use std::time::{Duration, UNIX_EPOCH};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn env(null_sender: bool, rcpts: Vec<Recipient>) -> Envelope {
    Envelope {
        id: QueueId::parse("0000000000001ABCDEF01").unwrap(),
        account: "alice@qq.com".into(),
        sender: "alice@qq.com".into(),
        null_sender,
        recipients: rcpts,
        queued_at: at(1_800_000_000),
        next_attempt: at(1_800_000_000),
        attempts: 3,
        last_error: Some(LastError {
            class: Class::Temporary,
            text: b"421 4.7.0 Try again later\r\n".to_vec(),
        }),
        possibly_duplicated: false,
        body: BodySum {
            len: 0,
            sha256: [0; 32],
        },
    }
}

fn failed(addr: &str, reply: &[u8]) -> Recipient {
    Recipient {
        addr: addr.into(),
        state: RcptState::Failed {
            reply: reply.to_vec(),
        },
    }
}

fn delivered(addr: &str) -> Recipient {
    Recipient {
        addr: addr.into(),
        state: RcptState::Delivered,
    }
}

const HEADERS: &[u8] =
    b"From: Printer <scan@office.lan>\r\nTo: bob@example.com\r\nSubject: Scan\r\n";

/// A parsed notification: header lines, and each MIME part as (headers, body).
struct Parsed {
    headers: Vec<String>,
    parts: Vec<(Vec<String>, String)>,
}

fn parse(msg: &[u8]) -> Parsed {
    // CRLF only, lines <= 998, 7-bit everywhere.
    assert!(msg.is_ascii(), "8-bit byte in the DSN");
    let text = std::str::from_utf8(msg).unwrap();
    assert!(text.ends_with("\r\n"));
    for line in text.split("\r\n") {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "bare CR/LF: {line:?}"
        );
        assert!(line.len() <= MAX_LINE, "long line: {}", line.len());
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let headers: Vec<String> = head.split("\r\n").map(String::from).collect();
    let ct = head.split_once("boundary=\"").unwrap().1;
    let boundary = ct.split('"').next().unwrap();
    let mut sections: Vec<&str> = body.split(&format!("--{boundary}")).collect();
    let end = sections.pop().unwrap();
    assert_eq!(end, "--\r\n", "closing delimiter last");
    sections.remove(0); // the preamble
    let parts = sections
        .into_iter()
        .map(|s| {
            let s = s.strip_prefix("\r\n").unwrap();
            let (h, b) = s.split_once("\r\n\r\n").unwrap();
            (h.split("\r\n").map(String::from).collect(), b.to_string())
        })
        .collect();
    Parsed { headers, parts }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

fn unbase64(b: &str) -> String {
    let joined: String = b.split("\r\n").collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(joined.trim())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn refusal_report_structure() {
    let e = env(
        false,
        vec![
            delivered("carol@example.com"),
            failed("bob@example.com", b"550 5.1.1 Mailbox not found\r\n"),
            failed(
                "dave@example.com",
                b"553-\xd3\xca\xcf\xe4\r\n553 no such user\r\n",
            ),
        ],
    );
    let b = Bounce::for_envelope(
        &e,
        Reason::Refused,
        "alice@qq.com",
        "gw.lan",
        HEADERS,
        at(1_800_000_100),
        42,
    )
    .unwrap();
    let p = parse(&b.render());
    assert_eq!(header(&p.headers, "To"), Some("<alice@qq.com>"));
    assert_eq!(
        header(&p.headers, "From"),
        Some("\"Mail Delivery System\" <alice@qq.com>")
    );
    assert_eq!(header(&p.headers, "Auto-Submitted"), Some("auto-replied"));
    assert_eq!(
        header(&p.headers, "Date"),
        Some("Fri, 15 Jan 2027 08:01:40 +0000")
    );
    assert!(header(&p.headers, "Subject")
        .unwrap()
        .contains("=?UTF-8?B?"));
    assert!(header(&p.headers, "Content-Type")
        .unwrap()
        .starts_with("multipart/report; report-type=delivery-status;"));
    assert_eq!(p.parts.len(), 3);

    let (h, body) = &p.parts[0];
    assert_eq!(header(h, "Content-Type"), Some("text/plain; charset=utf-8"));
    let human = unbase64(body);
    assert!(
        human.contains("<bob@example.com>: 550 5.1.1 Mailbox not found"),
        "{human}"
    );
    assert!(
        human.contains("<dave@example.com>: 553-\\xd3\\xca\\xcf\\xe4 553 no such user"),
        "{human}"
    );
    assert!(
        !human.contains("carol"),
        "a delivered recipient is not reported"
    );
    assert!(human.contains("未能投递"), "{human}");

    let (h, status) = &p.parts[1];
    assert_eq!(header(h, "Content-Type"), Some("message/delivery-status"));
    let groups: Vec<&str> = status.trim_end().split("\r\n\r\n").collect();
    assert_eq!(
        groups.len(),
        3,
        "per-message fields then one group per recipient"
    );
    let g: Vec<String> = groups[0].split("\r\n").map(String::from).collect();
    assert_eq!(header(&g, "Reporting-MTA"), Some("dns; gw.lan"));
    assert_eq!(
        header(&g, "Arrival-Date"),
        Some("Fri, 15 Jan 2027 08:00:00 +0000")
    );
    let g: Vec<String> = groups[1].split("\r\n").map(String::from).collect();
    assert_eq!(
        header(&g, "Final-Recipient"),
        Some("rfc822; bob@example.com")
    );
    assert_eq!(header(&g, "Action"), Some("failed"));
    assert_eq!(header(&g, "Status"), Some("5.1.1"));
    assert_eq!(
        header(&g, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 Mailbox not found")
    );
    let g: Vec<String> = groups[2].split("\r\n").map(String::from).collect();
    assert_eq!(header(&g, "Status"), Some("5.0.0"));
    assert_eq!(
        header(&g, "Diagnostic-Code"),
        Some("smtp; 553-\\xd3\\xca\\xcf\\xe4 553 no such user")
    );

    let (h, orig) = &p.parts[2];
    assert_eq!(header(h, "Content-Type"), Some("text/rfc822-headers"));
    assert_eq!(orig.trim_end().as_bytes(), HEADERS.trim_ascii_end());
}

#[test]
fn expiry_reports_pending_recipients_with_the_last_error() {
    let e = env(
        false,
        vec![
            Recipient::pending("bob@example.com"),
            delivered("carol@example.com"),
        ],
    );
    assert!(
        Bounce::for_envelope(&e, Reason::Refused, "alice@qq.com", "gw", HEADERS, at(0), 1)
            .is_none(),
        "nothing refused, nothing to say"
    );
    let b = Bounce::for_envelope(
        &e,
        Reason::Expired,
        "alice@qq.com",
        "gw",
        HEADERS,
        at(1_800_432_000),
        1,
    )
    .unwrap();
    let p = parse(&b.render());
    let status = &p.parts[1].1;
    assert!(status.contains("Final-Recipient: rfc822; bob@example.com\r\n"));
    assert!(status.contains("Status: 4.7.0\r\n"), "{status}");
    assert!(!status.contains("carol"));
    assert!(unbase64(&p.parts[0].1).contains("max_age"));
}

#[test]
fn never_for_a_null_sender() {
    let e = env(true, vec![failed("bob@example.com", b"550 no\r\n")]);
    for reason in [Reason::Refused, Reason::Expired] {
        assert!(
            Bounce::for_envelope(&e, reason, "alice@qq.com", "gw", HEADERS, at(0), 1).is_none()
        );
    }
}

#[test]
fn hostile_input_stays_within_the_rules() {
    let long_reply = [b"550 ".as_slice(), &[b'x'; 5000], b"\r\n"].concat();
    let headers = [
        b"Subject: =?UTF-8?B?5omr5o+P?= \xe6\x89\xab\xe6\x8f\x8f\n".as_slice(),
        b"X-Long: ",
        &[b'y'; 3000],
        b"\r\nX-Bare-CR: a\rb\r\n",
    ]
    .concat();
    let e = env(
        false,
        vec![
            failed("bob@example.com", &long_reply),
            failed("eve@example.com", b"550 a\r\nFake-Header: x\0\x1b[31m\r\n"),
            failed("x\r\nBcc: y@z", b""),
        ],
    );
    let b = Bounce::for_envelope(
        &e,
        Reason::Refused,
        "alice@qq.com",
        "gw",
        &headers,
        at(0),
        7,
    )
    .unwrap();
    let p = parse(&b.render()); // asserts 7-bit, CRLF, <= 998
    let status = &p.parts[1].1;
    assert!(
        !status.contains("\r\nFake-Header"),
        "a reply cannot add fields"
    );
    assert!(!status.contains("\r\nBcc"), "nor can an address");
    let (h, orig) = &p.parts[2];
    assert_eq!(
        header(h, "Content-Transfer-Encoding"),
        Some("base64"),
        "8-bit headers go base64"
    );
    let orig = unbase64(orig);
    assert!(orig.contains("扫描"));
    assert!(orig.lines().all(|l| l.len() <= MAX_LINE));
    // ASCII headers are attached as they are, but never with a bare CR.
    let ascii = b"X-Bare-CR: a\rb\r\nX-Nul: \0\n";
    let b =
        Bounce::for_envelope(&e, Reason::Refused, "alice@qq.com", "gw", ascii, at(0), 7).unwrap();
    let p = parse(&b.render());
    assert_eq!(p.parts[2].1, "X-Bare-CR: a b\r\nX-Nul:  \r\n\r\n");
}

#[test]
fn status_code_table() {
    let cases: &[(&[u8], Reason, &str)] = &[
        (b"550 5.1.1 No such user\r\n", Reason::Refused, "5.1.1"),
        (
            b"550-5.7.1 Blocked\r\n550 5.7.1 more\r\n",
            Reason::Refused,
            "5.7.1",
        ),
        (b"552 Message too big\r\n", Reason::Refused, "5.0.0"),
        (b"550 5.1 nope\r\n", Reason::Refused, "5.0.0"),
        (b"550 6.1.1 nope\r\n", Reason::Refused, "5.0.0"),
        (b"421 4.7.0 later\r\n", Reason::Expired, "4.7.0"),
        (b"cannot reach smtp.qq.com:465", Reason::Expired, "4.4.7"),
        (b"", Reason::Expired, "4.4.7"),
    ];
    for (reply, reason, want) in cases {
        assert_eq!(
            status_code(reply, *reason),
            *want,
            "{:?}",
            String::from_utf8_lossy(reply)
        );
    }
}

#[test]
fn header_block_and_dot_stuffing() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n"),
        (b"A: 1\r\n..odd\r\n\r\n", b"A: 1\r\n.odd\r\n"),
        (b"A: 1\r\n", b"A: 1\r\n"),
        (b"\r\nbody", b""),
        (b"A: 1\n\nbody", b"A: 1\n"),
    ];
    for (body, want) in cases {
        assert_eq!(header_block(body), *want);
    }
    let cases: &[(&[u8], &[u8])] = &[
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n"),
        (b".\r\n", b"..\r\n"),
        (b"a.b\r\n", b"a.b\r\n"),
        (b"", b""),
    ];
    for (text, want) in cases {
        assert_eq!(dot_stuff(text), *want);
    }
}

#[test]
fn dates() {
    let cases: &[(u64, &str)] = &[
        (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
        (1_800_000_000, "Fri, 15 Jan 2027 08:00:00 +0000"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
    ];
    for (secs, want) in cases {
        assert_eq!(rfc5322_date(at(*secs)), *want);
    }
}
