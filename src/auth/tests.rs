//! Table tests of local authentication: verdicts, what counts as a guess, reloads,
//! parallel guesses, IPv6 hosts and the timing of a refusal.

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
        save_sent: Default::default(),
    })
}

/// An authenticator for `users` (name, password) sharing `guards`.
fn auth_with(users: &[(&str, &str)], limits: &Limits, guards: Guards) -> Authenticator {
    let users = users
        .iter()
        .map(|(name, pw)| {
            let hash = hash_password(&Secret::from(*pw)).unwrap();
            let account = account();
            (name.to_string(), LocalUser { hash, account })
        })
        .collect();
    Authenticator::with_limits(users, limits, guards, Arc::default())
}

fn auth(limits: &Limits) -> Authenticator {
    auth_with(
        &[("printer", "secret"), ("scanner", "scan-pw")],
        limits,
        Guards::default(),
    )
}

fn lockout_after(failures: u32) -> Limits {
    Limits {
        lockout_failures: failures,
        ..Limits::default()
    }
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
    Busy,
}

fn kind(v: &Verdict) -> Want {
    match v {
        Verdict::Accepted(_) => Want::Ok,
        Verdict::Rejected => Want::No,
        Verdict::LockedOut => Want::Locked,
        Verdict::Busy => Want::Busy,
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
async fn what_counts_as_a_guess() {
    use Want::*;
    let right_p = ("printer", "secret");
    let right_s = ("scanner", "scan-pw");
    #[rustfmt::skip]
    let cases: &[(&str, &[Step])] = &[
        ("distinct guesses lock out", &[
            (("scanner", "g1"), No), (("scanner", "g2"), No), (("scanner", "g3"), Locked),
            (right_s, Locked),
        ]),
        // Someone sharing the victim's address guesses between the victim's own logins
        // (the second one from the cache).
        ("a victim's successes forgive nothing", &[
            (("scanner", "g1"), No), (right_s, Ok), (("scanner", "g2"), No), (right_s, Ok),
            (("scanner", "g3"), Locked), (right_s, Locked),
        ]),
        ("knowing another user's password buys no guesses", &[
            (("scanner", "g1"), No), (right_p, Ok), (("scanner", "g2"), No), (right_p, Ok),
            (("scanner", "g3"), Locked), (right_p, Locked), (right_s, Locked),
        ]),
        ("unknown names count like any other", &[
            (("nobody", "g1"), No), (right_p, Ok), (("someone", "g1"), No),
            (("nobody", "g2"), Locked),
        ]),
        ("the same password for another name is another guess", &[
            (("printer", "g1"), No), (("scanner", "g1"), No), (("nobody", "g1"), Locked),
        ]),
        // A device with a stale password retrying: it never locks the address.
        ("a repeated attempt counts once", &[
            (("printer", "old"), No), (("printer", "old"), No), (("printer", "old"), No),
            (("printer", "old"), No), (("printer", "old"), No), (("printer", "old"), No),
            (right_p, Ok), (right_s, Ok), (("scanner", "old"), No), (("printer", "old"), No),
            (("scanner", "old"), No), (right_p, Ok),
        ]),
        ("mistyping differently each time is guessing", &[
            (("printer", "secreet"), No), (right_p, Ok), (("printer", "Secret"), No),
            (right_p, Ok), (("printer", "sercet"), Locked),
        ]),
    ];
    for (name, steps) in cases {
        let a = auth(&lockout_after(3));
        for (i, ((user, pw), want)) in steps.iter().enumerate() {
            let got = kind(&a.verify(IP, &creds(user, pw)).await);
            assert_eq!(got, *want, "{name}: step {} ({user}/{pw})", i + 1);
        }
        // Another address is never affected.
        let other = a.verify(OTHER, &creds(right_s.0, right_s.1)).await;
        assert_eq!(kind(&other), Ok, "{name}: other address");
    }
}

/// An IPv6 client is its /64; IPv4-mapped IPv6 is the IPv4 address.
#[tokio::test(start_paused = true)]
async fn an_ipv6_host_is_its_slash_64() {
    use Want::*;
    let a = auth(&lockout_after(3));
    #[rustfmt::skip]
    let steps = [
        ("2001:db8:1:2::1", ("printer", "g1"), No),
        ("2001:db8:1:2::2", ("printer", "g2"), No),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", ("printer", "g3"), Locked),
        ("2001:db8:1:2::3", ("printer", "secret"), Locked),
        ("2001:db8:1:3::1", ("printer", "secret"), Ok),
        ("::ffff:10.0.0.9", ("printer", "g1"), No),
        ("10.0.0.9", ("printer", "g2"), No),
        ("::ffff:10.0.0.9", ("printer", "g3"), Locked),
        ("10.0.0.10", ("printer", "secret"), Ok),
    ];
    for (i, (ip, (user, pw), want)) in steps.into_iter().enumerate() {
        let got = kind(&a.verify(ip.parse().unwrap(), &creds(user, pw)).await);
        assert_eq!(got, want, "step {} ({ip} {user}/{pw})", i + 1);
    }
}

/// What a reload keeps (failures, lockouts, and the key that recognises repeats) and
/// what it drops (users, hashes, the success cache).
#[tokio::test(start_paused = true)]
async fn a_reload_keeps_failures_but_not_users_or_the_cache() {
    use Want::*;
    let limits = lockout_after(2);
    let third: IpAddr = "10.0.0.3".parse().unwrap();
    let fourth: IpAddr = "10.0.0.4".parse().unwrap();
    let fifth: IpAddr = "10.0.0.5".parse().unwrap();
    let sixth: IpAddr = "10.0.0.6".parse().unwrap();
    let old = auth(&limits);
    for (ip, (user, pw), want) in [
        (IP, ("scanner", "x"), No),
        (IP, ("scanner", "y"), Locked),
        (third, ("nobody", "x"), No),
        (fourth, ("nobody", "stale"), No),
        // Wrong now; the reload below makes it the password.
        (sixth, ("printer", "new-pw"), No),
        // Cached by the old authenticator.
        (OTHER, ("printer", "secret"), Ok),
        (OTHER, ("scanner", "scan-pw"), Ok),
    ] {
        assert_eq!(kind(&old.verify(ip, &creds(user, pw)).await), want);
    }
    // Printer's password changes and scanner is removed.
    let new = auth_with(&[("printer", "new-pw")], &limits, old.guards());
    for (ip, (user, pw), want) in [
        (IP, ("printer", "new-pw"), Locked),
        // Both cached before, from OTHER; the success in between forgives nothing, so
        // the second failure is checked from another address.
        (OTHER, ("printer", "secret"), No),
        (OTHER, ("printer", "new-pw"), Ok),
        (fifth, ("scanner", "scan-pw"), No),
        // The failure before the reload still counts.
        (third, ("nobody", "y"), Locked),
        // A repeat of an attempt that failed before the reload is still a repeat...
        (fourth, ("nobody", "stale"), No),
        (fourth, ("nobody", "stale"), No),
        (fourth, ("nobody", "other"), Locked),
        // ...unless the user's password changed: then it is checked afresh.
        (sixth, ("printer", "new-pw"), Ok),
    ] {
        let got = kind(&new.verify(ip, &creds(user, pw)).await);
        assert_eq!(got, want, "{ip} {user}/{pw}");
    }
}

/// 40 guesses at once from one address with `lockout_failures = 5`: checks in progress
/// hold their slots, so distinct guesses get at most four plain rejections (the fifth
/// failure locks, and the rest are refused unchecked), while copies of the same attempts
/// need no slots of their own.
#[tokio::test(start_paused = true)]
async fn parallel_guesses_cannot_exceed_the_limit() {
    type Password = fn(usize) -> String;
    let cases: [(&str, Password, usize, Want); 3] = [
        ("distinct guesses", |i| format!("guess{i}"), 4, Want::Locked),
        ("one stale password", |_| "stale".into(), 40, Want::Ok),
        (
            "three passwords",
            |i| format!("guess{}", i % 3),
            40,
            Want::Ok,
        ),
    ];
    for (name, password, want_rejected, then) in cases {
        let a = Arc::new(auth(&lockout_after(5)));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let a = a.clone();
                let pw = password(i);
                tokio::spawn(async move { kind(&a.verify(IP, &creds("printer", &pw)).await) })
            })
            .collect();
        let mut rejected = 0;
        for t in tasks {
            match t.await.unwrap() {
                Want::No => rejected += 1,
                Want::Locked => {}
                Want::Ok => panic!("{name}: a wrong password was accepted"),
                Want::Busy => panic!("{name}: refused by the check ceiling"),
            }
        }
        assert_eq!(rejected, want_rejected, "{name}: plain rejections");
        let right = a.verify(IP, &creds("printer", "secret")).await;
        assert_eq!(kind(&right), then, "{name}: the right password afterwards");
    }
}

