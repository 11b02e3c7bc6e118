//! Table tests of the per-user budget: the budget, one turn per interval, known hosts,
//! the cache rule, abandoned checks, episodes, and the shared unknown-name budget.

use std::net::{IpAddr, Ipv6Addr};

use super::*;

/// Three failures, then one turn a minute.
const POLICY: BudgetPolicy = BudgetPolicy {
    failures: 3,
    interval: Duration::from_secs(60),
};

/// On-link IPv6 address `n`: each its own host, as on the proxy's LAN.
fn host(n: u8) -> Host {
    let ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)));
    Host::of_peer(ip, Some("fd00::ffff".parse().unwrap()))
}

fn bucket(c: char) -> Bucket {
    match c {
        'a' => Bucket::User("alice".into()),
        'b' => Bucket::User("bob".into()),
        _ => Bucket::Unknown,
    }
}

/// What a step does.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A login with a wrong password, a new one each time.
    Wrong,
    /// A login with one and the same wrong password each time.
    Same,
    /// A login with the right password.
    Right,
    /// A login whose check is abandoned (the client went away).
    Abandon,
    /// Whether a success-cache hit may be used.
    Cache,
}
use Op::*;

/// What a step got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// A turn from the budget.
    Checked,
    /// A known host's turn.
    Known,
    /// A repeat's turn: spends nothing.
    Repeated,
    /// Refused unchecked; `true` when that began an episode.
    Throttled(bool),
    /// The cache may (not) be used.
    Cached(bool),
}
use Got::*;

/// (seconds from the start, bucket, host, what, expected)
type Step = (u64, char, u8, Op, Got);

#[test]
fn budget_table() {
    const WEEK: u64 = 7 * 24 * 3600;
    #[rustfmt::skip]
    let cases: &[(&str, &[Step])] = &[
        ("the budget, then one turn per interval from all addresses", &[
            (0, 'a', 1, Wrong, Checked), (0, 'a', 2, Wrong, Checked), (0, 'a', 3, Wrong, Checked),
            (0, 'a', 4, Wrong, Throttled(true)), (0, 'a', 5, Right, Throttled(false)),
            (59, 'a', 6, Wrong, Throttled(false)),
            (60, 'a', 7, Wrong, Checked), (60, 'a', 8, Wrong, Throttled(false)),
            // The owner's right password on its turn; it spends nothing...
            (120, 'a', 9, Right, Checked),
            // ...so the turn is still there for the next login, and then none is.
            (120, 'a', 10, Wrong, Checked), (120, 'a', 11, Wrong, Throttled(false)),
        ]),
        ("other users are not affected", &[
            (0, 'a', 1, Wrong, Checked), (0, 'a', 2, Wrong, Checked), (0, 'a', 3, Wrong, Checked),
            (0, 'a', 4, Wrong, Throttled(true)), (0, 'b', 4, Wrong, Checked),
            (0, 'u', 4, Wrong, Checked),
        ]),
        ("unknown names share one budget", &[
            (0, 'u', 1, Wrong, Checked), (0, 'u', 2, Wrong, Checked), (0, 'u', 3, Wrong, Checked),
            (0, 'u', 4, Wrong, Throttled(true)), (0, 'a', 5, Right, Checked),
        ]),
        ("a host that logged in before is never throttled", &[
            (0, 'a', 1, Right, Checked), (0, 'a', 1, Cache, Cached(true)),
            (0, 'a', 2, Wrong, Checked), (0, 'a', 3, Wrong, Checked), (0, 'a', 4, Wrong, Checked),
            (0, 'a', 5, Wrong, Throttled(true)),
            (1, 'a', 1, Wrong, Known), (1, 'a', 1, Right, Known),
            // Under attack the cache serves known hosts only: a lookup without a turn
            // would be a password oracle.
            (1, 'a', 1, Cache, Cached(true)), (1, 'a', 6, Cache, Cached(false)),
            // The known host's failure spent a share, capped at one window of debt: the
            // next turn comes a second later than it would have.
            (60, 'a', 6, Wrong, Throttled(false)), (61, 'a', 6, Wrong, Checked),
        ]),
        ("a known host is forgotten a week after its last login", &[
            (0, 'a', 1, Right, Checked),
            (WEEK, 'a', 2, Wrong, Checked), (WEEK, 'a', 3, Wrong, Checked),
            (WEEK, 'a', 4, Wrong, Checked), (WEEK, 'a', 1, Right, Throttled(true)),
        ]),
        ("the cache serves a new address only while a turn is free", &[
            (0, 'a', 9, Cache, Cached(true)),
            (0, 'a', 1, Wrong, Checked), (0, 'a', 2, Wrong, Checked),
            (0, 'a', 9, Cache, Cached(true)), (0, 'a', 3, Wrong, Checked),
            (0, 'a', 9, Cache, Cached(false)), (0, 'a', 4, Wrong, Throttled(true)),
            (60, 'a', 9, Cache, Cached(true)), (180, 'a', 9, Cache, Cached(true)),
        ]),
        ("a repeated attempt spends nothing, from any address", &[
            (0, 'a', 1, Same, Checked), (0, 'a', 2, Same, Repeated), (0, 'a', 3, Same, Repeated),
            (0, 'a', 4, Wrong, Checked), (0, 'a', 5, Wrong, Checked),
            (0, 'a', 6, Same, Repeated), (0, 'a', 7, Wrong, Throttled(true)),
        ]),
        ("an abandoned check spends nothing", &[
            (0, 'a', 1, Abandon, Checked), (0, 'a', 2, Abandon, Checked), (0, 'a', 3, Abandon, Checked),
            (0, 'a', 4, Abandon, Checked), (0, 'a', 1, Wrong, Checked), (0, 'a', 2, Wrong, Checked),
            (0, 'a', 3, Wrong, Checked), (0, 'a', 4, Wrong, Throttled(true)),
        ]),
        ("an episode ends when the budget has refilled; the next one is logged again", &[
            (0, 'a', 1, Wrong, Checked), (0, 'a', 2, Wrong, Checked), (0, 'a', 3, Wrong, Checked),
            (0, 'a', 4, Wrong, Throttled(true)),
            (180, 'a', 1, Wrong, Checked), (180, 'a', 2, Wrong, Checked), (180, 'a', 3, Wrong, Checked),
            (180, 'a', 4, Wrong, Throttled(true)),
        ]),
        ("the budget refills by one per interval", &[
            (0, 'a', 1, Wrong, Checked), (0, 'a', 2, Wrong, Checked), (0, 'a', 3, Wrong, Checked),
            (120, 'a', 4, Wrong, Checked), (120, 'a', 5, Wrong, Checked),
            (120, 'a', 6, Wrong, Throttled(true)),
        ]),
    ];
    for (name, steps) in cases {
        let budgets = UserBudgets::default();
        let start = Instant::now();
        for (i, (secs, b, h, op, want)) in steps.iter().enumerate() {
            let now = start + Duration::from_secs(*secs);
            let (b, h) = (bucket(*b), host(*h));
            // Each step's attempt is new, but for `Same` and the right password.
            let fp = match op {
                Same => [0xee; 16],
                Right => [0xff; 16],
                _ => [i as u8; 16],
            };
            let got = match op {
                Cache => Cached(budgets.may_use_cache(&b, h, POLICY, now)),
                _ => match budgets.begin((&b, fp), h, POLICY, now) {
                    Err(t) => Throttled(t.new_episode),
                    Ok(share) => {
                        let got = match share.turn {
                            Turn::Known => Known,
                            Turn::Repeat => Repeated,
                            Turn::Check => Checked,
                        };
                        match op {
                            Wrong | Same => share.finish(Ended::Wrong, now),
                            Right => share.finish(Ended::Right, now),
                            _ => drop(share),
                        }
                        got
                    }
                },
            };
            assert_eq!(got, *want, "{name}: step {} ({op:?} at {secs}s)", i + 1);
        }
    }
}

