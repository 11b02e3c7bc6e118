//! The per-user budget of failed logins, whatever the source address: the rule that holds
//! when the per-host table ([`super::FailureTable`]) cannot, because the attacker has
//! many addresses (an on-link IPv6 machine can give itself thousands).
//!
//! Each local user has a budget of `user_throttle_failures` failed checks that refills by
//! one every `user_throttle_interval` (a token bucket, kept as one "theoretical arrival
//! time", GCRA). Unknown user names share one budget, so cycling names buys nothing, and
//! an unknown name is treated exactly like a known one (no reply or timing tells them
//! apart). Once the budget is spent the user is *under attack*: a login for that user
//! is checked only when a turn is free (one per interval, all addresses together); the
//! others are refused unchecked, answered like a wrong password. So a guesser gets one
//! guess per interval at most, and the owner's right password still works on its turn.
//!
//! As in the per-host table, an attempt (user name and password: its [`Fingerprint`])
//! that already failed for the user, or is being checked, spends nothing again: the same
//! stale password on three printers is one failure, and repeating a guess from other
//! addresses adds no guessing power.
//!
//! So that a flood of guesses cannot starve the owner, hosts from which the user logged
//! in successfully ("known hosts") are not throttled: they remain under the per-host
//! rule, which bounds a guesser sharing such a host (NAT, 127.0.0.1) as before, and an
//! attacker cannot join that set without the password. For the same reason a login
//! answered from the success cache is accepted while throttled only from a known host: a
//! cache lookup that could be made without a turn would be a password oracle.
//!
//! The table outlives reloads (like the per-host table) and the newest configuration's
//! policy applies. Each attack episode is logged once, in plain words, and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::failures::Fingerprint;
use crate::host::Host;

/// Most hosts remembered per user as having logged in.
const MAX_KNOWN_HOSTS: usize = 16;
/// How long a host stays known after its last successful login.
const KNOWN_HOST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most failures remembered per user for the attack report.
const MAX_RECENT: usize = 1024;
/// Most failed attempts remembered per user to recognise repeats.
const MAX_FAILED: usize = 256;

/// Whose budget an attempt spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Bucket {
    /// A configured local user.
    User(String),
    /// Every name that is not a local user: one shared budget.
    Unknown,
}

/// The limits in force (from the newest configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BudgetPolicy {
    /// Failed checks for one user before its logins are throttled.
    pub failures: u32,
    /// One check per this interval once throttled; also the budget's refill rate.
    pub interval: Duration,
}

impl BudgetPolicy {
    /// How long the spent budget takes to refill completely.
    fn window(self) -> Duration {
        self.interval.saturating_mul(self.failures)
    }
}

/// What kind of turn a check got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// A share of the budget, spent until the check ends and gives it back.
    Check,
    /// From a host the user logged in from before: never throttled, but a failure
    /// still spends a share (capped at one window of debt).
    Known,
    /// An attempt that already failed for the user, or is being checked: it spends
    /// nothing (no guessing power in it).
    Repeat,
}

/// A login refused unchecked: the user is under attack and no turn is free. Answer it
/// like a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Throttled {
    /// This refusal began an attack episode (logged then).
    pub new_episode: bool,
}

/// How a check ended, for [`UserBudgets::end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The password was right.
    Right,
    /// The password was wrong (or the user unknown).
    Wrong,
    /// No verdict (the client went away, or the check was refused by the ceiling).
    Abandoned,
}

/// An ongoing attack on one user, logged once.
#[derive(Debug)]
struct Episode {
    /// Logins refused unchecked in this episode.
    throttled: u64,
}

