//! When to try a queued message again, when to give up on it, and how fast one account
//! may send: the retry back-off (`retry_min` doubling per attempt up to `retry_max`, with
//! jitter), the 15-minute floor after a rate limit, the short pause after a first `535`,
//! `max_age`, per-account pacing (`rate`) and the per-account `daily_limit`.
//!
//! Pure: every function takes the time (and the jitter) from its caller, so the tables
//! below test exactly what the deliverer will do.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::classify::Class;

/// After QQ's "frequency limited" replies, wait at least this long: its bans last from
/// minutes to the rest of the day, and every early retry prolongs them.
pub const RATE_LIMIT_FLOOR: Duration = Duration::from_secs(15 * 60);
/// After a first `535` to the stored code, try once more after this pause: QQ has sent
/// it intermittently with a valid code.
pub const CODE_RETRY_PAUSE: Duration = Duration::from_secs(60);
/// Jitter takes up to this share off a back-off delay, so messages deferred together do
/// not all come back in the same second.
const JITTER_SHARE: f64 = 0.2;

/// The retry settings (`[queue] retry_min`, `retry_max`, `max_age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The first retry's delay; doubles per attempt.
    pub retry_min: Duration,
    /// The longest delay between attempts.
    pub retry_max: Duration,
    /// After this long in the queue a message is bounced.
    pub max_age: Duration,
}

impl Default for Policy {
    /// The defaults: 1 min, 1 h, 5 days (Postfix's `maximal_queue_lifetime`).
    fn default() -> Policy {
        Policy {
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_age: Duration::from_secs(5 * 86400),
        }
    }
}

/// What to do with a message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing left to send.
    Done,
    /// Try again at this time.
    RetryAt(SystemTime),
    /// The stored code was refused twice: hold every message of the account (mark it
    /// failing) until a login works again; probe it every [`Policy::retry_max`].
    HoldAccount,
    /// Give up: send a bounce to the account (unless the sender was `<>`) and remove it.
    Bounce,
}

impl Policy {
    /// The plain back-off before retry number `attempts` (1 = after the first failure):
    /// `retry_min · 2^(attempts-1)`, at most `retry_max`, minus up to 20 % jitter
    /// (`jitter` in `0.0..1.0`, drawn by the caller), never below `retry_min`.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        let full = self
            .retry_min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.retry_max);
        // In whole milliseconds, so equal inputs give equal delays on every platform.
        let cut_ms = full.as_millis() as f64 * JITTER_SHARE * jitter.clamp(0.0, 1.0);
        let cut = Duration::from_millis(cut_ms as u64);
        full.saturating_sub(cut)
            .max(self.retry_min.min(self.retry_max))
    }

    /// The message's bounce deadline.
    pub fn deadline(&self, queued_at: SystemTime) -> SystemTime {
        queued_at.checked_add(self.max_age).unwrap_or(queued_at)
    }

    /// True once `max_age` has passed (checked also while an account is held).
    pub fn expired(&self, queued_at: SystemTime, now: SystemTime) -> bool {
        now >= self.deadline(queued_at)
    }

    /// The plan after an attempt that ended in `class`. `attempts` counts this one;
    /// `code_refusals` counts consecutive `535`s of the account, this one included.
    /// A retry never lands after the deadline: the last one is made at the deadline, and
    /// a failure then bounces.
    pub fn after(
        &self,
        class: Class,
        attempts: u32,
        code_refusals: u32,
        queued_at: SystemTime,
        now: SystemTime,
        jitter: f64,
    ) -> Plan {
        let delay = match class {
            Class::Delivered => return Plan::Done,
            Class::Permanent => return Plan::Bounce,
            Class::CodeRefused if code_refusals >= 2 => return Plan::HoldAccount,
            Class::CodeRefused => CODE_RETRY_PAUSE,
            Class::Temporary => self.backoff(attempts, jitter),
            Class::RateLimited => self.backoff(attempts, jitter).max(RATE_LIMIT_FLOOR),
        };
        if self.expired(queued_at, now) {
            return Plan::Bounce;
        }
        let at = now.checked_add(delay).unwrap_or(now);
        Plan::RetryAt(at.min(self.deadline(queued_at)))
    }
}