/// The long-run rate whatever the number of addresses: with the defaults (20, 90 s), a
/// guesser with a fresh address per guess, asking every second for 25 hours, gets the
/// budget plus one guess per 90 s: 1,000 guesses take about 25 hours.
#[test]
fn a_guesser_with_endless_addresses_gets_one_guess_per_interval() {
    let policy = BudgetPolicy {
        failures: 20,
        interval: Duration::from_secs(90),
    };
    let budgets = UserBudgets::default();
    let start = Instant::now();
    let mut checked = 0u32;
    let mut hours_for_1000 = None;
    for s in 0..25 * 3600u64 {
        let now = start + Duration::from_secs(s);
        let h = Host::of_peer(
            IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(s))),
            Some("fd00::ffff".parse().unwrap()),
        );
        let fp = [
            (s % 251) as u8,
            (s / 251 % 251) as u8,
            (s / 63001) as u8,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        if let Ok(share) = budgets.begin((&bucket('a'), fp), h, policy, now) {
            share.finish(Ended::Wrong, now);
            checked += 1;
            if checked == 1000 {
                hours_for_1000 = Some(s as f64 / 3600.0);
            }
        }
    }
    // The budget, then 40 an hour.
    assert!(
        (20 + 25 * 40 - 2..=20 + 25 * 40).contains(&checked),
        "{checked} guesses checked in 25 h"
    );
    let hours = hours_for_1000.expect("1,000 guesses within 25 h");
    assert!(hours > 24.4, "1,000 guesses took only {hours:.1} h");
}

#[test]
fn durations_in_plain_words() {
    for (secs, want) in [
        (90, "90s"),
        (30, "30s"),
        (1800, "30m"),
        (120, "2m"),
        (7200, "2h"),
    ] {
        assert_eq!(plain(Duration::from_secs(secs)), want);
    }
    assert_eq!(plain(Duration::from_millis(5)), "5ms");
}
