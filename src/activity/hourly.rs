//! The chart data: messages accepted and failed sessions per hour over the last
//! [`HOURS`] hours, in buckets aligned to the hour (UTC; every zone in use today is a
//! whole or half hour off UTC, so the page may label them in local time). A session
//! counts in the hour it ended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::clock::HOUR;
use super::Time;

/// Hours charted.
pub const HOURS: i64 = 24;

/// One hour of the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourBucket {
    /// The start of the hour.
    pub hour: Time,
    /// Messages accepted by sessions that ended in it.
    pub messages: u64,
    /// Failed sessions that ended in it.
    pub failures: u64,
}

/// The counts, by the hour's start in unix seconds; never more than [`HOURS`] entries.
#[derive(Debug, Default)]
pub(super) struct Hourly {
    by_hour: BTreeMap<i64, (u64, u64)>,
}

impl Hourly {
    /// Counts a session that ended at `at`.
    pub fn add(&mut self, at: Time, messages: u64, failed: bool) {
        let hour = at.hour().unix();
        let (m, f) = self.by_hour.entry(hour).or_default();
        *m += messages;
        *f += u64::from(failed);
        // Keep the newest HOURS hours present (a clock stepped back may add an older one).
        let Some(&newest) = self.by_hour.keys().next_back() else {
            return;
        };
        self.by_hour = self.by_hour.split_off(&(newest - (HOURS - 1) * HOUR));
    }

    /// [`HOURS`] buckets, oldest first, the last one being the hour `now` is in; hours
    /// without sessions count zero.
    pub fn chart(&self, now: Time) -> Vec<HourBucket> {
        let last = now.hour().unix();
        (0..HOURS)
            .map(|i| {
                let hour = last - (HOURS - 1 - i) * HOUR;
                let (messages, failures) = self.by_hour.get(&hour).copied().unwrap_or_default();
                HourBucket {
                    hour: Time::from_unix(hour),
                    messages,
                    failures,
                }
            })
            .collect()
    }

    /// Restores a chart (as [`Hourly::chart`] made it, possibly hours ago): buckets not
    /// aligned to an hour are dropped (a damaged file).
    pub fn restore(chart: Vec<HourBucket>) -> Hourly {
        let mut h = Hourly::default();
        for b in chart {
            if b.hour.hour() == b.hour && (b.messages, b.failures) != (0, 0) {
                let (m, f) = h.by_hour.entry(b.hour.unix()).or_default();
                *m = m.saturating_add(b.messages);
                *f = f.saturating_add(b.failures);
            }
        }
        if let Some(&newest) = h.by_hour.keys().next_back() {
            h.by_hour = h.by_hour.split_off(&(newest - (HOURS - 1) * HOUR));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::clock::DAY;

    /// 2026-12-07T00:00:00Z: a day boundary.
    const MIDNIGHT: i64 = 1_796_601_600;

    fn counts(h: &Hourly, now: i64) -> Vec<(i64, u64, u64)> {
        h.chart(Time::from_unix(now))
            .into_iter()
            .filter(|b| (b.messages, b.failures) != (0, 0))
            .map(|b| ((b.hour.unix() - MIDNIGHT) / HOUR, b.messages, b.failures))
            .collect()
    }

    #[test]
    fn buckets_across_a_day_boundary() {
        type Case<'a> = (&'a [(i64, u64, bool)], i64, &'a [(i64, u64, u64)]);
        let t = |h: i64, s: i64| MIDNIGHT + h * HOUR + s;
        // (sessions: (end, messages, failed), now, (hour from midnight, messages, failures))
        #[rustfmt::skip]
        let cases: [Case; 6] = [
            (&[], t(0, 0), &[]),
            (&[(t(-1, 3599), 1, false), (t(0, 0), 2, false), (t(0, 1), 0, true)], t(0, 5),
             &[(-1, 1, 0), (0, 2, 1)]),
            // 23 hours later both hours are still on the chart; 24 hours later the older is off.
            (&[(t(-1, 10), 1, false), (t(0, 10), 1, true)], t(22, 0), &[(-1, 1, 0), (0, 1, 1)]),
            (&[(t(-1, 10), 1, false), (t(0, 10), 1, true)], t(23, 0), &[(0, 1, 1)]),
            (&[(t(-1, 10), 1, false), (t(0, 10), 1, true)], t(24, 0), &[]),
            // A clock stepped back: the older hour is counted while still on the chart.
            (&[(t(5, 0), 1, false), (t(2, 0), 1, false), (t(-20, 0), 1, false)], t(5, 0),
             &[(2, 1, 0), (5, 1, 0)]),
        ];
        for (sessions, now, want) in cases {
            let mut h = Hourly::default();
            for &(at, m, f) in sessions {
                h.add(Time::from_unix(at), m, f);
            }
            assert_eq!(counts(&h, now), want, "{sessions:?}");
            assert!(h.by_hour.len() <= HOURS as usize);
            let chart = h.chart(Time::from_unix(now));
            assert_eq!(chart.len(), HOURS as usize);
            assert_eq!(chart[23].hour, Time::from_unix(now).hour());
            // Restored, as after a restart: the same chart.
            assert_eq!(
                Hourly::restore(chart.clone()).chart(Time::from_unix(now)),
                chart
            );
        }
    }

    #[test]
    fn restore_after_a_restart_hours_later() {
        let mut h = Hourly::default();
        h.add(Time::from_unix(MIDNIGHT + 10), 3, false);
        h.add(Time::from_unix(MIDNIGHT + 2 * HOUR), 1, true);
        let saved = h.chart(Time::from_unix(MIDNIGHT + 2 * HOUR + 5));
        // Back three hours later: still charted, in their hours; new counts add on.
        let mut back = Hourly::restore(saved);
        back.add(Time::from_unix(MIDNIGHT + 5 * HOUR), 1, false);
        assert_eq!(
            counts(&back, MIDNIGHT + 5 * HOUR + 1),
            [(0, 3, 0), (2, 1, 1), (5, 1, 0)]
        );
        // A day later, gone.
        assert_eq!(counts(&back, MIDNIGHT + DAY + 5 * HOUR), []);
        // Misaligned buckets (a damaged file) are dropped.
        let bad = vec![HourBucket {
            hour: Time::from_unix(MIDNIGHT + 1),
            messages: 9,
            failures: 9,
        }];
        assert_eq!(counts(&Hourly::restore(bad), MIDNIGHT + 5), []);
    }
}