/// A lockout recorded while a password is being checked (here by a reload that lowers
/// `lockout_failures`) refuses a right password exactly as late as a wrong one.
#[tokio::test(start_paused = true)]
async fn a_lockout_during_the_check_refuses_right_and_wrong_alike() {
    let mut answers = Vec::new();
    for pw in ["secret", "wrong"] {
        let old = Arc::new(auth(&lockout_after(4)));
        assert_eq!(
            kind(&old.verify(IP, &creds("printer", "g1")).await),
            Want::No
        );
        let a = old.clone();
        let check = tokio::spawn(async move {
            let t = tokio::time::Instant::now();
            let verdict = a.verify(IP, &creds("printer", pw)).await;
            (kind(&verdict), t.elapsed())
        });
        // Until the check holds its slot; it then runs argon2 without yielding before.
        while old.guards.failures.in_progress(Host::of(IP)) == 0 {
            tokio::task::yield_now().await;
        }
        // A reload lowers the limit while the check runs.
        let new = auth_with(&[("printer", "secret")], &lockout_after(1), old.guards());
        let locking = new.verify(IP, &creds("printer", "g2")).await;
        assert_eq!(kind(&locking), Want::Locked, "{pw}");
        answers.push(check.await.unwrap());
    }
    // Two distinct failures' delay (the one before and this one): 500 ms.
    let want = (Want::Locked, Duration::from_millis(500));
    assert_eq!(answers, [want, want]);
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

/// htpasswd -B writes `$2y$`, smtprelay `$2a$`/`$2b$`: all verify; a password longer
/// than bcrypt's 72 bytes never passes on its prefix.
#[test]
fn bcrypt_hashes_verify() {
    let p = Secret::from("Pr1nter-Pa55");
    for v in [
        bcrypt::Version::TwoA,
        bcrypt::Version::TwoB,
        bcrypt::Version::TwoY,
    ] {
        let h = bcrypt::hash_with_result("Pr1nter-Pa55", 4)
            .unwrap()
            .format_for_version(v);
        assert!(
            is_bcrypt(&h) && crate::config::check_hash(&h).is_ok(),
            "{h}"
        );
        assert!(verify_password(&p, &h), "{h}");
        assert!(!verify_password(&Secret::from("Pr1nter-Pa56"), &h));
    }
    let long = "x".repeat(72);
    let h = bcrypt::hash(&long, 4).unwrap();
    assert!(verify_password(&Secret::from(long.as_str()), &h));
    assert!(!verify_password(
        &Secret::from(format!("{long}y").as_str()),
        &h
    ));
}

/// Sessions begun before a reload keep the old authenticator, but the lockout policy in
/// force is the newest one: an old, shorter `lockout_duration` must not end a lockout
/// early for everyone.
#[tokio::test(start_paused = true)]
async fn sessions_from_before_a_reload_follow_the_new_lockout_policy() {
    use Want::*;
    let brief = Limits {
        lockout_failures: 2,
        lockout_duration: Duration::from_nanos(1),
        ..Limits::default()
    };
    let old = auth(&brief);
    let new = auth_with(
        &[("printer", "secret")],
        &Limits {
            lockout_duration: Duration::from_secs(3600),
            ..brief.clone()
        },
        old.guards(),
    );
    for (a, pw, want) in [
        (&new, "guess-1", No),
        (&new, "guess-2", Locked),
        // By the old policy this lockout ended a nanosecond after it began.
        (&old, "guess-3", Locked),
        (&old, "secret", Locked),
        (&new, "secret", Locked),
    ] {
        assert_eq!(
            kind(&a.verify(IP, &creds("printer", pw)).await),
            want,
            "{pw}"
        );
    }
}

/// On-link IPv6 client `n` of a proxy at fd00::1: each address a host of its own.
fn lan(n: u16) -> Host {
    let ip = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100 + n));
    Host::of_peer(ip, Some("fd00::1".parse().unwrap()))
}

