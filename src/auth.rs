//! Local authentication: argon2 verification of local users, a short-lived cache of
//! successful checks, and per-address throttling and lockout against guessing.
//!
//! Argon2 is deliberately slow (tens of milliseconds), so a successful check is
//! remembered for `auth_cache_ttl` under a keyed BLAKE2b hash of user and password (the
//! cache never holds a password, and its key is random per process), as Dovecot's auth
//! cache does. Failed checks are never cached.

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
use crate::proto::Credentials;
use crate::secrets::Secret;

/// The result of a local login attempt.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The user is known and the password matches: log in to this account.
    Accepted(Arc<Account>),
    /// Unknown user or wrong password.
    Rejected,
    /// The client's address is locked out after too many failures.
    LockedOut,
}

/// What unknown users are checked against: the hash of a password nobody is given.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$WpNPx5Wjp+43aJ7f7tY6Yw$ERXVHSFZ4AEitXO/dBhriL0Eu3w/oVmvV3AumePPm8E";

/// Most entries kept in the success cache and in the failure table.
const MAX_ENTRIES: usize = 10_000;
/// First delay after a failure; it doubles with each further failure.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Longest delay before a lockout.
const MAX_DELAY: Duration = Duration::from_secs(4);

struct LocalUser {
    hash: String,
    account: Arc<Account>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Checks local credentials. Shared by every session (cheap to clone via `Arc`).
pub struct Authenticator {
    users: HashMap<String, LocalUser>,
    dummy_hash: String,
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 64], Instant>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    ttl: Duration,
    lockout_failures: u32,
    lockout_duration: Duration,
    /// Password checks running at once: each holds argon2's 19 MiB, so a flood of
    /// logins must queue rather than take gigabytes.
    checks: tokio::sync::Semaphore,
}

impl Authenticator {
    /// Builds the user table from the config (and any generated users).
    pub fn new(config: &Config, users: &[User]) -> Authenticator {
        let mut cache_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut cache_key);
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
        Self::with_limits(table, cache_key, &config.limits)
    }

    fn with_limits(
        users: HashMap<String, LocalUser>,
        cache_key: [u8; 32],
        limits: &Limits,
    ) -> Authenticator {
        // Unknown users are checked against this hash so that they cost as much time as
        // known ones: response timing must not reveal which user names exist.
        // A constant (same parameters as `hash_password`) rather than one hashed at start:
        // hashing costs ~40 ms and a 19 MiB allocation the allocator keeps.
        let dummy_hash = DUMMY_HASH.to_string();
        Authenticator {
            users,
            dummy_hash,
            cache_key,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            ttl: limits.auth_cache_ttl,
            lockout_failures: limits.lockout_failures,
            lockout_duration: limits.lockout_duration,
            checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            ),
        }
    }

    /// Number of local users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Verifies `creds` from `ip`. A failure is answered only after a delay that grows
    /// with the address's recent failures; past `lockout_failures` the address is locked
    /// out for `lockout_duration` (logged once per lockout).
    pub async fn verify(&self, ip: IpAddr, creds: &Credentials) -> Verdict {
        if self.locked(ip) {
            return Verdict::LockedOut;
        }
        let key = self.cache_key(creds);
        if let Some(user) = self.users.get(&creds.user) {
            if self.cached(&key) {
                return Verdict::Accepted(user.account.clone());
            }
        }
        let (hash, account) = match self.users.get(&creds.user) {
            Some(u) => (u.hash.clone(), Some(u.account.clone())),
            None => (self.dummy_hash.clone(), None),
        };
        let Ok(permit) = self.checks.acquire().await else {
            return Verdict::Rejected;
        };
        // A lockout may have begun while this check waited for its turn.
        if self.locked(ip) {
            return Verdict::LockedOut;
        }
        let password = creds.password.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        // The permit covers the hashing only, not the failure delay below.
        drop(permit);
        // Guesses sent at the same moment from many connections all pass the lockout
        // check above while argon2 runs. A lockout recorded meanwhile applies to them
        // too, right or wrong, so that no more than `lockout_failures` guesses per
        // lockout get an answer that tells anything.
        match (ok, account) {
            (true, Some(_)) if self.locked(ip) => Verdict::LockedOut,
            (true, Some(account)) => {
                self.remember(key);
                lock(&self.failures).remove(&ip);
                Verdict::Accepted(account)
            }
            _ => {
                let (delay, locked_now) = self.record_failure(ip);
                let locked = locked_now || self.locked(ip);
                tokio::time::sleep(delay).await;
                if locked {
                    Verdict::LockedOut
                } else {
                    Verdict::Rejected
                }
            }
        }
    }

    fn cache_key(&self, creds: &Credentials) -> [u8; 64] {
        let mut mac = match <Blake2bMac512 as KeyInit>::new_from_slice(&self.cache_key) {
            Ok(m) => m,
            Err(_) => return [0; 64],
        };
        mac.update(creds.user.as_bytes());
        mac.update(&[0]);
        mac.update(creds.password.expose());
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

    fn locked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        match failures.get(&ip) {
            Some(f) => match f.locked_until {
                Some(until) if until > now => true,
                Some(_) => {
                    failures.remove(&ip);
                    false
                }
                None => false,
            },
            None => false,
        }
    }

    /// Records a failure; returns the delay to apply and whether the address is now locked.
    fn record_failure(&self, ip: IpAddr) -> (Duration, bool) {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_ENTRIES {
            let window = self.lockout_duration;
            failures.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now) || now.duration_since(f.last) < window
            });
        }
        let entry = failures.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        // Failures older than the lockout window are forgotten.
        if now.duration_since(entry.last) > self.lockout_duration {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        let shift = entry.count.saturating_sub(1).min(8);
        let delay = BASE_DELAY.saturating_mul(1 << shift).min(MAX_DELAY);
        if entry.count >= self.lockout_failures && entry.locked_until.is_none() {
            entry.locked_until = Some(now + self.lockout_duration);
            tracing::warn!(
                client = %ip,
                failures = entry.count,
                lockout_secs = self.lockout_duration.as_secs(),
                "too many failed logins: address locked out"
            );
            return (delay, true);
        }
        (delay, false)
    }
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

