//! The failed-login table behind the delays and lockouts: per client address, recent
//! failures counted per local user, so that a successful login forgives only that user's
//! own mistakes. Knowing one local password must not buy extra guesses at another's
//! (the interleaving attack); Dovecot's auth penalty and fail2ban likewise never let a
//! success wipe an address's record.
//!
//! The table outlives reloads: the authenticator built from a new configuration takes
//! over the running one's table, so a SIGHUP forgives no failure and ends no lockout.
//! Times are checked against the policy in force, so a reload that changes
//! `lockout_duration` applies to lockouts already running.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses the table remembers.
const MAX_ENTRIES: usize = 10_000;
/// First delay after a failure; it doubles with each further failure.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Longest delay before a lockout.
const MAX_DELAY: Duration = Duration::from_secs(4);

/// The limits in force (from the current configuration).
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Failures from one address before it is locked out.
    pub lockout_failures: u32,
    /// Lockout length, and how long a failure is remembered after the address's last one.
    pub lockout_duration: Duration,
}

/// What a recorded failure means for its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Penalty {
    /// How long to wait before answering.
    pub delay: Duration,
    /// Whether the address is locked out (now or already).
    pub locked: bool,
}

/// One address's record.
#[derive(Debug)]
struct Entry {
    /// Failures per known local user: a success by that user forgives them.
    by_user: HashMap<String, u32>,
    /// Failures for names that are not local users: nothing forgives them. Keeping them
    /// apart also bounds `by_user` by the number of local users.
    unknown: u32,
    /// The latest failure; older failures are forgotten `lockout_duration` after it.
    last: Instant,
    locked_at: Option<Instant>,
}

impl Entry {
    fn total(&self) -> u32 {
        self.by_user
            .values()
            .fold(self.unknown, |sum, n| sum.saturating_add(*n))
    }

    fn locked(&self, policy: Policy, now: Instant) -> bool {
        self.locked_at
            .is_some_and(|at| now.saturating_duration_since(at) < policy.lockout_duration)
    }

    /// A record to forget: its lockout has ended, or (never locked) its last failure is
    /// `lockout_duration` old.
    fn expired(&self, policy: Policy, now: Instant) -> bool {
        match self.locked_at {
            Some(_) => !self.locked(policy, now),
            None => now.saturating_duration_since(self.last) >= policy.lockout_duration,
        }
    }
}

/// Failed logins and lockouts per client address. Shared (`Arc`) by every authenticator
/// built during the process's life.
#[derive(Debug, Default)]
pub struct FailureTable {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl FailureTable {
    /// Whether `ip` is locked out. A lockout that has ended clears the address's record.
    pub(super) fn locked(&self, ip: IpAddr, policy: Policy, now: Instant) -> bool {
        let mut entries = self.lock();
        match entries.get(&ip) {
            Some(e) if e.locked(policy, now) => true,
            Some(e) if e.locked_at.is_some() => {
                entries.remove(&ip);
                false
            }
            // Unlocked records are reset by the next failure once they have expired.
            _ => false,
        }
    }

    /// A successful login by `user` from `ip`: forgives that user's failures from that
    /// address, and nothing else. False (and nothing forgiven) when the address is locked
    /// out, which a lockout recorded while the password was being checked can cause.
    pub(super) fn accept(&self, ip: IpAddr, user: &str, policy: Policy, now: Instant) -> bool {
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(&ip) else {
            return true;
        };
        if e.locked(policy, now) {
            return false;
        }
        e.by_user.remove(user);
        if e.total() == 0 {
            entries.remove(&ip);
        }
        true
    }

