//! Table tests of the failure table: distinct attempts, repeats, successes, checks in
//! progress, windows and lockouts, and its bounds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

const POLICY: Policy = Policy {
    lockout_failures: 4,
    lockout_duration: Duration::from_secs(60),
};

fn host() -> Host {
    Host::of(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Attempt `n`'s fingerprint (same `n`: same user name and password).
fn fp(n: u8) -> Fingerprint {
    [n; 16]
}

/// One step of a scenario; `n` names an attempt.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A check of attempt `n` whose password is wrong.
    Fail(u8),
    /// A check of attempt `n` whose password is right.
    Right(u8),
    /// A check of attempt `n` that starts and is held in progress.
    Hold(u8),
    /// The oldest held check of `n` ends: wrong password.
    EndFail(u8),
    /// The oldest held check of `n` ends: right password.
    EndRight(u8),
    /// The oldest held check of `n` is abandoned (the client went away).
    Abandon(u8),
    /// Whether the host is locked out.
    IsLocked,
}
use Step::*;

/// What a step got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// Admitted / let in / not locked.
    Ok,
    /// Refused before any check: locked out.
    Locked,
    /// Refused before any check: every slot is held (the check waits).
    Full,
    /// A failure's penalty (delay in ms, locked out), for a right password too when a
    /// lockout came meanwhile.
    Penalty(u64, bool),
}
use Got::{Full, Locked, Ok as Yes};

/// A penalty without lockout.
const fn p(ms: u64) -> Got {
    Got::Penalty(ms, false)
}

/// A penalty with lockout.
const fn l(ms: u64) -> Got {
    Got::Penalty(ms, true)
}

fn got(p: Penalty) -> Got {
    Got::Penalty(p.delay.as_millis() as u64, p.locked)
}

/// A step at so many seconds after the start, and what it should get.
type At = (u64, Step, Got);

