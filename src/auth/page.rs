//! What the status page asks of local authentication: its password login, under the
//! mail listeners' per-host delays and lockout (a guess at the page's password counts
//! against the address exactly as a guess at a mail password does, in the same table),
//! and the list of locked-out hosts with the unlock button's action.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{fingerprint, Authenticator, Verdict};
use crate::host::Host;
use crate::proto::Credentials;
use crate::secrets::Secret;

/// The answer to a status page login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageVerdict {
    /// The password matches `[admin] password_hash`.
    Accepted,
    /// It does not.
    Rejected,
    /// The client's host is locked out (by mail logins or page logins alike).
    LockedOut,
    /// Too many password checks at once: try again.
    Busy,
}

/// The name the page's attempts are fingerprinted under: no local user can have it
/// (user names are printable), so its attempts never collide with a mail login's.
const PAGE_USER: &str = "\0status-page";

impl Authenticator {
    /// Checks the status page's `password` against `phc` (argon2 or bcrypt) for a client
    /// at `ip`, with the per-host delays, lockout and global ceiling of mail logins. A
    /// failure is answered after the same growing delay.
    pub async fn verify_page(&self, ip: IpAddr, password: &Secret, phc: &str) -> PageVerdict {
        let host = Host::of(ip);
        if self.locked(host) {
            return PageVerdict::LockedOut;
        }
        let creds = Credentials {
            user: PAGE_USER.to_string(),
            password: password.clone(),
        };
        let key = self.cache_key(&creds, phc);
        let ticket = match self.admit(host, fingerprint(&key)).await {
            Ok(ticket) => ticket,
            Err(Verdict::LockedOut) => return PageVerdict::LockedOut,
            Err(_) => return PageVerdict::Rejected,
        };
        if !self.guards.ceiling.acquire().await {
            self.metrics.password_check_refused();
            return PageVerdict::Busy;
        }
        let Some(ok) = self.check(host, password, phc.to_string()).await else {
            return PageVerdict::LockedOut;
        };
        let now = Instant::now();
        let penalty = if ok {
            match ticket.succeed(now) {
                Ok(()) => return PageVerdict::Accepted,
                Err(penalty) => penalty,
            }
        } else {
            ticket.fail(now)
        };
        tokio::time::sleep(penalty.delay).await;
        if penalty.locked {
            PageVerdict::LockedOut
        } else {
            PageVerdict::Rejected
        }
    }

    /// Hosts locked out now (an IPv4 address or an IPv6 /64, as logged), each with the
    /// time left, longest first.
    pub fn lockouts(&self) -> Vec<(String, Duration)> {
        self.guards
            .failures
            .lockouts(self.policy(), Instant::now())
            .into_iter()
            .map(|(host, left)| (host.to_string(), left))
            .collect()
    }

    /// Ends the lockout of `host` (as [`Authenticator::lockouts`] shows it) and forgets
    /// its failures. False when it is not locked out.
    pub fn unlock(&self, host: &str) -> bool {
        self.guards
            .failures
            .unlock(host, self.policy(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    fn authenticator(lockout_failures: u32) -> Authenticator {
        let limits = crate::config::Limits {
            lockout_failures,
            ..Default::default()
        };
        Authenticator::with_limits(HashMap::new(), &limits, Default::default(), Arc::default())
    }

    #[tokio::test(start_paused = true)]
    async fn page_login_counts_against_the_host_and_unlock_forgives() {
        let auth = authenticator(2);
        let phc = crate::auth::hash_password(&Secret::from("right")).expect("hash");
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let cases = [
            // (password, verdict)
            ("right", PageVerdict::Accepted),
            ("wrong-1", PageVerdict::Rejected),
            ("wrong-1", PageVerdict::Rejected),
            ("wrong-2", PageVerdict::LockedOut),
            ("right", PageVerdict::LockedOut),
        ];
        for (password, want) in cases {
            let got = auth.verify_page(ip, &Secret::from(password), &phc).await;
            assert_eq!(got, want, "{password}");
        }
        assert_eq!(auth.lockouts().len(), 1);
        assert_eq!(auth.lockouts()[0].0, "192.0.2.7");
        assert!(auth.lockouts()[0].1 > Duration::ZERO);
        assert!(!auth.unlock("192.0.2.8"));
        assert!(auth.unlock("192.0.2.7"));
        assert!(auth.lockouts().is_empty());
        let got = auth.verify_page(ip, &Secret::from("right"), &phc).await;
        assert_eq!(got, PageVerdict::Accepted);
    }
}
