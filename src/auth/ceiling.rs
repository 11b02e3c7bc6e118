//! The global ceiling on password checks: at most `max_password_checks_per_second` argon2
//! runs start per second, all users and hosts together, so that logins cannot be used to
//! burn the CPU (each run costs tens of milliseconds and 19 MiB).
//!
//! Excess checks wait their turn, in arrival order, for at most [`MAX_WAIT`]: a burst of
//! honest devices (every printer reconnecting after a restart) is smoothed, not refused.
//! A check whose turn would come later than that is refused at once with the protocol's
//! temporary failure (SMTP `454 4.7.0`, RFC 4954 §6), which clients retry: a wait cannot
//! grow without bound, and is not covered by the session's login deadline. The budget
//! allows one second's worth of checks at once (GCRA with that burst).
//!
//! It also keeps a running estimate of how long a check takes, so that a login refused
//! unchecked (a throttled user) is answered as late as a checked one.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Longest wait for a turn before a temporary failure.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(10);
/// The check-time estimate before any check has run (argon2id at the defaults).
const FIRST_ESTIMATE: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct State {
    /// The GCRA's theoretical arrival time: turns are free while it is in the past.
    tat: Option<Instant>,
    per_second: u32,
    estimate: Duration,
}

/// The ceiling, shared by every authenticator (a reload must not double it).
#[derive(Debug)]
pub struct Ceiling {
    state: Mutex<State>,
}

impl Default for Ceiling {
    fn default() -> Self {
        Ceiling {
            state: Mutex::new(State {
                tat: None,
                per_second: crate::config::Limits::default().max_password_checks_per_second,
                estimate: FIRST_ESTIMATE,
            }),
        }
    }
}

impl Ceiling {
    /// Applies the newest configuration's rate.
    pub(super) fn set_rate(&self, per_second: u32) {
        self.lock().per_second = per_second.max(1);
    }

    /// Reserves the next turn at or after `now`: `Some(start)` (possibly `now`), or
    /// `None` if it would start more than [`MAX_WAIT`] from now (nothing is reserved).
    pub(super) fn reserve(&self, now: Instant) -> Option<Instant> {
        let mut s = self.lock();
        let per_second = s.per_second.max(1);
        let interval = Duration::from_secs(1) / per_second;
        // One second's worth of checks may start at once.
        let burst = interval * (per_second - 1);
        let tat = s.tat.unwrap_or(now).max(now);
        let start = tat.checked_sub(burst).unwrap_or(now).max(now);
        if start.saturating_duration_since(now) > MAX_WAIT {
            return None;
        }
        s.tat = Some(tat + interval);
        Some(start)
    }

    /// Waits for a turn; `false` (at once) if none comes within [`MAX_WAIT`].
    pub(super) async fn acquire(&self) -> bool {
        match self.reserve(Instant::now()) {
            Some(start) => {
                tokio::time::sleep_until(start).await;
                true
            }
            None => false,
        }
    }

    /// Folds a check's duration into the estimate.
    pub(super) fn observe(&self, took: Duration) {
        let mut s = self.lock();
        // An exponential moving average (weight 1/8): steady, yet follows the machine.
        s.estimate = (s.estimate * 7 + took) / 8;
    }

    /// How long a check is expected to take.
    pub(super) fn estimate(&self) -> Duration {
        self.lock().estimate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests at so many milliseconds, at 4 checks a second: when each may start (ms
    /// after the beginning), or `None` when it would wait more than `MAX_WAIT`.
    /// (request at ms, when it may start in ms, or `None`)
    type Step = (u64, Option<u64>);

    #[test]
    fn turns_table() {
        #[rustfmt::skip]
        let cases: &[(&str, u32, &[Step])] = &[
            ("a burst of one second's worth starts at once", 4, &[
                (0, Some(0)), (0, Some(0)), (0, Some(0)), (0, Some(0)),
                // then one every 250 ms
                (0, Some(250)), (0, Some(500)), (10, Some(750)),
            ]),
            ("spaced requests never wait", 4, &[
                (0, Some(0)), (250, Some(250)), (500, Some(500)), (5_000, Some(5_000)),
            ]),
            ("the budget refills with time", 4, &[
                (0, Some(0)), (0, Some(0)), (0, Some(0)), (0, Some(0)), (0, Some(250)),
                (2_000, Some(2_000)), (2_000, Some(2_000)), (2_000, Some(2_000)),
                (2_000, Some(2_000)), (2_000, Some(2_250)),
            ]),
            ("one a second", 1, &[
                (0, Some(0)), (0, Some(1_000)), (0, Some(2_000)), (1_500, Some(3_000)),
            ]),
        ];
        for (name, rate, steps) in cases {
            let c = Ceiling::default();
            c.set_rate(*rate);
            let t0 = Instant::now();
            for (i, (at, want)) in steps.iter().enumerate() {
                let got = c
                    .reserve(t0 + Duration::from_millis(*at))
                    .map(|s| s.duration_since(t0).as_millis() as u64);
                assert_eq!(got, *want, "{name}: step {}", i + 1);
            }
        }
    }

    /// A flood: 10 s of waiting at most, then refusals that reserve nothing (so the
    /// flood does not push honest turns further away).
    #[test]
    fn waits_are_bounded_and_refusals_reserve_nothing() {
        let c = Ceiling::default();
        c.set_rate(2);
        let t0 = Instant::now();
        let starts: Vec<Option<u64>> = (0..30)
            .map(|_| {
                c.reserve(t0)
                    .map(|s| s.duration_since(t0).as_millis() as u64)
            })
            .collect();
        // 2 at once, then one every 500 ms up to 10 s.
        let granted: Vec<u64> = starts.iter().flatten().copied().collect();
        assert_eq!(granted.len(), 2 + 20, "{starts:?}");
        assert_eq!(granted.last(), Some(&10_000));
        assert!(starts[22..].iter().all(Option::is_none), "{starts:?}");
        // The refusals took no turn: the next request gets the next half second.
        assert_eq!(
            c.reserve(t0 + Duration::from_millis(600))
                .map(|s| s.duration_since(t0).as_millis() as u64),
            Some(10_500)
        );
    }

    #[test]
    fn the_estimate_follows_observed_checks() {
        let c = Ceiling::default();
        assert_eq!(c.estimate(), FIRST_ESTIMATE);
        for _ in 0..64 {
            c.observe(Duration::from_millis(20));
        }
        let e = c.estimate().as_millis();
        assert!((20..=21).contains(&e), "{e}");
    }
}