/// Checks a password against a PHC string, honouring the parameters stored in it.
pub fn verify_password(password: &Secret, phc: &str) -> bool {
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
mod tests {
    use super::*;
    use crate::providers;

    fn account() -> Arc<Account> {
        Arc::new(Account {
            id: "main".into(),
            email: "12345@qq.com".into(),
            provider: providers::find("qq").unwrap(),
            smtp: None,
            imap: None,
            pop3: None,
            ca_file: None,
            code: Secret::from("abcdefghijklmnop"),
            code_source: "test".into(),
        })
    }

    fn auth(limits: &Limits) -> Authenticator {
        let mut users = HashMap::new();
        users.insert(
            "printer".to_string(),
            LocalUser {
                hash: hash_password(&Secret::from("secret")).unwrap(),
                account: account(),
            },
        );
        Authenticator::with_limits(users, [7; 32], limits)
    }

    fn creds(user: &str, pw: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: Secret::from(pw),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn verdicts_table() {
        let a = auth(&Limits::default());
        let cases = [
            ("printer", "secret", true),
            ("printer", "Secret", false),
            ("printer", "", false),
            ("nobody", "secret", false),
            ("printer", "secret", true),
        ];
        for (user, pw, ok) in cases {
            let v = a.verify(IP, &creds(user, pw)).await;
            assert_eq!(matches!(v, Verdict::Accepted(_)), ok, "{user}/{pw}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lockout_after_repeated_failures_and_expiry() {
        let limits = Limits {
            lockout_failures: 3,
            lockout_duration: Duration::from_secs(60),
            ..Limits::default()
        };
        let a = auth(&limits);
        assert!(matches!(
            a.verify(IP, &creds("printer", "x")).await,
            Verdict::Rejected
        ));
        assert!(matches!(
            a.verify(IP, &creds("printer", "y")).await,
            Verdict::Rejected
        ));
        assert!(matches!(
            a.verify(IP, &creds("printer", "z")).await,
            Verdict::LockedOut
        ));
        // Even the right password is refused while locked out.
        assert!(matches!(
            a.verify(IP, &creds("printer", "secret")).await,
            Verdict::LockedOut
        ));
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(matches!(
            a.verify(other, &creds("printer", "secret")).await,
            Verdict::Accepted(_)
        ));
        // The lockout ends: pretend it was set long ago.
        if let Some(f) = lock(&a.failures).get_mut(&IP) {
            f.locked_until = Some(Instant::now() - Duration::from_secs(1));
        }
        assert!(matches!(
            a.verify(IP, &creds("printer", "secret")).await,
            Verdict::Accepted(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_guesses_cannot_exceed_the_limit() {
        let a = Arc::new(auth(&Limits {
            lockout_failures: 5,
            ..Limits::default()
        }));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(
                    async move { a.verify(IP, &creds("printer", &format!("guess{i}"))).await },
                )
            })
            .collect();
        let mut rejected = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Verdict::Rejected) {
                rejected += 1;
            }
        }
        // At most 4 plain rejections (the 5th failure locks); every other guess was refused
        // without being checked.
        assert!(rejected <= 4, "{rejected} guesses were verified");
        assert!(matches!(
            a.verify(IP, &creds("printer", "secret")).await,
            Verdict::LockedOut
        ));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let a = auth(&Limits {
            lockout_failures: 100,
            ..Limits::default()
        });
        let delays: Vec<u128> = (0..8).map(|_| a.record_failure(IP).0.as_millis()).collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
    }

    #[test]
    fn the_dummy_hash_has_the_default_cost() {
        let fresh = hash_password(&Secret::from("x")).unwrap();
        let params = |h: &str| h.split('$').nth(3).map(str::to_string);
        assert_eq!(params(DUMMY_HASH), params(&fresh));
        assert!(crate::config::check_hash(DUMMY_HASH).is_ok());
    }

    #[test]
    fn hashes_verify_and_generated_passwords_differ() {
        let p = generate_password();
        assert_eq!(p.len(), 20);
        assert_ne!(p, generate_password());
        let h = hash_password(&p).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&p, &h));
        assert!(!verify_password(&Secret::from("nope"), &h));
        assert!(!verify_password(&p, "not a hash"));
    }
}
