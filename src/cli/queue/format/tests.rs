//! Tables for the `queue` commands' text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::queue::store::BodySum;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn sample() -> Envelope {
    Envelope {
        last_error: Some(LastError {
            class: Class::Temporary,
            text: b"421 4.7.0 try later\r\n\x1b[31m".to_vec(),
        }),
        body: BodySum {
            len: 12 * 1024 + 1,
            sha256: [0; 32],
        },
        ..crate::queue::store::envelope::sample(b"550 5.1.1 no such user\r\n")
    }
}

#[test]
fn ages_and_sizes() {
    for (secs, want) in [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86400, "1d"),
        (200_000, "2d"),
    ] {
        assert_eq!(age(Duration::from_secs(secs)), want, "{secs}");
    }
    for (n, want) in [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1025, "2 KiB"),
        (1024 * 1024, "1.0 MiB"),
        (3_565_158, "3.4 MiB"),
    ] {
        assert_eq!(size(n), want, "{n}");
    }
}

#[test]
fn hints_by_class_and_text() {
    let e = |class, text: &[u8]| LastError {
        class,
        text: text.to_vec(),
    };
    for (err, want) in [
        (
            e(Class::Temporary, b"550 Connection Frequency Limited"),
            "rate-limiting",
        ),
        (
            e(Class::RateLimited, b"550 Ip frequency limited"),
            "rate-limiting",
        ),
        (
            e(Class::CodeRefused, b"535 Login Fail"),
            "authorization code",
        ),
        (e(Class::Permanent, b"550 spam"), "bounced"),
        (
            e(
                Class::Temporary,
                b"cannot reach 127.0.0.1:1: Connection refused",
            ),
            "could not be reached",
        ),
        (
            e(
                Class::Temporary,
                b"smtp.qq.com:465: TLS certificate unknown issuer",
            ),
            "certificate",
        ),
        (e(Class::Temporary, b"421 busy"), "deferred"),
    ] {
        assert!(hint(&err).contains(want), "{err:?}: {}", hint(&err));
    }
}

#[test]
fn listing_shows_each_message_and_the_count() {
    let now = at(1000 + 300);
    let out = list(&[sample()], now);
    for want in [
        "0190A0B0C0D0E12345678",
        "   5m",
        "13 KiB",
        "main",
        "in 1m",
        "from: printer@qq.com",
        "to:   bob@example.com (pending)",
        "to:   carol@example.com (delivered)",
        "to:   dave@example.com (failed: 550 5.1.1 no such user\\r\\n)",
        "last error (temporary): 421 4.7.0 try later\\r\\n\\x1b[31m",
        "hint: the provider deferred",
        "-- 1 message, 13 KiB in queue",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    assert!(!out.contains('\x1b'), "control characters escaped:\n{out}");
    assert_eq!(list(&[], now), "Mail queue is empty\n");
    let mut two = sample();
    two.null_sender = true;
    let out = list(&[sample(), two], now);
    assert!(out.contains("from: <>"), "{out}");
    assert!(out.ends_with("-- 2 messages, 25 KiB in queue\n"), "{out}");
}

#[test]
fn envelope_for_show() {
    let out = envelope(&sample(), at(1000 + 500));
    for want in [
        "id:        0190A0B0C0D0E12345678",
        "size:      13 KiB (12289 bytes)",
        "age:       8m",
        "next:      now",
        "from: printer@qq.com",
        "to:   bob@example.com (pending)",
        "hint: ",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
}

#[test]
fn message_text_unstuffs_escapes_and_stops_at_the_header_end() {
    let stored = b"Subject: hi\x1b]0;x\x07\r\nFrom: a@b\r\n\r\n..dot line\r\nbody\r\n";
    for (headers_only, want) in [
        (true, "Subject: hi\\x1b]0;x\\x07\nFrom: a@b\n"),
        (
            false,
            "Subject: hi\\x1b]0;x\\x07\nFrom: a@b\n\n.dot line\nbody\n",
        ),
    ] {
        assert_eq!(message_text(stored, headers_only), want);
    }
    // Bare LF and a last line without an ending are shown too.
    assert_eq!(message_text(b"A: 1\n\nx", false), "A: 1\n\nx\n");
}
