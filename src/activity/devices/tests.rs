use super::*;
use crate::activity::tests::{end, end_at};

#[test]
fn grouped_as_the_host_limits_group() {
    // (client addresses, the proxy's address they reached, devices listed, first host)
    #[rustfmt::skip]
    let cases: [(&[&str], &str, usize, &str); 5] = [
        (&["192.0.2.7", "192.0.2.7", "::ffff:192.0.2.7"], "192.0.2.1", 1, "192.0.2.7"),
        (&["192.0.2.7", "192.0.2.8"], "192.0.2.1", 2, "192.0.2.8"),
        // Off-link IPv6: one device per /64.
        (&["2001:db8:9:9::10", "2001:db8:9:9::11"], "2001:db8:1:2::1", 1, "2001:db8:9:9::/64"),
        // On the proxy's own /64 (a LAN): one device per address.
        (&["2001:db8:1:2::10", "2001:db8:1:2::11"], "2001:db8:1:2::1", 2, "2001:db8:1:2::11"),
        (&["fe80::10", "fe80::10"], "fe80::1", 1, "fe80::10"),
    ];
    for (clients, local, listed, first) in cases {
        let mut d = Devices::default();
        for (i, c) in clients.iter().enumerate() {
            d.record(&end_at(100 + i as i64, c, local));
        }
        let list = d.list(Time::from_unix(200));
        assert_eq!(list.len(), listed, "{clients:?}");
        assert_eq!(list[0].host, first, "{clients:?}");
        assert_eq!(
            list.iter().map(|d| d.sessions).sum::<u64>(),
            clients.len() as u64
        );
    }
}

#[test]
fn counts_users_protocols_and_the_last_error() {
    let mut d = Devices::default();
    let mut a = end(10, "192.0.2.7");
    a.protocol = Protocol::Imap;
    a.user = Some("printer".into());
    a.messages = 0;
    let mut b = end(20, "192.0.2.7");
    b.user = Some("printer".into());
    b.messages = 2;
    let mut c = end(30, "192.0.2.7");
    c.result = Outcome::AuthFailed;
    c.failed = true;
    c.error = Some("535 5.7.8 Error: authentication failed".into());
    let mut late = end(25, "192.0.2.7");
    late.user = Some("scanner".into());
    for e in [&a, &b, &c, &late] {
        d.record(e);
    }
    let dev = &d.list(Time::from_unix(40))[0];
    assert_eq!(dev.protocols, [Protocol::Smtp, Protocol::Imap]);
    assert_eq!(dev.users, ["printer", "scanner"]);
    assert_eq!((dev.first_seen.unix(), dev.last_seen.unix()), (10, 30));
    assert_eq!((dev.sessions, dev.messages, dev.failures), (4, 2, 1));
    let err = dev.last_error.as_ref().unwrap();
    assert_eq!((err.at.unix(), err.result), (30, Outcome::AuthFailed));
    assert_eq!(err.text.as_deref(), c.error.as_deref());
}

#[test]
fn users_are_bounded() {
    let mut d = Devices::default();
    for i in 0..MAX_USERS + 3 {
        let mut e = end(i as i64, "192.0.2.7");
        e.user = Some(format!("u{i}"));
        d.record(&e);
    }
    let users = &d.list(Time::from_unix(100))[0].users;
    assert_eq!(users.len(), MAX_USERS);
    assert_eq!(users.first().map(String::as_str), Some("u3"));
    assert_eq!(
        users.last().map(String::as_str),
        Some(format!("u{}", MAX_USERS + 2).as_str())
    );
}

#[test]
fn window_and_eviction() {
    type Case<'a> = (&'a [(i64, &'a str)], i64, &'a [&'a str]);
    let week = WINDOW_DAYS * DAY;
    // (sessions: (time, client), listed at `now`, the hosts listed, newest first)
    #[rustfmt::skip]
    let cases: [Case; 4] = [
        (&[(0, "192.0.2.1"), (10, "192.0.2.2")], 20, &["192.0.2.2", "192.0.2.1"]),
        // Seen exactly a week ago: gone; a second later: listed.
        (&[(0, "192.0.2.1"), (1, "192.0.2.2")], week, &["192.0.2.2"]),
        (&[(0, "192.0.2.1")], week + 5, &[]),
        // A device seen again is listed again.
        (&[(0, "192.0.2.1"), (week + 1, "192.0.2.1")], week + 2, &["192.0.2.1"]),
    ];
    for (sessions, now, want) in cases {
        let mut d = Devices::default();
        for (at, c) in sessions {
            d.record(&end(*at, c));
        }
        let hosts: Vec<String> = d
            .list(Time::from_unix(now))
            .into_iter()
            .map(|d| d.host)
            .collect();
        assert_eq!(hosts, *want, "{sessions:?} at {now}");
    }
}

#[test]
fn a_full_table_evicts_the_oldest_device() {
    let mut d = Devices::default();
    let ip = |i: usize| format!("10.0.{}.{}", i / 256, i % 256);
    for i in 0..MAX_DEVICES {
        d.record(&end(1000 + i as i64, &ip(i)));
    }
    // Seen again: no longer the oldest.
    d.record(&end(5000, &ip(0)));
    d.record(&end(5001, "192.0.2.99"));
    let list = d.list(Time::from_unix(5002));
    assert_eq!(list.len(), MAX_DEVICES);
    assert_eq!(list[0].host, "192.0.2.99");
    assert!(list.iter().any(|d| d.host == ip(0)));
    assert!(!list.iter().any(|d| d.host == ip(1)), "the oldest went");
    // Past the window, all stale ones go at once when room is needed.
    d.record(&end(5001 + WINDOW_DAYS * DAY, "192.0.2.100"));
    assert_eq!(d.by_host.len(), 1);
}

#[test]
fn restore_round_trip() {
    let mut d = Devices::default();
    for (at, c) in [(1, "192.0.2.1"), (2, "192.0.2.2"), (3, "192.0.2.1")] {
        let mut e = end(at, c);
        e.failed = at == 2;
        d.record(&e);
    }
    let now = Time::from_unix(10);
    let list = d.list(now);
    assert_eq!(Devices::restore(list.clone()).list(now), list);
}
