//! Local authentication: argon2 verification of local users, a short-lived cache of
//! successful checks, and the rules against guessing: per-host delays and lockout
//! (`failures.rs`), a per-user budget that holds whatever the source address
//! (`budget.rs`), and a global ceiling on password checks per second (`ceiling.rs`).
//!
//! Argon2 is deliberately slow (tens of milliseconds), so a successful check is
//! remembered for `auth_cache_ttl` under a keyed BLAKE2b hash of user and password (the
//! cache never holds a password, and its key is random per process), as Dovecot's auth
//! cache does. Failed checks are never cached; the same hash, truncated, is what the
//! failure table ([`FailureTable`], `failures.rs`) tells repeated attempts apart by. That
//! table (with its key), the per-user budgets and the ceiling are what outlives a reload
//! ([`Guards`]); users, hashes and the cache always follow the configuration in force.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac512;
use rand::RngCore;

use crate::config::{Account, Config, Limits, User};
use crate::metrics::Metrics;
use crate::proto::Credentials;
use crate::secrets::Secret;

mod budget;
mod ceiling;
mod failures;
mod page;
pub mod published;

pub use budget::UserBudgets;
use budget::{Bucket, BudgetPolicy, Ended};
pub use ceiling::Ceiling;
pub use failures::FailureTable;
use failures::{Admit, Fingerprint, Policy, Ticket};
pub use page::PageVerdict;

use crate::host::Host;

/// The result of a local login attempt.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The user is known and the password matches: log in to this account.
    Accepted(Arc<Account>),
    /// Unknown user or wrong password.
    Rejected,
    /// The client's host is locked out after too many distinct failures.
    LockedOut,
    /// Too many password checks at once (`max_password_checks_per_second`): nothing was
    /// checked; answer with the protocol's temporary failure.
    Busy,
}

/// What local authentication keeps across reloads: the authenticator built from a new
/// configuration takes it over, so a SIGHUP forgives no failure, ends no lockout or
/// throttle, and does not double the ceiling.
#[derive(Clone, Default)]
pub struct Guards {
    /// Failed logins and lockouts per client host.
    pub failures: Arc<FailureTable>,
    /// Failed logins per local user, whatever the address.
    pub budgets: Arc<UserBudgets>,
    /// Password checks per second, all users and hosts together.
    pub ceiling: Arc<Ceiling>,
}

/// What unknown users are checked against: the hash of a password nobody is given.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$WpNPx5Wjp+43aJ7f7tY6Yw$ERXVHSFZ4AEitXO/dBhriL0Eu3w/oVmvV3AumePPm8E";

/// Most entries kept in the success cache.
const MAX_ENTRIES: usize = 10_000;

struct LocalUser {
    hash: String,
    account: Arc<Account>,
}

/// Checks local credentials. Shared by every session (cheap to clone via `Arc`).
pub struct Authenticator {
    users: HashMap<String, LocalUser>,
    dummy_hash: String,
    cache: Mutex<HashMap<[u8; 64], Instant>>,
    /// Shared with the authenticators before and after a reload; the failure table holds
    /// the key of the hash of user and password, so that fingerprints stay the same.
    guards: Guards,
    metrics: Arc<Metrics>,
    ttl: Duration,
    policy: Policy,
    budget_policy: BudgetPolicy,
    /// Password checks running at once: each holds argon2's 19 MiB, so a flood of
    /// logins must queue rather than take gigabytes.
    checks: tokio::sync::Semaphore,
}

