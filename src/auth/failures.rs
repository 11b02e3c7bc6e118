//! The failed-login table behind the delays and lockouts: per client [`Host`] (an IPv4
//! address or an IPv6 /64), the distinct failed attempts of the current window.
//!
//! As in Dovecot's auth penalty, an attempt is identified by user name and password (a
//! keyed hash, [`Fingerprint`]) and a repeat of an attempt that already failed counts
//! once per window: it adds no guessing power, and is answered without running argon2
//! again (the fingerprint covers the user's stored hash, so a password changed by a
//! reload is checked afresh). A device with a stale password retrying every few minutes
//! thus stays at one failure instead of locking its address out for everyone. A successful login forgives nothing: if it did, anyone sharing the victim's
//! address (NAT, a Docker gateway, 127.0.0.1) would get fresh guesses after each of the
//! victim's cheap, cached logins.
//!
//! A check in progress has no verdict yet, so it holds a slot of the address's allowance
//! (a [`Ticket`]): guesses sent in parallel get no more than `lockout_failures` answers.
//! The slot is released when the password turns out right or repeats a counted attempt.
//! While every slot is held, further new attempts wait ([`FailureTable::changed`]).
//!
//! The table outlives reloads: the authenticator built from a new configuration takes
//! over the running one's table, key included, so a SIGHUP forgives no failure, ends no
//! lockout and still recognises repeats. Times are checked against the policy in force,
//! so a reload that changes `lockout_duration` applies to lockouts already running.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::host::Host;

/// Most hosts the table remembers.
const MAX_ENTRIES: usize = 10_000;
/// Most fingerprints remembered per host. Only a `lockout_failures` above it needs more;
/// the distinct failures past it are counted but not remembered (so their repeats count
/// again), which keeps the table's size bounded whatever the configuration.
const MAX_REMEMBERED: usize = 256;
/// First delay after a failure; it doubles with each further distinct failure.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Longest delay before a lockout.
const MAX_DELAY: Duration = Duration::from_secs(4);

/// A login attempt's identity: the first 16 bytes of the authenticator's BLAKE2b of user
/// name and password, keyed with [`FailureTable::key`] (random per process). The table
/// never holds a password or an unkeyed hash of one.
pub(super) type Fingerprint = [u8; 16];

/// The limits in force (from the current configuration).
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Distinct failures from one host before it is locked out.
    pub lockout_failures: u32,
    /// Lockout length, and how long failures are remembered after the host's last new one.
    pub lockout_duration: Duration,
}

/// What the end of a check means for its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Penalty {
    /// How long to wait before answering.
    pub delay: Duration,
    /// Whether the host is locked out (now or already).
    pub locked: bool,
}

/// Whether a check may start.
pub(super) enum Admit<'a> {
    /// Yes: it holds a slot until its verdict is known.
    Check(Ticket<'a>),
    /// The host is locked out.
    Locked,
    /// Every slot left is held by checks in progress: wait for [`FailureTable::changed`]
    /// and ask again.
    Full,
    /// The very attempt already failed in this window: answer it as a failure with this
    /// penalty, without checking the password again (an attacker repeating one attempt
    /// must not be able to keep argon2 busy, and a repeat counts once anyway).
    Repeat(Penalty),
}

/// One host's record.
#[derive(Debug)]
struct Entry {
    /// Distinct failed attempts in the current window.
    failed: Vec<Fingerprint>,
    /// Distinct failures past [`MAX_REMEMBERED`].
    unremembered: u32,
    /// Checks in progress, one per check (an attempt sent twice at once is here twice).
    checking: Vec<Fingerprint>,
    /// The latest new distinct failure; the window ends `lockout_duration` after it.
    last: Instant,
    locked_at: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failed: Vec::new(),
            unremembered: 0,
            checking: Vec::new(),
            last: now,
            locked_at: None,
        }
    }

    /// Distinct failures in the window.
    fn failures(&self) -> u32 {
        u32::try_from(self.failed.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.unremembered)
    }

    /// Slots taken: distinct failures and distinct new attempts being checked.
    fn taken(&self) -> u32 {
        let mut new: Vec<&Fingerprint> = Vec::new();
        for fp in &self.checking {
            if !self.failed.contains(fp) && !new.contains(&fp) {
                new.push(fp);
            }
        }
        self.failures()
            .saturating_add(u32::try_from(new.len()).unwrap_or(u32::MAX))
    }

    fn locked(&self, policy: Policy, now: Instant) -> bool {
        self.locked_at
            .is_some_and(|at| now.saturating_duration_since(at) < policy.lockout_duration)
    }

    /// Forgets the failures of a window that has ended: the lockout is over, or (never
    /// locked) the last new failure is `lockout_duration` old. Checks in progress stay.
    fn refresh(&mut self, policy: Policy, now: Instant) {
        let over = match self.locked_at {
            Some(_) => !self.locked(policy, now),
            None => now.saturating_duration_since(self.last) >= policy.lockout_duration,
        };
        if over {
            self.failed.clear();
            self.unremembered = 0;
            self.locked_at = None;
        }
    }

    /// Nothing worth keeping: no failure, no lockout, no check in progress.
    fn empty(&self) -> bool {
        self.failures() == 0 && self.locked_at.is_none() && self.checking.is_empty()
    }

    /// The penalty a failure of `fp` gets: the delay follows the distinct failures,
    /// counting `fp` unless it is a repeat.
    fn penalty(&self, fp: &Fingerprint, policy: Policy, now: Instant) -> Penalty {
        let count = self
            .failures()
            .saturating_add(u32::from(!self.failed.contains(fp)));
        let shift = count.saturating_sub(1).min(8);
        Penalty {
            delay: BASE_DELAY.saturating_mul(1 << shift).min(MAX_DELAY),
            locked: self.locked(policy, now),
        }
    }

    /// Locks the host out (logged once per lockout).
    fn lock(&mut self, host: Host, policy: Policy, now: Instant) {
        self.locked_at = Some(now);
        tracing::warn!(
            client = %host,
            failures = self.failures(),
            lockout_secs = policy.lockout_duration.as_secs(),
            "too many failed logins: address locked out"
        );
    }
}