/// `[queue] rate`: at most `count` messages per `per`, per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages ...
    pub count: u32,
    /// ... per this long.
    pub per: Duration,
}

/// A `rate` value that is not `N/unit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a rate: write N/unit, e.g. \"20/min\" or \"100/h\" (units s, min, h, day; N at least 1), or \"\" for no pacing")]
pub struct RateError {
    /// What was given.
    pub value: String,
}

impl Rate {
    /// Parses `"20/min"`, `"100/h"`, `"5/s"`, `"500/day"`; `""` means no pacing (`None`).
    pub fn parse(s: &str) -> Result<Option<Rate>, RateError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || RateError {
            value: s.to_string(),
        };
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86400,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Some(Rate {
            count,
            per: Duration::from_secs(secs),
        }))
    }

    /// The spacing between two messages.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

/// Per-account pacing: messages are spaced evenly (`per / count` apart) rather than sent
/// in bursts, since QQ's limits are unpublished and a burst is what trips them.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate` (`None`: never waits).
    pub fn new(rate: Option<Rate>) -> Pacer {
        Pacer {
            interval: rate.map(|r| r.interval()),
            next: None,
        }
    }

    /// How long to wait before the next message may be sent (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        self.next
            .map_or(Duration::ZERO, |n| n.saturating_duration_since(now))
    }

    /// A message was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        if let Some(i) = self.interval {
            let from = self.next.map_or(now, |n| n.max(now));
            self.next = Some(from + i);
        }
    }
}

/// Where `daily_limit`'s day starts: QQ's daily quota resets at midnight China Standard
/// Time, UTC+8 all year (China has no daylight saving time). A fixed offset, not the
/// host's zone: the quota is the provider's, wherever the proxy runs.
pub const QUOTA_UTC_OFFSET: i32 = 8 * 3600;

/// `[queue] daily_limit`: messages per account per quota day. The worker keeps the
/// count on disk ([`DailyCap::state`], [`DailyCap::restore`]) so a restart does not
/// forget it.
#[derive(Debug, Clone)]
pub struct DailyCap {
    limit: u32,
    day: i64,
    used: u32,
}

impl DailyCap {
    /// A cap of `limit` a day (0: none).
    pub fn new(limit: u32) -> DailyCap {
        DailyCap {
            limit,
            day: i64::MIN,
            used: 0,
        }
    }

    /// `Ok` if one more message may go at `now`; otherwise the start of the next local
    /// day, until which the account's messages wait. `utc_offset` is the local zone's
    /// offset east of UTC in seconds (the caller reads it; this stays pure).
    pub fn check(&self, now: SystemTime, utc_offset: i32) -> Result<(), SystemTime> {
        let day = local_day(now, utc_offset);
        if self.limit == 0 || day != self.day || self.used < self.limit {
            return Ok(());
        }
        let next = (day + 1) * 86400 - i64::from(utc_offset);
        Err(UNIX_EPOCH + Duration::from_secs(u64::try_from(next).unwrap_or(0)))
    }

    /// The count to store: (day, messages that day).
    pub fn state(&self) -> (i64, u32) {
        (self.day, self.used)
    }

    /// Takes a stored count back (after a restart).
    pub fn restore(&mut self, day: i64, used: u32) {
        self.day = day;
        self.used = used;
    }

    /// Counts the day of `now` as used up: what a stored count that cannot be read must
    /// mean, since sending past a provider's quota can get the account blocked, while
    /// waiting only delays mail (it stays queued) until the next day.
    pub fn exhaust(&mut self, now: SystemTime, utc_offset: i32) {
        self.day = local_day(now, utc_offset);
        self.used = self.limit;
    }

    /// A message was sent at `now`.
    pub fn record(&mut self, now: SystemTime, utc_offset: i32) {
        let day = local_day(now, utc_offset);
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
        self.used = self.used.saturating_add(1);
    }
}

/// Days since 1970-01-01 in the local zone.
fn local_day(now: SystemTime, utc_offset: i32) -> i64 {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    secs.saturating_add(i64::from(utc_offset)).div_euclid(86400)
}

#[cfg(test)]
mod tests;