impl Authenticator {
    /// Builds the user table from the config (and any generated users). `guards` are the
    /// running authenticator's on a reload (so that no failure, lockout or throttle is
    /// forgiven), new ones at start.
    pub fn new(
        config: &Config,
        users: &[User],
        guards: Guards,
        metrics: Arc<Metrics>,
    ) -> Authenticator {
        let table = users
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    LocalUser {
                        hash: u.password_hash.clone(),
                        account: config.account_of(u).clone(),
                    },
                )
            })
            .collect();
        Self::with_limits(table, &config.limits, guards, metrics)
    }

    fn with_limits(
        users: HashMap<String, LocalUser>,
        limits: &Limits,
        guards: Guards,
        metrics: Arc<Metrics>,
    ) -> Authenticator {
        // Unknown users are checked against this hash so that they cost as much time as
        // known ones: response timing must not reveal which user names exist.
        // A constant (same parameters as `hash_password`) rather than one hashed at start:
        // hashing costs ~40 ms and a 19 MiB allocation the allocator keeps.
        let dummy_hash = DUMMY_HASH.to_string();
        let policy = Policy {
            lockout_failures: limits.lockout_failures,
            lockout_duration: limits.lockout_duration,
        };
        guards.failures.set_policy(policy);
        let budget_policy = BudgetPolicy {
            failures: limits.user_throttle_failures.max(1),
            interval: limits.user_throttle_interval,
        };
        guards.budgets.set_policy(budget_policy);
        guards
            .ceiling
            .set_rate(limits.max_password_checks_per_second);
        Authenticator {
            users,
            dummy_hash,
            cache: Mutex::new(HashMap::new()),
            guards,
            metrics,
            ttl: limits.auth_cache_ttl,
            policy,
            budget_policy,
            checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            ),
        }
    }

    /// Number of local users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// The lockout policy in force: the newest configuration's, also for sessions that
    /// began before a reload and still hold this authenticator.
    fn policy(&self) -> Policy {
        self.guards.failures.policy_or(self.policy)
    }

    /// The per-user budget policy in force (the newest configuration's, likewise).
    fn budget_policy(&self) -> BudgetPolicy {
        self.guards.budgets.policy_or(self.budget_policy)
    }

    /// What the authenticator that replaces this one on reload takes over.
    pub fn guards(&self) -> Guards {
        self.guards.clone()
    }

    /// Verifies `creds` from `ip`. A failure is answered only after a delay that grows
    /// with the distinct failed attempts (user name and password) from the client's
    /// [`Host`] in the current window, whatever user they were for; a repeat of an attempt
    /// that already failed counts once. At `lockout_failures` the host is locked out for
    /// `lockout_duration` (logged once per lockout). A success forgives nothing.
    pub async fn verify(&self, ip: IpAddr, creds: &Credentials) -> Verdict {
        self.verify_from(Host::of(ip), creds).await
    }

    /// [`Authenticator::verify`] for a client whose [`Host`] is known (a session knows
    /// whether its client is on the proxy's own IPv6 /64: [`Host::of_peer`]). Besides
    /// the per-host rule, the user's budget applies whatever the address: once spent,
    /// a login for that user is checked only on its turn (one per
    /// `user_throttle_interval`) unless it comes from a host that logged in as that
    /// user before; and at most `max_password_checks_per_second` checks run.
    pub async fn verify_from(&self, host: Host, creds: &Credentials) -> Verdict {
        if self.locked(host) {
            return Verdict::LockedOut;
        }
        let user = self.users.get(&creds.user);
        // Unknown names share one budget: cycling names buys nothing.
        let bucket = match user {
            Some(_) => Bucket::User(creds.user.clone()),
            None => Bucket::Unknown,
        };
        let key = self.cache_key(creds, user.map_or(&self.dummy_hash, |u| &u.hash));
        if let Some(user) = user {
            // Under attack, only a known host may skip its turn through the cache: a
            // lookup made without a turn would be a password oracle.
            let (budgets, policy) = (&self.guards.budgets, self.budget_policy());
            if self.cached(&key) && budgets.may_use_cache(&bucket, host, policy, Instant::now()) {
                return Verdict::Accepted(user.account.clone());
            }
        }
        let ticket = match self.admit(host, fingerprint(&key)).await {
            Ok(ticket) => ticket,
            Err(verdict) => return verdict,
        };
        let share = match self.guards.budgets.begin(
            (&bucket, fingerprint(&key)),
            host,
            self.budget_policy(),
            Instant::now(),
        ) {
            Ok(share) => share,
            Err(throttled) => {
                self.metrics.login_throttled(throttled.new_episode);
                return self.refuse_unchecked(ticket).await;
            }
        };
        // Both the ticket and the share are held while the check queues; dropped (a
        // refusal below, or the client gone), they count and spend nothing.
        if !self.guards.ceiling.acquire().await {
            self.metrics.password_check_refused();
            return Verdict::Busy;
        }
        let (hash, account) = match user {
            Some(u) => (u.hash.clone(), Some(u.account.clone())),
            None => (self.dummy_hash.clone(), None),
        };
        let Some(ok) = self.check(host, &creds.password, hash).await else {
            return Verdict::LockedOut;
        };
        let now = Instant::now();
        let right = ok && account.is_some();
        share.finish(if right { Ended::Right } else { Ended::Wrong }, now);
        let penalty = match (right, account) {
            (true, Some(account)) => match ticket.succeed(now) {
                Ok(()) => {
                    self.remember(key);
                    return Verdict::Accepted(account);
                }
                Err(penalty) => penalty,
            },
            _ => ticket.fail(now),
        };
        // A right password refused by a lockout that came meanwhile waits exactly as long
        // as a wrong one: the timing of the refusal must not tell them apart.
        tokio::time::sleep(penalty.delay).await;
        if penalty.locked {
            Verdict::LockedOut
        } else {
            Verdict::Rejected
        }
    }

    /// Runs argon2 once a memory permit is free; `None` if `host` was locked out while
    /// the check waited for its turn (despite its slot: a reload may have lowered
    /// `lockout_failures`).
    async fn check(&self, host: Host, password: &Secret, hash: String) -> Option<bool> {
        let Ok(permit) = self.checks.acquire().await else {
            return Some(false);
        };
        if self.locked(host) {
            return None;
        }
        let password = password.clone();
        let started = std::time::Instant::now();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        // The permit covers the hashing only, not the failure delay.
        drop(permit);
        self.guards.ceiling.observe(started.elapsed());
        self.metrics.password_checked();
        Some(ok)
    }

    /// Answers a login refused unchecked (its user is throttled) exactly like a checked
    /// wrong password: after the time a check takes and the delay the host's next
    /// failure would get. Nothing is counted against the host: no guess was checked (and
    /// a right password retried later must not count as a repeat of a failure).
    async fn refuse_unchecked(&self, ticket: Ticket<'_>) -> Verdict {
        tokio::time::sleep(self.guards.ceiling.estimate()).await;
        let penalty = ticket.release(Instant::now());
        tokio::time::sleep(penalty.delay).await;
        if penalty.locked {
            Verdict::LockedOut
        } else {
            Verdict::Rejected
        }
    }

    /// A slot for checking attempt `fp` from `host`, waiting while every slot is held by
    /// checks in progress; `None` if the host is (or becomes) locked out.
    async fn admit(&self, host: Host, fp: Fingerprint) -> Result<Ticket<'_>, Verdict> {
        loop {
            // Registered before asking, so that a slot freed in between is not missed.
            let changed = self.guards.failures.changed().notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match self
                .guards
                .failures
                .begin(host, fp, self.policy(), Instant::now())
            {
                Admit::Check(ticket) => return Ok(ticket),
                Admit::Locked => return Err(Verdict::LockedOut),
                Admit::Full => changed.await,
                Admit::Repeat(penalty) => {
                    tokio::time::sleep(penalty.delay).await;
                    return Err(Verdict::Rejected);
                }
            }
        }
    }

    /// The keyed hash of an attempt: user name, password, and the stored hash it is
    /// checked against (so that a password changed by a reload makes every earlier
    /// attempt a new one, for the success cache and the failure table alike).
    fn cache_key(&self, creds: &Credentials, stored: &str) -> [u8; 64] {
        let mut mac = match <Blake2bMac512 as KeyInit>::new_from_slice(self.guards.failures.key()) {
            Ok(m) => m,
            Err(_) => return [0; 64],
        };
        mac.update(creds.user.as_bytes());
        mac.update(&[0]);
        mac.update(creds.password.expose());
        mac.update(&[0]);
        mac.update(stored.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn cached(&self, key: &[u8; 64]) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut cache = lock(&self.cache);
        match cache.get(key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                cache.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember(&self, key: [u8; 64]) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, until| *until > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, now + self.ttl);
    }

    fn locked(&self, host: Host) -> bool {
        self.guards
            .failures
            .locked(host, self.policy(), Instant::now())
    }
}