/// Failed logins and lockouts per client host. Shared (`Arc`) by every authenticator
/// built during the process's life.
pub struct FailureTable {
    entries: Mutex<HashMap<Host, Entry>>,
    /// The fingerprints' BLAKE2b key (the success cache's too).
    key: [u8; 32],
    /// Signalled whenever a slot is released or turns into a failure.
    changed: tokio::sync::Notify,
    /// The policy of the newest authenticator: sessions begun before a reload still hold
    /// the old one, and must not, say, end a lockout early by its shorter duration.
    policy: Mutex<Option<Policy>>,
}

impl Default for FailureTable {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        FailureTable {
            entries: Mutex::default(),
            key,
            changed: tokio::sync::Notify::new(),
            policy: Mutex::new(None),
        }
    }
}

/// Never shows the key.
impl fmt::Debug for FailureTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureTable")
            .field("hosts", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl FailureTable {
    /// The key of the authenticator's keyed hash of user and password. It lives here so
    /// that the authenticator built on a reload computes the same fingerprints.
    pub(super) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Makes `policy` the one in force (called by each new authenticator).
    pub(super) fn set_policy(&self, policy: Policy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = Some(policy);
    }

    /// The policy in force: the newest authenticator's, else `fallback`.
    pub(super) fn policy_or(&self, fallback: Policy) -> Policy {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(fallback)
    }

    /// Signalled when a slot is released or turns into a failure: a check that got
    /// [`Admit::Full`] asks again then (create the `Notified` before asking).
    pub(super) fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Whether `host` is locked out. A lockout that has ended clears the record.
    pub(super) fn locked(&self, host: Host, policy: Policy, now: Instant) -> bool {
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(&host) else {
            return false;
        };
        if e.locked(policy, now) {
            return true;
        }
        if e.locked_at.is_some() {
            e.refresh(policy, now);
            if e.empty() {
                entries.remove(&host);
            }
        }
        false
    }

    /// Asks to check attempt `fp` from `host`. A repeat of an attempt that already failed
    /// is answered at once ([`Admit::Repeat`]); one of an attempt being checked is let
    /// in (it needs no slot of its own); a new one only while a slot is free. A host
    /// whose failures reach `lockout_failures` (a reload may have lowered it) is locked
    /// out here.
    pub(super) fn begin(
        &self,
        host: Host,
        fp: Fingerprint,
        policy: Policy,
        now: Instant,
    ) -> Admit<'_> {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&host) {
            make_room(&mut entries, policy, now);
        }
        let e = entries.entry(host).or_insert_with(|| Entry::new(now));
        e.refresh(policy, now);
        if e.locked(policy, now) {
            return Admit::Locked;
        }
        if e.failures() >= policy.lockout_failures {
            e.lock(host, policy, now);
            return Admit::Locked;
        }
        if e.failed.contains(&fp) {
            return Admit::Repeat(e.penalty(&fp, policy, now));
        }
        let known = e.checking.contains(&fp);
        if !known && e.taken() >= policy.lockout_failures {
            return Admit::Full;
        }
        e.checking.push(fp);
        Admit::Check(Ticket {
            table: self,
            host,
            fp,
            policy,
            open: true,
        })
    }

    /// Ends a check: frees its slot and, for a failure of a new attempt, counts it (and
    /// locks the host out when the count reaches `lockout_failures`). The penalty is
    /// what a failure gets, for a right password as well: it is refused only if a
    /// lockout came meanwhile, and must then be answered exactly as late as a wrong one.
    fn end(
        &self,
        host: Host,
        fp: Fingerprint,
        failed: bool,
        policy: Policy,
        now: Instant,
    ) -> Penalty {
        let mut entries = self.lock();
        // Absent only if pushed out of a full table meanwhile: nothing to free, and only
        // a failure needs a record again.
        if !entries.contains_key(&host) {
            if !failed {
                drop(entries);
                self.changed.notify_waiters();
                return Entry::new(now).penalty(&fp, policy, now);
            }
            if entries.len() >= MAX_ENTRIES {
                make_room(&mut entries, policy, now);
            }
        }
        let e = entries.entry(host).or_insert_with(|| Entry::new(now));
        if let Some(i) = e.checking.iter().position(|c| *c == fp) {
            e.checking.swap_remove(i);
        }
        e.refresh(policy, now);
        let penalty = e.penalty(&fp, policy, now);
        let new = !e.failed.contains(&fp);
        // Once locked, no further failure needs remembering: the record goes when the
        // lockout ends.
        let penalty = if failed && new && !penalty.locked {
            if e.failed.len() < MAX_REMEMBERED {
                e.failed.push(fp);
            } else {
                e.unremembered = e.unremembered.saturating_add(1);
            }
            e.last = now;
            if e.failures() >= policy.lockout_failures {
                e.lock(host, policy, now);
            }
            Penalty {
                locked: e.locked(policy, now),
                ..penalty
            }
        } else {
            penalty
        };
        if e.empty() {
            entries.remove(&host);
        }
        drop(entries);
        self.changed.notify_waiters();
        penalty
    }

    /// The hosts locked out at `now`, each with the time its lockout has left (the
    /// status page's list), longest first.
    pub(super) fn lockouts(&self, policy: Policy, now: Instant) -> Vec<(Host, Duration)> {
        let entries = self.lock();
        let mut out: Vec<(Host, Duration)> = entries
            .iter()
            .filter(|(_, e)| e.locked(policy, now))
            .filter_map(|(host, e)| {
                let at = e.locked_at?;
                let left = policy
                    .lockout_duration
                    .saturating_sub(now.saturating_duration_since(at));
                Some((*host, left))
            })
            .collect();
        out.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
        });
        out
    }

    /// Ends the lockout of the host shown as `shown` (its `Display`, as
    /// [`FailureTable::lockouts`] lists it) and forgets its failures, as if its window
    /// had ended; checks in progress keep their slots. False when no such host is
    /// locked out.
    pub(super) fn unlock(&self, shown: &str, policy: Policy, now: Instant) -> bool {
        let mut entries = self.lock();
        let Some(host) = entries
            .iter()
            .find(|(h, e)| e.locked(policy, now) && h.to_string() == shown)
            .map(|(h, _)| *h)
        else {
            return false;
        };
        if let Some(e) = entries.get_mut(&host) {
            e.failed.clear();
            e.unremembered = 0;
            e.locked_at = None;
            if e.empty() {
                entries.remove(&host);
            }
        }
        drop(entries);
        tracing::warn!(client = %host, "address unlocked from the status page");
        self.changed.notify_waiters();
        true
    }

    /// Checks in progress from `host`.
    #[cfg(test)]
    pub(super) fn in_progress(&self, host: Host) -> usize {
        self.lock().get(&host).map_or(0, |e| e.checking.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Host, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A check in progress, holding its slot of the host's allowance. Dropped unfinished (the
/// client went away mid-check), it frees the slot without counting anything.
pub(super) struct Ticket<'a> {
    table: &'a FailureTable,
    host: Host,
    fp: Fingerprint,
    policy: Policy,
    open: bool,
}

impl Ticket<'_> {
    /// The password was wrong (or the user unknown).
    pub(super) fn fail(mut self, now: Instant) -> Penalty {
        self.open = false;
        self.table.end(self.host, self.fp, true, self.policy, now)
    }

    /// No verdict: the login was refused unchecked (its user is throttled). Frees the
    /// slot, counts nothing, and returns the penalty a failure would have got, so that
    /// the refusal is answered as late as a checked failure.
    pub(super) fn release(mut self, now: Instant) -> Penalty {
        self.open = false;
        self.table.end(self.host, self.fp, false, self.policy, now)
    }

    /// The password was right: `Err` with a failure's penalty if the host was locked out
    /// meanwhile. Forgives nothing.
    pub(super) fn succeed(mut self, now: Instant) -> Result<(), Penalty> {
        self.open = false;
        let penalty = self.table.end(self.host, self.fp, false, self.policy, now);
        if penalty.locked {
            Err(penalty)
        } else {
            Ok(())
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.open {
            self.table
                .end(self.host, self.fp, false, self.policy, Instant::now());
        }
    }
}

/// Frees a slot in a full table: first every record that has nothing left, else the one
/// whose last new failure is oldest, preferring hosts neither locked out nor being
/// checked. An attacker would need `MAX_ENTRIES` hosts of their own to push a record
/// out, and could guess from each of them anyway.
fn make_room(entries: &mut HashMap<Host, Entry>, policy: Policy, now: Instant) {
    entries.retain(|_, e| {
        e.refresh(policy, now);
        !e.empty()
    });
    if entries.len() < MAX_ENTRIES {
        return;
    }
    let oldest = entries
        .iter()
        .min_by_key(|(_, e)| (e.locked(policy, now), !e.checking.is_empty(), e.last))
        .map(|(host, _)| *host);
    if let Some(host) = oldest {
        entries.remove(&host);
    }
}

#[cfg(test)]
mod tests;
