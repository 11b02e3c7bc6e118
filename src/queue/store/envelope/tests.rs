use super::*;

fn sample() -> Envelope {
    Envelope {
        id: QueueId::parse("0000000000001ABCDEF01").unwrap(),
        account: "alice@qq.com".into(),
        sender: "alice@qq.com".into(),
        queued_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        next_attempt: UNIX_EPOCH + Duration::from_secs(1_800_000_060),
        last_error: Some(LastError {
            class: Class::RateLimited,
            text: b"550 Ip frequency limited\r\n".to_vec(),
        }),
        possibly_duplicated: true,
        body: BodySum {
            len: 12,
            sha256: [7; 32],
        },
        ..super::sample(b"550 Mailbox not found \xc4\xe3\xba\xc3 100%\r\n")
    }
}

#[test]
fn round_trip_is_printable_ascii() {
    let e = sample();
    let bytes = e.encode();
    assert!(
        bytes
            .iter()
            .all(|&b| b == b'\n' || b.is_ascii_graphic() || b == b' '),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(Envelope::decode(&bytes), Ok(e));
    let mut bare = sample();
    bare.last_error = None;
    bare.sender = String::new();
    bare.null_sender = true;
    assert_eq!(Envelope::decode(&bare.encode()), Ok(bare));
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample().encode();
    for cut in 0..bytes.len() {
        assert!(
            Envelope::decode(&bytes[..cut]).is_err(),
            "accepted a file cut at {cut}"
        );
    }
}

#[test]
fn damage_table() {
    let good = String::from_utf8(sample().encode()).unwrap();
    // Rewrites the file's lines (before the end line) and recomputes the checksum, so
    // each case exercises the field checks, not just the checksum.
    let resum = |lines: &str| {
        let sum = hex(&Sha256::digest(lines.as_bytes()))[..SUM_DIGITS].to_string();
        format!("{lines}end {sum}\n").into_bytes()
    };
    let body = good.rsplit_once("end ").unwrap().0.to_string();
    let cases: Vec<(String, &str)> = vec![
        (body.replace("attempts 2", "attempts x"), "bad attempts"),
        (body.replace("id 0000", "id ../0"), "bad id"),
        (format!("{body}attempts 3\n"), "given twice"),
        (format!("{body}colour blue\n"), "unknown line"),
        (
            body.replace("qqmail-proxy-queue 1", "qqmail-proxy-queue 2"),
            "first line",
        ),
        (body.replace("body-len 12\n", ""), "no body-len"),
        (
            body.replace("last-error ratelimited", "last-error sunny"),
            "bad last-error",
        ),
        (
            body.replace("rcpt pending bob@example.com", "rcpt maybe bob@example.com"),
            "bad rcpt",
        ),
        (
            body.replace(
                "rcpt delivered carol@example.com",
                "rcpt delivered carol@example.com x",
            ),
            "bad rcpt",
        ),
        (body.replace("bob@example.com", "bob%4"), "bad rcpt"),
        (
            body.lines()
                .filter(|l| !l.starts_with("rcpt"))
                .map(|l| format!("{l}\n"))
                .collect(),
            "no rcpt",
        ),
    ];
    for (lines, want) in cases {
        let got = Envelope::decode(&resum(&lines));
        let err = got.expect_err(&lines);
        assert!(err.contains(want), "{want:?} in {err:?}");
    }
    let mut flipped = good.into_bytes();
    flipped[30] ^= 1;
    assert_eq!(
        Envelope::decode(&flipped),
        Err("checksum mismatch".to_string())
    );
}

#[test]
fn escape_table() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "%"),
        (b"a b", "a%20b"),
        (b"100%", "100%25"),
        (b"\r\n", "%0D%0A"),
        (b"\xc4\xe3", "%C4%E3"),
        (b"<x@y>", "<x@y>"),
    ];
    for (raw, esc) in cases {
        assert_eq!(escape(raw), *esc);
        assert_eq!(unescape(esc).as_deref(), Some(*raw));
    }
    for bad in ["", "%G0", "%4", "a b", "é"] {
        assert_eq!(unescape(bad), None, "{bad:?}");
    }
}

proptest::proptest! {
    /// Whatever bytes an address or a reply holds, the file stays printable and
    /// decodes to the same envelope.
    #[test]
    fn any_bytes_round_trip(
        account in "\\PC{0,40}",
        addr in "\\PC{1,60}",
        reply in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        attempts in proptest::num::u32::ANY,
        secs in 0u64..10_000_000_000,
    ) {
        let mut e = sample();
        e.account = account;
        e.recipients[0].addr = addr;
        e.recipients[2].state = RcptState::Failed { reply: reply.clone() };
        e.last_error = Some(LastError { class: Class::Permanent, text: reply });
        e.attempts = attempts;
        e.next_attempt = UNIX_EPOCH + Duration::from_secs(secs);
        let bytes = e.encode();
        proptest::prop_assert!(bytes.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)));
        proptest::prop_assert_eq!(Envelope::decode(&bytes), Ok(e));
    }
}
