use super::*;

const MIN: u64 = 60;
const HOUR: u64 = 3600;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn at(n: u64) -> SystemTime {
    // 2027-01-15 00:00:00 UTC, a Friday.
    UNIX_EPOCH + s(1_800_000_000 - 1_800_000_000 % 86400 + n)
}

#[test]
fn backoff_table() {
    let p = Policy::default();
    // (attempts, jitter, expected delay)
    let cases: &[(u32, f64, u64)] = &[
        (0, 0.0, MIN),
        (1, 0.0, MIN),
        (2, 0.0, 2 * MIN),
        (3, 0.0, 4 * MIN),
        (6, 0.0, 32 * MIN),
        (7, 0.0, HOUR),
        (1000, 0.0, HOUR),
        (u32::MAX, 0.0, HOUR),
        (7, 1.0, 48 * MIN), // at most 20 % off
        (7, 0.5, 54 * MIN),
        (3, 1.0, 192),
        (1, 1.0, MIN),      // never below retry_min
        (7, 7.0, 48 * MIN), // a jitter out of range is clamped
    ];
    for &(attempts, jitter, want) in cases {
        assert_eq!(p.backoff(attempts, jitter), s(want), "{attempts} {jitter}");
    }
    let flat = Policy {
        retry_min: s(HOUR),
        retry_max: s(MIN),
        ..p
    };
    assert_eq!(flat.backoff(3, 0.9), s(MIN), "min above max: max wins");
}

#[test]
fn plan_table() {
    let p = Policy::default();
    let q = at(0);
    let five_days = 5 * 86400;
    // (class, attempts, code refusals, now, expected)
    let cases: &[(Class, u32, u32, u64, Plan)] = &[
        (Class::Delivered, 1, 0, 10, Plan::Done),
        (Class::Permanent, 1, 0, 10, Plan::Bounce),
        (Class::Temporary, 1, 0, 10, Plan::RetryAt(at(10 + MIN))),
        (Class::Temporary, 3, 0, 10, Plan::RetryAt(at(10 + 4 * MIN))),
        // Rate limits: never sooner than 15 minutes, longer once the back-off is.
        (
            Class::RateLimited,
            1,
            0,
            10,
            Plan::RetryAt(at(10 + 15 * MIN)),
        ),
        (
            Class::RateLimited,
            6,
            0,
            10,
            Plan::RetryAt(at(10 + 32 * MIN)),
        ),
        // 535: once more after a short pause, then hold the account.
        (Class::CodeRefused, 1, 1, 10, Plan::RetryAt(at(10 + 60))),
        (Class::CodeRefused, 2, 2, 10, Plan::HoldAccount),
        // The deadline: the last retry is made at it, a failure then bounces.
        (
            Class::Temporary,
            30,
            0,
            five_days - 10,
            Plan::RetryAt(at(five_days)),
        ),
        (
            Class::RateLimited,
            30,
            0,
            five_days - 10,
            Plan::RetryAt(at(five_days)),
        ),
        (Class::Temporary, 31, 0, five_days, Plan::Bounce),
        (Class::CodeRefused, 31, 1, five_days + 1, Plan::Bounce),
        (Class::Delivered, 31, 0, five_days + 1, Plan::Done),
    ];
    for &(class, attempts, refusals, now, want) in cases {
        let got = p.after(class, attempts, refusals, q, at(now), 0.0);
        assert_eq!(got, want, "{class:?} attempts {attempts} at +{now}");
    }
    assert!(!p.expired(q, at(five_days - 1)));
    assert!(p.expired(q, at(five_days)));
}

#[test]
fn rate_parse_table() {
    let ok: &[(&str, Option<(u32, u64)>)] = &[
        ("", None),
        ("  ", None),
        ("20/min", Some((20, MIN))),
        ("100/h", Some((100, HOUR))),
        ("5/s", Some((5, 1))),
        ("500/day", Some((500, 86400))),
        (" 20 / MIN ", Some((20, MIN))),
        ("1/hour", Some((1, HOUR))),
    ];
    for (input, want) in ok {
        let got = Rate::parse(input)
            .unwrap()
            .map(|r| (r.count, r.per.as_secs()));
        assert_eq!(got, *want, "{input:?}");
    }
    for bad in [
        "20",
        "0/min",
        "-1/min",
        "20/fortnight",
        "x/min",
        "20/",
        "/min",
        "1.5/s",
    ] {
        let err = Rate::parse(bad).unwrap_err();
        assert!(err.to_string().contains("20/min"), "{bad:?}: {err}");
    }
}

#[test]
fn pacer_spaces_messages() {
    let t0 = Instant::now();
    let mut p = Pacer::new(Rate::parse("20/min").unwrap());
    assert_eq!(p.wait(t0), Duration::ZERO);
    p.sent(t0);
    assert_eq!(p.wait(t0), s(3));
    assert_eq!(p.wait(t0 + s(1)), s(2));
    assert_eq!(p.wait(t0 + s(3)), Duration::ZERO);
    // Sent late: the next slot counts from the actual send.
    p.sent(t0 + s(10));
    assert_eq!(p.wait(t0 + s(10)), s(3));
    // Sent early (the caller ignored wait): slots still advance, no burst allowed.
    p.sent(t0 + s(10));
    assert_eq!(p.wait(t0 + s(10)), s(6));

    let mut free = Pacer::new(None);
    free.sent(t0);
    free.sent(t0);
    assert_eq!(free.wait(t0), Duration::ZERO);
}

#[test]
fn daily_cap_by_local_day() {
    let beijing = 8 * 3600;
    let mut cap = DailyCap::new(2);
    // 15:00 UTC = 23:00 in Beijing.
    let late = at(15 * HOUR);
    assert_eq!(cap.check(late, beijing), Ok(()));
    cap.record(late, beijing);
    cap.record(late, beijing);
    // Beijing midnight = 16:00 UTC.
    assert_eq!(cap.check(late, beijing), Err(at(16 * HOUR)));
    assert_eq!(cap.check(at(16 * HOUR - 1), beijing), Err(at(16 * HOUR)));
    assert_eq!(cap.check(at(16 * HOUR), beijing), Ok(()));
    // The same sends, counted in UTC: still the same day until 24:00 UTC.
    let mut utc = DailyCap::new(2);
    utc.record(late, 0);
    utc.record(late, 0);
    assert_eq!(utc.check(at(16 * HOUR), 0), Err(at(24 * HOUR)));
    // A new day starts a new count.
    cap.record(at(16 * HOUR), beijing);
    assert_eq!(cap.check(at(16 * HOUR), beijing), Ok(()));
    cap.record(at(17 * HOUR), beijing);
    assert_eq!(cap.check(at(17 * HOUR), beijing), Err(at(40 * HOUR)));
    // West of UTC.
    let mut ny = DailyCap::new(1);
    ny.record(at(3 * HOUR), -5 * 3600); // 22:00 the day before
    assert_eq!(ny.check(at(3 * HOUR), -5 * 3600), Err(at(5 * HOUR)));

    let mut none = DailyCap::new(0);
    for _ in 0..1000 {
        none.record(late, 0);
    }
    assert_eq!(none.check(late, 0), Ok(()));
}
