//! The values `[smtp] add_missing_headers` puts in a message that lacks them: a `Date` in
//! local time with its offset (RFC 5322 §3.3) and a `Message-ID` unique across restarts
//! (§3.6.4: the time in nanoseconds, 64 random bits and a counter, `@` the gateway's host
//! name). The local offset is read once at start, while the process has one thread: the
//! `time` crate refuses to read it later (reading the time zone is unsound while other
//! threads may change the environment), so a session uses the start's offset, which
//! still names the right instant after a daylight-saving change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use time::{OffsetDateTime, UtcOffset};

use crate::proto::smtp::header::Missing;

static LOCAL_OFFSET: OnceLock<UtcOffset> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Reads the local UTC offset; call at start, before any other thread exists (UTC if it
/// cannot be read).
pub fn init_local_offset() {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

/// Fresh values for one message from the gateway named `host`.
pub fn missing(host: &str) -> Missing {
    let offset = LOCAL_OFFSET.get().copied().unwrap_or(UtcOffset::UTC);
    let now = OffsetDateTime::now_utc().to_offset(offset);
    Missing {
        date: date(now),
        message_id: message_id(
            now.unix_timestamp_nanos(),
            rand::random(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            host,
        ),
    }
}

/// `Mon, 7 Dec 2026 08:00:00 +0800` (RFC 5322 §3.3).
fn date(t: OffsetDateTime) -> String {
    let weekday = t.weekday().to_string();
    let month = t.month().to_string();
    let (h, m, _) = t.offset().as_hms();
    let sign = if t.offset().is_negative() { '-' } else { '+' };
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        &weekday[..3],
        t.day(),
        &month[..3],
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        h.unsigned_abs(),
        m.unsigned_abs(),
    )
}

/// `<time.random.counter@host>`; the host keeps only the characters of a domain name
/// (RFC 5322 §3.6.4 `id-right` as a dot-atom), else `qqmail-proxy.invalid`.
fn message_id(nanos: i128, random: u64, counter: u64, host: &str) -> String {
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let host = host.trim_matches('.');
    let host = if host.is_empty() {
        "qqmail-proxy.invalid"
    } else {
        host
    };
    format!("<{nanos:x}.{random:016x}.{counter}@{host}>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month};

    fn at(y: i32, mo: Month, d: u8, hms: (u8, u8, u8), off: (i8, i8)) -> OffsetDateTime {
        Date::from_calendar_date(y, mo, d)
            .and_then(|d| d.with_hms(hms.0, hms.1, hms.2))
            .map(|t| t.assume_offset(UtcOffset::from_hms(off.0, off.1, 0).expect("offset")))
            .expect("date")
    }

    #[test]
    fn date_table() {
        let cases = [
            (
                at(2026, Month::December, 7, (8, 0, 0), (8, 0)),
                "Mon, 7 Dec 2026 08:00:00 +0800",
            ),
            (
                at(2027, Month::January, 15, (23, 59, 9), (0, 0)),
                "Fri, 15 Jan 2027 23:59:09 +0000",
            ),
            (
                at(2026, Month::June, 30, (1, 2, 3), (-5, -30)),
                "Tue, 30 Jun 2026 01:02:03 -0530",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(date(t), want);
        }
    }

    #[test]
    fn message_id_table() {
        let cases = [
            (
                "mail.example.com",
                "<ff.000000000000002a.7@mail.example.com>",
            ),
            ("bad host<>@", "<ff.000000000000002a.7@badhost>"),
            ("..", "<ff.000000000000002a.7@qqmail-proxy.invalid>"),
        ];
        for (host, want) in cases {
            assert_eq!(message_id(255, 42, 7, host), want, "{host:?}");
        }
        let (a, b) = (missing("h"), missing("h"));
        assert_ne!(a.message_id, b.message_id);
    }
}
