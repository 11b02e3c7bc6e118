//! Queue IDs: unique across restarts and processes, safe as file names, short enough
//! to read out in `250 2.0.0 Ok: queued as ID` and type into `queue show ID`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Hex digits of the time part (microseconds since 1970 fit in 13 until the year 2255).
const TIME_DIGITS: usize = 13;
/// Hex digits of the random part.
const RANDOM_DIGITS: usize = 8;
/// Length of an ID.
pub const ID_LEN: usize = TIME_DIGITS + RANDOM_DIGITS;

/// A message's queue ID: 13 upper-case hex digits of the arrival time in microseconds,
/// then 8 random ones (21 characters, `[0-9A-F]`). IDs sort by arrival; two IDs collide
/// only if two processes draw the same 32 random bits in the same microsecond, and the
/// store refuses to overwrite an existing message even then.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

impl QueueId {
    /// A fresh ID for a message arriving at `now`.
    pub fn generate(now: SystemTime) -> QueueId {
        let micros = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
            .min((1u128 << (4 * TIME_DIGITS)) - 1);
        let random: u32 = rand::random();
        QueueId(format!("{micros:013X}{random:08X}"))
    }

    /// Parses an ID typed by a user or found as a file name; `None` unless it has exactly
    /// the generated shape (so it can never name a path outside the queue).
    pub fn parse(s: &str) -> Option<QueueId> {
        let ok = s.len() == ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        ok.then(|| QueueId(s.to_string()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn generated_ids_parse_sort_and_differ() {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = QueueId::generate(t);
        let b = QueueId::generate(t + Duration::from_micros(1));
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_eq!(QueueId::parse(a.as_str()), Some(a.clone()));
        assert!(a < b, "later arrival sorts later: {a} {b}");
        let many: HashSet<_> = (0..10_000).map(|_| QueueId::generate(t)).collect();
        assert_eq!(many.len(), 10_000, "same microsecond, still unique");
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, bool)] = &[
            ("0000000000000ABCDEF0123", false), // 23 chars
            ("00000000000000ABCDEF01", false),  // 22 chars
            ("0000000000000ABCDEF01", true),
            ("0000000000000abcdef01", false), // lower case is not what we generate
            ("../../../../etc/passwd", false),
            ("0000000000000ABCDEF0/", false),
            ("", false),
            ("0000000000000ABCDEF0G", false),
        ];
        for (input, ok) in cases {
            assert_eq!(QueueId::parse(input).is_some(), *ok, "{input:?}");
        }
    }
}
