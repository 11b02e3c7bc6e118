//! Local authentication: argon2 verification of local users, a short-lived cache of
//! successful checks, and per-address throttling and lockout against guessing.
//!
//! Argon2 is deliberately slow (tens of milliseconds), so a successful check is
//! remembered for `auth_cache_ttl` under a keyed BLAKE2b hash of user and password (the
//! cache never holds a password, and its key is random per process), as Dovecot's auth
//! cache does. Failed checks are never cached. The failure table ([`FailureTable`],
//! `failures.rs`) is the one piece that outlives a reload; users, hashes and the cache
//! always follow the configuration in force.

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

mod failures;

pub use failures::FailureTable;
use failures::Policy;

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
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 64], Instant>>,
    /// Shared with the authenticators before and after a reload.
    failures: Arc<FailureTable>,
    ttl: Duration,
    policy: Policy,
    /// Password checks running at once: each holds argon2's 19 MiB, so a flood of
    /// logins must queue rather than take gigabytes.
    checks: tokio::sync::Semaphore,
}

impl Authenticator {
    /// Builds the user table from the config (and any generated users). `failures` is
    /// the running authenticator's table on a reload (so that no failure or lockout is
    /// forgiven), a new one at start.
    pub fn new(config: &Config, users: &[User], failures: Arc<FailureTable>) -> Authenticator {
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
        Self::with_limits(table, cache_key, &config.limits, failures)
    }