/// Runs `steps` against one table and host.
fn run(name: &str, steps: &[At]) {
    let table = FailureTable::default();
    let mut held: Vec<(u8, Ticket<'_>)> = Vec::new();
    let start = Instant::now();
    for (i, (secs, step, want)) in steps.iter().enumerate() {
        let now = start + Duration::from_secs(*secs);
        let mut take = |n: u8| {
            let at = held
                .iter()
                .position(|(m, _)| *m == n)
                .expect("a held check");
            held.remove(at).1
        };
        let result = match *step {
            Fail(n) | Right(n) | Hold(n) => match table.begin(host(), fp(n), POLICY, now) {
                Admit::Locked => Locked,
                Admit::Full => Full,
                // Answered without a check: the same penalty a checked repeat would get.
                Admit::Repeat(p) => got(p),
                Admit::Check(t) => match step {
                    Fail(_) => got(t.fail(now)),
                    Right(_) => t.succeed(now).map_or_else(got, |()| Yes),
                    _ => {
                        held.push((n, t));
                        Yes
                    }
                },
            },
            EndFail(n) => got(take(n).fail(now)),
            EndRight(n) => take(n).succeed(now).map_or_else(got, |()| Yes),
            Abandon(n) => {
                drop(take(n));
                Yes
            }
            IsLocked => match table.locked(host(), POLICY, now) {
                true => Locked,
                false => Yes,
            },
        };
        assert_eq!(
            result,
            *want,
            "{name}: step {} ({step:?} at {secs} s)",
            i + 1
        );
    }
}

#[test]
fn scenarios() {
    #[rustfmt::skip]
    let cases: &[(&str, &[At])] = &[
        ("distinct failures grow the delay, then lock", &[
            (0, Fail(1), p(250)), (0, Fail(2), p(500)), (0, Fail(3), p(1000)),
            (0, Fail(4), l(2000)), (0, IsLocked, Locked), (0, Right(9), Locked),
            (0, Fail(5), Locked),
        ]),
        // A victim's successes between someone else's guesses at their password.
        ("a success forgives nothing", &[
            (0, Fail(1), p(250)), (0, Right(9), Yes), (0, Fail(2), p(500)), (0, Right(9), Yes),
            (0, Fail(3), p(1000)), (0, Right(9), Yes), (0, Fail(4), l(2000)),
            (0, Right(9), Locked),
        ]),
        ("a repeat counts once and is delayed by the distinct count", &[
            (0, Fail(1), p(250)), (0, Fail(1), p(250)), (0, Fail(1), p(250)),
            (0, Fail(2), p(500)), (0, Fail(1), p(500)), (0, Fail(2), p(500)),
            (0, Fail(3), p(1000)), (0, Fail(3), p(1000)), (0, IsLocked, Yes),
        ]),
        ("a stale device alone never locks the address", &[
            (0, Fail(1), p(250)), (20, Fail(1), p(250)), (59, Fail(1), p(250)),
            (60, Fail(1), p(250)), (100, Fail(1), p(250)), (119, Right(9), Yes),
            (119, Fail(2), p(500)), (119, IsLocked, Yes),
        ]),
        ("repeats do not extend the window", &[
            (0, Fail(1), p(250)), (0, Fail(2), p(500)), (50, Fail(2), p(500)),
            (59, Fail(1), p(500)), (60, Fail(3), p(250)),
        ]),
        ("failures expire a window after the last new one", &[
            (0, Fail(1), p(250)), (30, Fail(2), p(500)), (89, Fail(3), p(1000)),
            (149, Fail(4), p(250)), (150, IsLocked, Yes),
        ]),
        ("a lockout ends after its duration and clears the record", &[
            (0, Fail(1), p(250)), (0, Fail(2), p(500)), (0, Fail(3), p(1000)),
            (0, Fail(4), l(2000)), (59, IsLocked, Locked), (59, Fail(1), Locked),
            (60, IsLocked, Yes), (60, Fail(1), p(250)),
        ]),
        ("an ended lockout is forgotten by the next check too", &[
            (0, Fail(1), p(250)), (0, Fail(2), p(500)), (0, Fail(3), p(1000)),
            (0, Fail(4), l(2000)), (61, Fail(4), p(250)),
        ]),
        ("checks in progress hold slots; a right password frees its own", &[
            (0, Hold(1), Yes), (0, Hold(2), Yes), (0, Hold(3), Yes), (0, Hold(4), Yes),
            (0, Hold(5), Full), (0, Right(9), Full),
            (0, EndRight(2), Yes), (0, Hold(5), Yes),
            (0, EndFail(1), p(250)), (0, EndFail(3), p(500)), (0, EndFail(4), p(1000)),
            (0, EndFail(5), l(2000)),
        ]),
        ("the same attempt sent at once needs one slot", &[
            (0, Hold(1), Yes), (0, Hold(1), Yes), (0, Hold(2), Yes), (0, Hold(3), Yes),
            (0, Hold(4), Yes), (0, Hold(1), Yes), (0, Hold(5), Full),
            (0, EndFail(1), p(250)), (0, EndFail(1), p(250)), (0, Hold(5), Full),
            (0, EndFail(2), p(500)), (0, EndFail(1), p(500)),
        ]),
        ("a repeat of a counted attempt needs no free slot", &[
            (0, Fail(1), p(250)), (0, Fail(2), p(500)), (0, Fail(3), p(1000)),
            (0, Hold(4), Yes), (0, Fail(5), Full), (0, Fail(1), p(1000)),
            (0, EndRight(4), Yes), (0, Fail(5), l(2000)),
        ]),
        ("the last slot's failure locks; waiting checks are then refused", &[
            (0, Fail(1), p(250)), (0, Fail(2), p(500)), (0, Fail(3), p(1000)),
            (0, Hold(4), Yes), (0, Hold(5), Full), (0, Right(9), Full),
            (0, EndFail(4), l(2000)), (0, Hold(5), Locked), (0, Right(9), Locked),
        ]),
        ("an abandoned check frees its slot and counts nothing", &[
            (0, Hold(1), Yes), (0, Hold(2), Yes), (0, Hold(3), Yes), (0, Hold(4), Yes),
            (0, Abandon(2), Yes), (0, Hold(5), Yes),
            (0, EndFail(1), p(250)), (0, EndFail(3), p(500)), (0, EndFail(4), p(1000)),
            (0, EndFail(5), l(2000)),
        ]),
        ("a check held across the end of the window counts in the next one", &[
            (0, Fail(1), p(250)), (0, Hold(2), Yes), (70, EndFail(2), p(250)),
            (70, IsLocked, Yes),
        ]),
    ];
    for (name, steps) in cases {
        run(name, steps);
    }
}

/// A repeat of an attempt that already failed is answered from the table: no check (so no
/// argon2), no slot, the penalty of the failures so far; a repeat of one still being
/// checked is checked.
#[test]
fn a_failed_attempt_repeated_is_answered_without_a_check() {
    let table = FailureTable::default();
    let now = Instant::now();
    for n in [1, 2] {
        let Admit::Check(t) = table.begin(host(), fp(n), POLICY, now) else {
            panic!("admitted");
        };
        t.fail(now);
    }
    for _ in 0..100 {
        let Admit::Repeat(p) = table.begin(host(), fp(1), POLICY, now) else {
            panic!("a repeat is answered without a check");
        };
        assert_eq!((p.delay, p.locked), (Duration::from_millis(500), false));
        assert_eq!(table.in_progress(host()), 0);
    }
    let Admit::Check(held) = table.begin(host(), fp(3), POLICY, now) else {
        panic!("admitted");
    };
    assert!(matches!(
        table.begin(host(), fp(3), POLICY, now),
        Admit::Check(_)
    ));
    drop(held);
}

/// A right password refused because a lockout came while it was checked (here: a reload
/// lowered `lockout_failures`) gets the penalty a wrong one gets: the same delay, so the
/// answer's timing does not tell which it was.
#[test]
fn a_right_password_refused_meanwhile_waits_like_a_wrong_one() {
    let lower = Policy {
        lockout_failures: 2,
        ..POLICY
    };
    let now = Instant::now();
    let mut penalties = Vec::new();
    for right in [true, false] {
        let table = FailureTable::default();
        for n in [1, 2] {
            let Admit::Check(t) = table.begin(host(), fp(n), POLICY, now) else {
                panic!("admitted");
            };
            t.fail(now);
        }
        let Admit::Check(t) = table.begin(host(), fp(9), POLICY, now) else {
            panic!("admitted");
        };
        assert!(matches!(
            table.begin(host(), fp(3), lower, now),
            Admit::Locked
        ));
        let penalty = if right {
            t.succeed(now).expect_err("refused: locked out meanwhile")
        } else {
            t.fail(now)
        };
        penalties.push(penalty);
    }
    let want = Penalty {
        delay: Duration::from_millis(1000),
        locked: true,
    };
    assert_eq!(penalties, [want, want]);
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
        .map(|n| match table.begin(host(), fp(n), policy, now) {
            Admit::Check(t) => t.fail(now).delay.as_millis(),
            _ => panic!("admitted"),
        })
        .collect();
    assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
}

/// Fails attempts `ns` from `host` at `now`.
fn fail_all(
    table: &FailureTable,
    host: Host,
    ns: impl IntoIterator<Item = u8>,
    policy: Policy,
    now: Instant,
) {
    for n in ns {
        if let Admit::Check(t) = table.begin(host, fp(n), policy, now) {
            t.fail(now);
        }
    }
}

#[test]
fn the_policy_in_force_decides_how_long_a_lockout_lasts() {
    let table = FailureTable::default();
    let start = Instant::now();
    fail_all(&table, host(), 0..4, POLICY, start);
    let at = start + Duration::from_secs(90);
    let longer = Policy {
        lockout_duration: Duration::from_secs(120),
        ..POLICY
    };
    assert!(table.locked(host(), longer, at));
    assert!(!table.locked(host(), POLICY, at));
}

/// Fingerprints are kept only up to the lockout (and `MAX_REMEMBERED`), and the table up
/// to `MAX_ENTRIES` hosts, keeping lockouts when it must forget.
#[test]
fn the_table_is_bounded_and_keeps_lockouts() {
    let table = FailureTable::default();
    let start = Instant::now();
    fail_all(&table, host(), 0..20, POLICY, start);
    assert_eq!(table.lock()[&host()].failed.len(), 4);
    let lax = Policy {
        lockout_failures: 1000,
        ..POLICY
    };
    let other = Host::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    for n in 0..300u16 {
        let mut f = [0u8; 16];
        f[..2].copy_from_slice(&n.to_be_bytes());
        if let Admit::Check(t) = table.begin(other, f, lax, start) {
            t.fail(start);
        }
    }
    {
        let entries = table.lock();
        let e = &entries[&other];
        assert_eq!((e.failed.len(), e.failures()), (MAX_REMEMBERED, 300));
    }

    // One new host per /64.
    for i in 0..MAX_ENTRIES as u32 + 50 {
        let ip = IpAddr::V6(Ipv6Addr::from((u128::from(i) + 1) << 64));
        fail_all(
            &table,
            Host::of(ip),
            [1],
            POLICY,
            start + Duration::from_millis(1),
        );
    }
    assert_eq!(table.lock().len(), MAX_ENTRIES);
    assert!(table.locked(host(), POLICY, start + Duration::from_secs(1)));
}

#[test]
fn the_key_is_random_and_never_shown() {
    let (a, b) = (FailureTable::default(), FailureTable::default());
    assert_ne!(a.key(), b.key());
    let shown = format!("{a:?}");
    assert!(shown.starts_with("FailureTable"), "{shown}");
    assert!(!shown.contains("key"), "{shown}");
}
