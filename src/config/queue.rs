//! The delivery mode (`[smtp] delivery`, `[[user]] delivery`) and the `[queue]` section
//! (issue 12): validated into [`Delivery`] and [`QueueSettings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawQueue;
use super::{invalid, ConfigError};
use crate::queue::schedule::{Policy, Rate};

/// How the SMTP gateway hands a message on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Delivery {
    /// The client gets 250 only after the upstream said 250 (the synchronous relay).
    #[default]
    Relay,
    /// The message is made durable in the queue, then 250; delivered in the background.
    Queue,
    /// Relay; on a temporary upstream failure, queue instead of failing.
    Fallback,
}

impl Delivery {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Relay => "relay",
            Delivery::Queue => "queue",
            Delivery::Fallback => "fallback",
        }
    }

    /// Parses a `delivery` value for `key`.
    pub(super) fn parse(key: &str, value: &str) -> Result<Delivery, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "relay" => Ok(Delivery::Relay),
            "queue" => Ok(Delivery::Queue),
            "fallback" => Ok(Delivery::Fallback),
            _ => Err(invalid(
                key,
                format!("{value:?} is not one of \"relay\", \"queue\", \"fallback\""),
            )),
        }
    }
}

/// `[queue]`: where the queue lives, how big it may grow, and how deliveries are paced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// The spool directory (default `state_dir/queue`; created mode 0700).
    pub dir: PathBuf,
    /// Retry back-off (`retry_min`, `retry_max`) and `max_age` (then a bounce).
    pub policy: Policy,
    /// The whole queue's size limit in bytes; beyond it new messages get 452 4.3.1.
    pub max_size: u64,
    /// Per-account pacing (`rate`; `None`: none).
    pub rate: Option<Rate>,
    /// Per-account messages per day (0: none).
    pub daily_limit: u32,
}

/// The default `max_size`: 1 GiB.
const DEFAULT_MAX_SIZE: u64 = 1 << 30;

pub(super) fn validate_queue(q: &RawQueue, state_dir: &Path) -> Result<QueueSettings, ConfigError> {
    let defaults = Policy::default();
    let duration = |key: &str, v: &Option<Duration>, default: Duration| match v {
        Some(d) if d.is_zero() => Err(invalid(
            format!("[queue] {key}"),
            "must be more than 0, e.g. \"1m\", \"1h\" or \"5d\"",
        )),
        Some(d) => Ok(*d),
        None => Ok(default),
    };
    let policy = Policy {
        retry_min: duration("retry_min", &q.retry_min, defaults.retry_min)?,
        retry_max: duration("retry_max", &q.retry_max, defaults.retry_max)?,
        max_age: duration("max_age", &q.max_age, defaults.max_age)?,
    };
    if policy.retry_max < policy.retry_min {
        return Err(invalid(
            "[queue] retry_max",
            "is shorter than retry_min: make retry_max at least retry_min",
        ));
    }
    let max_size = match &q.max_size {
        Some(text) => parse_size(text).map_err(|m| invalid("[queue] max_size", m))?,
        None => DEFAULT_MAX_SIZE,
    };
    if max_size == 0 {
        return Err(invalid(
            "[queue] max_size",
            "must be more than 0, e.g. \"1GiB\" or \"500MiB\"",
        ));
    }
    let rate = Rate::parse(q.rate.as_deref().unwrap_or(""))
        .map_err(|e| invalid("[queue] rate", e.to_string()))?;
    Ok(QueueSettings {
        dir: q.dir.clone().unwrap_or_else(|| state_dir.join("queue")),
        policy,
        max_size,
        rate,
        daily_limit: q.daily_limit.unwrap_or(0),
    })
}

/// Parses a size: `"1GiB"`, `"500MiB"`, `"64KiB"`, `"10MB"`, `"2GB"`, `"4096"` (bytes).
/// Binary units are powers of 1024, decimal ones of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("{text:?} is not a size: write e.g. \"1GiB\", \"500MiB\" or \"10MB\"");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        let cases = [
            ("1GiB", Some(1u64 << 30)),
            ("500MiB", Some(500 << 20)),
            ("10MB", Some(10_000_000)),
            ("64kib", Some(64 << 10)),
            ("4096", Some(4096)),
            (" 2 GB ", Some(2_000_000_000)),
            ("1.5GiB", None),
            ("GiB", None),
            ("5 parsecs", None),
            ("", None),
            ("99999999999TiB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).ok(), want, "{text}");
        }
    }
}
