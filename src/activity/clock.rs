//! The activity record's times: whole unix seconds, shown in JSON as both an RFC 3339 UTC
//! string (for people and the page) and the unix seconds (for sorting and arithmetic).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, to the second. JSON: `{"utc": "2026-12-07T03:24:47Z", "unix":
/// 1796613887}`; when read back only `unix` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

/// Seconds in an hour.
pub const HOUR: i64 = 3600;
/// Seconds in a day.
pub const DAY: i64 = 24 * HOUR;

impl Time {
    /// Now, by the system clock (a clock before 1970 reads as 1970).
    pub fn now() -> Time {
        Time::from(SystemTime::now())
    }

    /// The time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: i64) -> Time {
        Time(secs)
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// The start of the hour this time falls in.
    pub fn hour(self) -> Time {
        Time(self.0.div_euclid(HOUR) * HOUR)
    }

    /// This time moved by `secs` (negative: earlier), saturating.
    pub fn plus(self, secs: i64) -> Time {
        Time(self.0.saturating_add(secs))
    }

    /// RFC 3339 in UTC, to the second: `2026-12-07T03:24:47Z`. A time outside the years
    /// 1970-9999 (only a damaged file holds one) shows as 1970-01-01T00:00:00Z.
    pub fn rfc3339(self) -> String {
        let dt = time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .filter(|d| (1970..=9999).contains(&d.year()))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )
    }
}

impl From<SystemTime> for Time {
    fn from(t: SystemTime) -> Time {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Time(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

#[derive(Serialize)]
struct Shown {
    utc: String,
    unix: i64,
}

#[derive(Deserialize)]
struct Read {
    unix: i64,
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Shown {
            utc: self.rfc3339(),
            unix: self.0,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        Read::deserialize(d).map(|r| Time(r.unix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_rfc3339_utc_and_unix() {
        #[rustfmt::skip]
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_796_613_887, "2026-12-07T03:24:47Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_798_761_599, "2026-12-31T23:59:59Z"),
            (1_798_761_600, "2027-01-01T00:00:00Z"),
            // Out of range (a damaged file): the epoch, never a panic.
            (-1, "1970-01-01T00:00:00Z"),
            (i64::MAX, "1970-01-01T00:00:00Z"),
        ];
        for (unix, want) in cases {
            let t = Time::from_unix(unix);
            assert_eq!(t.rfc3339(), want, "{unix}");
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!(r#"{{"utc":"{want}","unix":{unix}}}"#));
            assert_eq!(serde_json::from_str::<Time>(&json).unwrap(), t);
        }
    }

    #[test]
    fn hours() {
        #[rustfmt::skip]
        let cases = [(0, 0), (3599, 0), (3600, 3600), (7199, 3600), (-1, -3600)];
        for (t, want) in cases {
            assert_eq!(Time::from_unix(t).hour(), Time::from_unix(want), "{t}");
        }
    }
}