    /// Records a failure from `ip` for `user` (`None`: not a local user). The delay grows
    /// with the address's recent failures whoever they were for; the address is locked
    /// out when they reach `lockout_failures` (logged once per lockout).
    pub(super) fn record_failure(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        policy: Policy,
        now: Instant,
    ) -> Penalty {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&ip) {
            make_room(&mut entries, policy, now);
        }
        let e = entries.entry(ip).or_insert_with(|| Entry {
            by_user: HashMap::new(),
            unknown: 0,
            last: now,
            locked_at: None,
        });
        if e.expired(policy, now) {
            e.by_user.clear();
            e.unknown = 0;
            e.locked_at = None;
        }
        let count = match user {
            Some(name) => e.by_user.entry(name.to_owned()).or_insert(0),
            None => &mut e.unknown,
        };
        *count = count.saturating_add(1);
        e.last = now;
        let total = e.total();
        let shift = total.saturating_sub(1).min(8);
        let delay = BASE_DELAY.saturating_mul(1 << shift).min(MAX_DELAY);
        if e.locked(policy, now) {
            return Penalty {
                delay,
                locked: true,
            };
        }
        if total >= policy.lockout_failures {
            e.locked_at = Some(now);
            tracing::warn!(
                client = %ip,
                failures = total,
                lockout_secs = policy.lockout_duration.as_secs(),
                "too many failed logins: address locked out"
            );
            return Penalty {
                delay,
                locked: true,
            };
        }
        Penalty {
            delay,
            locked: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Frees a slot in a full table: first every record that has expired, else the one whose
/// last failure is oldest, preferring addresses that are not locked out. An attacker
/// would need `MAX_ENTRIES` addresses of their own to push a record out, and could guess
/// from each of them anyway.
fn make_room(entries: &mut HashMap<IpAddr, Entry>, policy: Policy, now: Instant) {
    entries.retain(|_, e| !e.expired(policy, now));
    if entries.len() < MAX_ENTRIES {
        return;
    }
    let oldest = entries
        .iter()
        .min_by_key(|(_, e)| (e.locked(policy, now), e.last))
        .map(|(ip, _)| *ip);
    if let Some(ip) = oldest {
        entries.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const POLICY: Policy = Policy {
        lockout_failures: 4,
        lockout_duration: Duration::from_secs(60),
    };

    /// One step of a scenario, at `secs` after the start.
    enum Step {
        /// A failure for this user (`None`: unknown name); expect this penalty.
        Fail(Option<&'static str>, u64, bool),
        /// A success for this user; expect it to be let in.
        Succeed(&'static str, bool),
        /// Expect the address to be locked out or not.
        Locked(bool),
    }
    use Step::*;

    #[test]
    fn scenarios() {
        let a = Some("alice");
        let b = Some("bob");
        #[rustfmt::skip]
        let cases: &[(&str, &[(u64, Step)])] = &[
            ("failures grow the delay, then lock", &[
                (0, Fail(b, 250, false)), (0, Fail(b, 500, false)), (0, Fail(b, 1000, false)),
                (0, Fail(b, 2000, true)), (0, Locked(true)), (0, Succeed("bob", false)),
            ]),
            ("interleaving a known password does not reset the count", &[
                (0, Fail(b, 250, false)), (0, Succeed("alice", true)),
                (0, Fail(b, 500, false)), (0, Succeed("alice", true)),
                (0, Fail(b, 1000, false)), (0, Succeed("alice", true)),
                (0, Fail(b, 2000, true)), (0, Succeed("alice", false)), (0, Locked(true)),
            ]),
            ("unknown names count and nothing forgives them", &[
                (0, Fail(None, 250, false)), (0, Succeed("alice", true)),
                (0, Fail(None, 500, false)), (0, Fail(a, 1000, false)),
                (0, Succeed("alice", true)), (0, Fail(None, 1000, false)),
                (0, Fail(b, 2000, true)),
            ]),
            ("a mistype forgiven by the same user's success", &[
                (0, Fail(a, 250, false)), (0, Fail(a, 500, false)), (0, Fail(a, 1000, false)),
                (1, Succeed("alice", true)),
                // Later mistypes start over: no lockout on the next three.
                (2, Fail(a, 250, false)), (2, Fail(a, 500, false)), (2, Fail(a, 1000, false)),
                (3, Locked(false)),
            ]),
            ("a success forgives only its own user's failures", &[
                (0, Fail(a, 250, false)), (0, Fail(b, 500, false)), (0, Fail(b, 1000, false)),
                (0, Succeed("alice", true)), (0, Fail(b, 1000, false)),
                (0, Fail(b, 2000, true)),
            ]),
            ("failures expire a window after the last one", &[
                (0, Fail(b, 250, false)), (30, Fail(b, 500, false)), (89, Fail(b, 1000, false)),
                (149, Fail(b, 250, false)), (150, Locked(false)),
            ]),
            ("a lockout ends after its duration and clears the record", &[
                (0, Fail(b, 250, false)), (0, Fail(b, 500, false)), (0, Fail(b, 1000, false)),
                (0, Fail(b, 2000, true)), (59, Locked(true)), (59, Fail(b, 4000, true)),
                (60, Locked(false)), (60, Fail(b, 250, false)),
            ]),
            ("an ended lockout is forgotten by the next failure too", &[
                (0, Fail(b, 250, false)), (0, Fail(b, 500, false)), (0, Fail(b, 1000, false)),
                (0, Fail(b, 2000, true)), (61, Fail(b, 250, false)),
            ]),
        ];
        for (name, steps) in cases {
            let table = FailureTable::default();
            let start = Instant::now();
            for (i, (secs, step)) in steps.iter().enumerate() {
                let now = start + Duration::from_secs(*secs);
                let at = format!("{name}: step {}", i + 1);
                match step {
                    Fail(user, ms, locked) => assert_eq!(
                        table.record_failure(IP, *user, POLICY, now),
                        Penalty {
                            delay: Duration::from_millis(*ms),
                            locked: *locked
                        },
                        "{at}"
                    ),
                    Succeed(user, ok) => {
                        assert_eq!(table.accept(IP, user, POLICY, now), *ok, "{at}")
                    }
                    Locked(locked) => assert_eq!(table.locked(IP, POLICY, now), *locked, "{at}"),
                }
            }
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let table = FailureTable::default();
        let policy = Policy {
            lockout_failures: 100,
            ..POLICY
        };
        let now = Instant::now();
        let delays: Vec<u128> = (0..8)
            .map(|_| {
                table
                    .record_failure(IP, None, policy, now)
                    .delay
                    .as_millis()
            })
            .collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
    }

    #[test]
    fn the_policy_in_force_decides_how_long_a_lockout_lasts() {
        let table = FailureTable::default();
        let start = Instant::now();
        for _ in 0..4 {
            table.record_failure(IP, None, POLICY, start);
        }
        let at = start + Duration::from_secs(90);
        let longer = Policy {
            lockout_duration: Duration::from_secs(120),
            ..POLICY
        };
        assert!(table.locked(IP, longer, at));
        assert!(!table.locked(IP, POLICY, at));
    }

    #[test]
    fn the_table_is_bounded_and_keeps_lockouts() {
        let table = FailureTable::default();
        let start = Instant::now();
        for _ in 0..4 {
            table.record_failure(IP, None, POLICY, start);
        }
        for i in 0..MAX_ENTRIES as u32 + 50 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) + 1));
            table.record_failure(ip, None, POLICY, start + Duration::from_millis(1));
        }
        assert_eq!(table.len(), MAX_ENTRIES);
        assert!(table.locked(IP, POLICY, start + Duration::from_secs(1)));
    }
}