/// Guessing from many LAN addresses: the per-host rule never bites (one guess each), the
/// per-user budget does, for known and unknown names alike; the owner's usual address
/// still gets in, from the cache or by a check.
#[tokio::test(start_paused = true)]
async fn a_users_budget_holds_whatever_the_address() {
    use Want::*;
    let limits = Limits {
        user_throttle_failures: 3,
        user_throttle_interval: Duration::from_secs(3600),
        ..Limits::default()
    };
    let a = auth(&limits);
    let owner = lan(999);
    #[rustfmt::skip]
    let steps: &[(Host, (&str, &str), Want)] = &[
        (owner, ("printer", "secret"), Ok),
        (lan(1), ("printer", "g1"), No), (lan(2), ("printer", "g2"), No),
        (lan(3), ("printer", "g3"), No),
        // Budget spent: refused unchecked, the right password too (no turn is free).
        (lan(4), ("printer", "secret"), No), (lan(5), ("printer", "g5"), No),
        // The owner's usual address gets in (from the cache).
        (owner, ("printer", "secret"), Ok),
        // Another user is not affected.
        (lan(6), ("scanner", "scan-pw"), Ok),
        // Unknown names share one budget, whatever the name.
        (lan(7), ("nobody", "x"), No), (lan(8), ("someone", "x"), No),
        (lan(9), ("anyone", "x"), No), (lan(10), ("whoever", "x"), No),
        (lan(11), ("scanner", "scan-pw"), Ok),
    ];
    for (i, (host, (user, pw), want)) in steps.iter().enumerate() {
        let got = kind(&a.verify_from(*host, &creds(user, pw)).await);
        assert_eq!(got, *want, "step {} ({host} {user}/{pw})", i + 1);
    }
    let metrics = a.metrics.render();
    assert!(
        metrics.contains("qqmail_proxy_logins_throttled_total 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("qqmail_proxy_users_attacked_total 2\n"),
        "{metrics}"
    );
    // A reload keeps the budgets: still throttled under the new authenticator, whose
    // empty cache makes the owner's login a check (from a known address: not throttled).
    let new = auth_with(&[("printer", "secret")], &limits, a.guards());
    let got = new.verify_from(lan(12), &creds("printer", "secret")).await;
    assert_eq!(kind(&got), No, "after a reload");
    let got = new.verify_from(owner, &creds("printer", "secret")).await;
    assert_eq!(kind(&got), Ok, "the owner after a reload");
}

/// A throttled login is answered as late as a checked wrong password: the time a check
/// takes and the host's failure delay.
#[tokio::test(start_paused = true)]
async fn a_throttled_login_is_answered_like_a_checked_failure() {
    let limits = Limits {
        user_throttle_failures: 1,
        user_throttle_interval: Duration::from_secs(3600),
        ..Limits::default()
    };
    let a = auth(&limits);
    assert_eq!(
        kind(&a.verify_from(lan(1), &creds("nobody", "x")).await),
        Want::No
    );
    let estimate = a.guards.ceiling.estimate();
    let t = tokio::time::Instant::now();
    let got = a.verify_from(lan(2), &creds("nobody", "y")).await;
    assert_eq!(kind(&got), Want::No);
    // Within the paused clock's millisecond rounding.
    let want = estimate + Duration::from_millis(250);
    let took = t.elapsed();
    assert!(
        took >= want && took <= want + Duration::from_millis(2),
        "{took:?} vs {want:?}"
    );
}

/// More checks at once than the ceiling allows in ten seconds: the excess is refused
/// (temporary failure) without a check, the rest wait their turn.
#[tokio::test(start_paused = true)]
async fn the_check_ceiling_defers_then_refuses() {
    let limits = Limits {
        max_password_checks_per_second: 1,
        ..Limits::default()
    };
    let a = Arc::new(auth(&limits));
    let tasks: Vec<_> = (0..15)
        .map(|n| {
            let a = a.clone();
            tokio::spawn(async move {
                let host = lan(n);
                matches!(
                    a.verify_from(host, &creds("printer", &format!("g{n}")))
                        .await,
                    Verdict::Busy
                )
            })
        })
        .collect();
    let mut busy = 0;
    for t in tasks {
        busy += usize::from(t.await.unwrap());
    }
    // One a second, for at most ten seconds of waiting: eleven checks, four refused.
    assert_eq!(busy, 4);
}