/// One user's (or the unknown names') record.
#[derive(Debug)]
struct Entry {
    /// The budget (GCRA): it is full when `tat <= now`, spent when `tat - now` exceeds
    /// `(failures - 1) * interval`.
    tat: Instant,
    /// Hosts that logged in as this user, with the time of their last success.
    known: Vec<(Host, Instant)>,
    /// Recent checks that spent the budget (failed, or still in progress), for the
    /// attack report.
    recent: VecDeque<(Instant, Host)>,
    /// Attempts that failed since the budget was last full.
    failed: VecDeque<Fingerprint>,
    /// Attempts being checked (one entry per check).
    checking: Vec<Fingerprint>,
    episode: Option<Episode>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            tat: now,
            known: Vec::new(),
            recent: VecDeque::new(),
            failed: VecDeque::new(),
            checking: Vec::new(),
            episode: None,
        }
    }

    fn is_known(&self, host: Host, now: Instant) -> bool {
        self.known
            .iter()
            .any(|(h, at)| *h == host && now.saturating_duration_since(*at) < KNOWN_HOST_TTL)
    }

    /// Whether one more check fits the budget now.
    fn has_turn(&self, policy: BudgetPolicy, now: Instant) -> bool {
        let start = self.tat.max(now);
        start.saturating_duration_since(now) + policy.interval <= policy.window()
    }

    /// Spends one check. A known host may overspend, but the debt is capped at one full
    /// window so that an owner's own mistakes cannot throttle others for long.
    fn spend(&mut self, policy: BudgetPolicy, now: Instant) {
        let start = self.tat.max(now);
        self.tat = (start + policy.interval).min(now + policy.window());
    }

    fn refund(&mut self, policy: BudgetPolicy) {
        self.tat = self.tat.checked_sub(policy.interval).unwrap_or(self.tat);
    }

    /// Failures and distinct hosts in the last window.
    fn report(&mut self, policy: BudgetPolicy, now: Instant) -> (usize, usize) {
        let window = policy.window();
        while let Some((at, _)) = self.recent.front() {
            if now.saturating_duration_since(*at) < window {
                break;
            }
            self.recent.pop_front();
        }
        let mut hosts: Vec<Host> = self.recent.iter().map(|(_, h)| *h).collect();
        hosts.sort_unstable_by_key(|h| h.to_string());
        hosts.dedup();
        (self.recent.len(), hosts.len())
    }

    /// Ends an episode whose budget has refilled (logged, so the operator sees the end);
    /// failed attempts are forgotten then.
    fn settle(&mut self, bucket: &Bucket, now: Instant) {
        if self.tat <= now {
            self.failed.clear();
            if let Some(episode) = self.episode.take() {
                tracing::info!(
                    "{} is no longer under attack: {} logins were refused unchecked",
                    Who(bucket),
                    episode.throttled
                );
            }
        }
    }
}

/// How a bucket is named in logs: a configured user by name; never an unknown name
/// (attacker-chosen text).
struct Who<'a>(&'a Bucket);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Bucket::User(name) => write!(f, "local user {name:?}"),
            Bucket::Unknown => f.write_str("unknown user names"),
        }
    }
}