    fn with_limits(
        users: HashMap<String, LocalUser>,
        cache_key: [u8; 32],
        limits: &Limits,
        failures: Arc<FailureTable>,
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
            failures,
            ttl: limits.auth_cache_ttl,
            policy: Policy {
                lockout_failures: limits.lockout_failures,
                lockout_duration: limits.lockout_duration,
            },
            checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            ),
        }
    }

    /// Number of local users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// The failed-login table, for the authenticator that replaces this one on reload.
    pub fn failure_table(&self) -> Arc<FailureTable> {
        self.failures.clone()
    }

    /// Verifies `creds` from `ip`. A failure is answered only after a delay that grows
    /// with the address's recent failures (for any user); past `lockout_failures` the
    /// address is locked out for `lockout_duration` (logged once per lockout). A success
    /// forgives that user's failures from that address only.
    pub async fn verify(&self, ip: IpAddr, creds: &Credentials) -> Verdict {
        if self.locked(ip) {
            return Verdict::LockedOut;
        }
        let key = self.cache_key(creds);
        if let Some(user) = self.users.get(&creds.user) {
            if self.cached(&key) {
                return self.accept(ip, &creds.user, user.account.clone());
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
            (true, Some(account)) => {
                let verdict = self.accept(ip, &creds.user, account);
                if matches!(verdict, Verdict::Accepted(_)) {
                    self.remember(key);
                }
                verdict
            }
            (_, account) => {
                // Only local users get a bucket of their own (which their success can
                // clear); this also bounds the table by the number of local users.
                let user = account.map(|_| creds.user.as_str());
                let penalty = self
                    .failures
                    .record_failure(ip, user, self.policy, Instant::now());
                tokio::time::sleep(penalty.delay).await;
                if penalty.locked {
                    Verdict::LockedOut
                } else {
                    Verdict::Rejected
                }
            }
        }
    }

    /// A right password: accepted unless the address is locked out meanwhile.
    fn accept(&self, ip: IpAddr, user: &str, account: Arc<Account>) -> Verdict {
        if self.failures.accept(ip, user, self.policy, Instant::now()) {
            Verdict::Accepted(account)
        } else {
            Verdict::LockedOut
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
        self.failures.locked(ip, self.policy, Instant::now())
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

    /// An authenticator for `users` (name, password) sharing `table`.
    fn auth_with(
        users: &[(&str, &str)],
        limits: &Limits,
        table: Arc<FailureTable>,
    ) -> Authenticator {
        let users = users
            .iter()
            .map(|(name, pw)| {
                let hash = hash_password(&Secret::from(*pw)).unwrap();
                let account = account();
                (name.to_string(), LocalUser { hash, account })
            })
            .collect();
        let mut cache_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut cache_key);
        Authenticator::with_limits(users, cache_key, limits, table)
    }

    fn auth(limits: &Limits) -> Authenticator {
        auth_with(
            &[("printer", "secret"), ("scanner", "scan-pw")],
            limits,
            Arc::default(),
        )
    }

    fn creds(user: &str, pw: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: Secret::from(pw),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    /// The verdict a step expects.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Want {
        Ok,
        No,
        Locked,
    }

    fn kind(v: &Verdict) -> Want {
        match v {
            Verdict::Accepted(_) => Want::Ok,
            Verdict::Rejected => Want::No,
            Verdict::LockedOut => Want::Locked,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn verdicts_table() {
        let a = auth(&Limits::default());
        let cases = [
            ("printer", "secret", true),
            ("printer", "Secret", false),
            ("printer", "", false),
            ("nobody", "secret", false),
            ("scanner", "secret", false),
            ("printer", "secret", true),
            ("scanner", "scan-pw", true),
        ];
        for (user, pw, ok) in cases {
            let v = a.verify(IP, &creds(user, pw)).await;
            assert_eq!(matches!(v, Verdict::Accepted(_)), ok, "{user}/{pw}");
        }
    }

    /// A login (user, password) and the verdict it should get.
    type Step = ((&'static str, &'static str), Want);

    /// Login sequences from one address with `lockout_failures = 3`.
    #[tokio::test(start_paused = true)]
    async fn who_a_success_forgives() {
        use Want::*;
        let right_p = ("printer", "secret");
        let wrong_p = ("printer", "guess");
        let right_s = ("scanner", "scan-pw");
        let wrong_s = ("scanner", "guess");
        let unknown = ("nobody", "guess");
        #[rustfmt::skip]
        let cases: &[(&str, &[Step])] = &[
            ("plain guessing locks out", &[
                (wrong_s, No), (wrong_s, No), (wrong_s, Locked), (right_s, Locked),
            ]),
            // Knowing printer's password must not buy unlimited guesses at scanner's.
            ("interleaving a known password still leads to a lockout", &[
                (wrong_s, No), (right_p, Ok), (wrong_s, No), (right_p, Ok),
                (wrong_s, Locked), (right_p, Locked), (right_s, Locked),
            ]),
            ("interleaving with unknown names too", &[
                (unknown, No), (right_p, Ok), (unknown, No), (right_p, Ok),
                (unknown, Locked),
            ]),
            // The second success comes from the cache: it forgives as well.
            ("a user who mistypes and then succeeds is not punished later", &[
                (wrong_p, No), (wrong_p, No), (right_p, Ok),
                (wrong_p, No), (wrong_p, No), (right_p, Ok),
                (wrong_p, No), (wrong_p, No), (right_p, Ok),
            ]),
            ("a success forgives its own user only", &[
                (wrong_p, No), (wrong_s, No), (right_p, Ok), (wrong_s, No), (wrong_s, Locked),
            ]),
        ];
        for (name, steps) in cases {
            let a = auth(&Limits {
                lockout_failures: 3,
                ..Limits::default()
            });
            for (i, ((user, pw), want)) in steps.iter().enumerate() {
                let got = kind(&a.verify(IP, &creds(user, pw)).await);
                assert_eq!(got, *want, "{name}: step {} ({user}/{pw})", i + 1);
            }
            // Another address is never affected.
            let other = a.verify(OTHER, &creds(right_s.0, right_s.1)).await;
            assert_eq!(kind(&other), Ok, "{name}: other address");
        }
    }

    /// What a reload keeps (failures and lockouts) and what it drops (users, hashes, the
    /// success cache).
    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_failures_but_not_users_or_the_cache() {
        use Want::*;
        let limits = Limits {
            lockout_failures: 2,
            ..Limits::default()
        };
        let third: IpAddr = "10.0.0.3".parse().unwrap();
        let old = auth(&limits);
        for (ip, (user, pw), want) in [
            (IP, ("scanner", "x"), No),
            (IP, ("scanner", "y"), Locked),
            (third, ("nobody", "x"), No),
            // Cached by the old authenticator.
            (OTHER, ("printer", "secret"), Ok),
            (OTHER, ("scanner", "scan-pw"), Ok),
        ] {
            assert_eq!(kind(&old.verify(ip, &creds(user, pw)).await), want);
        }
        // Printer's password changes and scanner is removed.
        let new = auth_with(&[("printer", "new-pw")], &limits, old.failure_table());
        for (ip, (user, pw), want) in [
            (IP, ("printer", "new-pw"), Locked),
            (OTHER, ("printer", "secret"), No),
            (OTHER, ("printer", "new-pw"), Ok),
            (OTHER, ("scanner", "scan-pw"), No),
            // The failure before the reload still counts.
            (third, ("nobody", "y"), Locked),
        ] {
            let got = kind(&new.verify(ip, &creds(user, pw)).await);
            assert_eq!(got, want, "{ip} {user}/{pw}");
        }
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