/// An attempt's fingerprint for the failure table: 16 bytes of the keyed hash are plenty
/// to tell attempts apart.
fn fingerprint(key: &[u8; 64]) -> Fingerprint {
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&key[..16]);
    fp
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hashes a password with argon2id and the OWASP-recommended parameters (the argon2
/// crate's defaults: m=19 MiB, t=2, p=1), as a PHC string.
pub fn hash_password(password: &Secret) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose(), &salt)
        .map(|h| h.to_string())
}

/// Whether `hash` is a bcrypt hash (`$2a$`, `$2b$`, `$2y$`: what `htpasswd -B` and
/// smtprelay's users file hold), accepted beside argon2 so such files work unchanged.
pub fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Checks a password against a PHC string (argon2), honouring the parameters stored in
/// it, or against a bcrypt hash.
pub fn verify_password(password: &Secret, phc: &str) -> bool {
    if is_bcrypt(phc) {
        // bcrypt reads at most 72 bytes; a longer password must not pass on its prefix.
        return password.len() <= 72 && bcrypt::verify(password.expose(), phc).unwrap_or(false);
    }
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.expose(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random local password: 20 characters from an alphabet without look-alikes.
pub fn generate_password() -> Secret {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let bytes = (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()])
        .collect();
    Secret::new(bytes)
}

#[cfg(test)]
mod tests;