/// A duration in the unit an operator reads: `90s`, `15m`, `2h`.
fn plain(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 120 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Per-user budgets. Shared (`Arc`) by every authenticator built during the process's
/// life, like the per-host table.
#[derive(Debug, Default)]
pub struct UserBudgets {
    entries: Mutex<HashMap<Bucket, Entry>>,
    policy: Mutex<Option<BudgetPolicy>>,
}

impl UserBudgets {
    /// Makes `policy` the one in force (called by each new authenticator).
    pub(super) fn set_policy(&self, policy: BudgetPolicy) {
        *lock(&self.policy) = Some(policy);
    }

    /// The policy in force: the newest authenticator's, else `fallback`.
    pub(super) fn policy_or(&self, fallback: BudgetPolicy) -> BudgetPolicy {
        lock(&self.policy).unwrap_or(fallback)
    }

    /// Whether a login for `bucket` from `host` may be answered from the success cache:
    /// from a known host, or while a turn is free (a right password spends nothing, so
    /// it takes none). Otherwise a cache lookup would be a password oracle.
    pub(super) fn may_use_cache(
        &self,
        bucket: &Bucket,
        host: Host,
        policy: BudgetPolicy,
        now: Instant,
    ) -> bool {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(bucket) else {
            return true;
        };
        e.settle(bucket, now);
        e.is_known(host, now) || e.has_turn(policy, now)
    }

    /// Asks for a turn to check a login for `bucket` from `host`. The [`Share`] says how
    /// the check ended; dropped unfinished, it spends nothing.
    pub(super) fn begin(
        &self,
        (bucket, fp): (&Bucket, Fingerprint),
        host: Host,
        policy: BudgetPolicy,
        now: Instant,
    ) -> Result<Share<'_>, Throttled> {
        let mut entries = lock(&self.entries);
        let e = entries
            .entry(bucket.clone())
            .or_insert_with(|| Entry::new(now));
        e.settle(bucket, now);
        let turn = if e.is_known(host, now) {
            // Spent only if it fails: nothing to give back else.
            Some(Turn::Known)
        } else if e.failed.contains(&fp) || e.checking.contains(&fp) {
            Some(Turn::Repeat)
        } else if e.has_turn(policy, now) {
            e.spend(policy, now);
            Some(Turn::Check)
        } else {
            None
        };
        if let Some(turn) = turn {
            e.checking.push(fp);
            // Counted as it starts: guesses sent at once are all in progress when the
            // first is throttled, and must show in the report.
            if turn != Turn::Repeat {
                if e.recent.len() >= MAX_RECENT {
                    e.recent.pop_front();
                }
                e.recent.push_back((now, host));
            }
            return Ok(Share {
                budgets: self,
                bucket: bucket.clone(),
                fp,
                host,
                turn,
                policy,
                open: true,
            });
        }
        let new_episode = match &mut e.episode {
            Some(episode) => {
                episode.throttled += 1;
                false
            }
            None => {
                e.episode = Some(Episode { throttled: 1 });
                let (failures, hosts) = e.report(policy, now);
                // Plain words, once per episode: what is happening and what it means.
                let (whose, except) = match bucket {
                    Bucket::User(_) => {
                        ("this user", " (addresses it logged in from before are not)")
                    }
                    Bucket::Unknown => ("unknown names", ""),
                };
                tracing::warn!(
                    "{} is under attack: {failures} failed logins from {hosts} addresses in \
                     the last {}; logins for {whose} are throttled to one per {}{except}",
                    Who(bucket),
                    plain(policy.window()),
                    plain(policy.interval),
                );
                true
            }
        };
        Err(Throttled { new_episode })
    }

    /// Ends a check that got `turn`. A right password spends nothing (its share is given
    /// back) and makes `host` known for the user; a wrong one spends a share; an
    /// abandoned check spends nothing.
    fn end(&self, share: &Share<'_>, ended: Ended, now: Instant) {
        let (bucket, host, turn, policy) = (&share.bucket, share.host, share.turn, share.policy);
        let mut entries = lock(&self.entries);
        let e = entries
            .entry(bucket.clone())
            .or_insert_with(|| Entry::new(now));
        if let Some(i) = e.checking.iter().position(|c| *c == share.fp) {
            e.checking.swap_remove(i);
        }
        if ended == Ended::Wrong && !e.failed.contains(&share.fp) {
            if e.failed.len() >= MAX_FAILED {
                e.failed.pop_front();
            }
            e.failed.push_back(share.fp);
        }
        match (turn, ended) {
            (Turn::Check, Ended::Right | Ended::Abandoned) => e.refund(policy),
            (Turn::Known, Ended::Wrong) => e.spend(policy, now),
            _ => {}
        }
        if ended != Ended::Wrong && turn != Turn::Repeat {
            // Not a failure after all: out of the report.
            if let Some(i) = e.recent.iter().rposition(|(_, h)| *h == host) {
                e.recent.remove(i);
            }
        }
        if ended == Ended::Right {
            e.known.retain(|(h, _)| *h != host);
            if e.known.len() >= MAX_KNOWN_HOSTS {
                e.known.remove(0);
            }
            e.known.push((host, now));
        }
        e.settle(bucket, now);
    }
}

/// A check's turn. [`Share::finish`] records how it ended; dropped unfinished (the
/// client went away, or the ceiling refused the check) it spends nothing.
pub(super) struct Share<'a> {
    budgets: &'a UserBudgets,
    bucket: Bucket,
    fp: Fingerprint,
    host: Host,
    turn: Turn,
    policy: BudgetPolicy,
    open: bool,
}

impl Share<'_> {
    /// The check ended with a verdict ([`Ended::Right`] or [`Ended::Wrong`]).
    pub(super) fn finish(mut self, ended: Ended, now: Instant) {
        self.open = false;
        self.budgets.end(&self, ended, now);
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        if self.open {
            self.budgets.end(self, Ended::Abandoned, Instant::now());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
