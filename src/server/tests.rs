use super::*;
use std::net::IpAddr;

use crate::session::Seat as _;

/// A table and the ids it hands out.
struct Table {
    sessions: Arc<Sessions>,
    next: u64,
}

impl Table {
    fn new() -> Table {
        Table {
            sessions: Arc::new(Sessions::default()),
            next: 1,
        }
    }

    fn acquire(
        &mut self,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<(Slot, Admitted), Full> {
        let id = self.next;
        self.next += 1;
        let arrival = Arrival {
            host: Host::of(ip),
            id,
            protocol: Protocol::Smtp,
            token: CancellationToken::new(),
        };
        self.sessions.acquire(arrival, max, max_per_ip)
    }

    fn totals(&self) -> (usize, usize, usize) {
        let c = self.sessions.counts();
        (c.total, c.per_ip.len(), c.pre_login.len())
    }
}

/// (address, max_sessions, max_sessions_per_ip, expected, sessions to end first)
type Step = (IpAddr, usize, usize, Result<(), Full>, usize);

/// Session slots under limits that change between accepts, as a reload changes them
/// (every session here has logged in, so none is shed).
#[test]
fn limits_in_force_at_each_accept() {
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let mut table = Table::new();
    let mut held = Vec::new();
    #[rustfmt::skip]
    let steps: &[Step] = &[
        (a, 2, 2, Ok(()), 0),
        (b, 2, 2, Ok(()), 0),
        (a, 2, 2, Err(Full::Total), 0),
        // Raised by a reload: the next connection gets in.
        (a, 3, 2, Ok(()), 0),
        (a, 4, 2, Err(Full::PerIp), 0),
        (a, 4, 3, Ok(()), 0),
        // Lowered below the four running: all keep running, new ones are refused...
        (b, 2, 3, Err(Full::Total), 0),
        (b, 2, 3, Err(Full::Total), 2),
        // ...until enough have ended.
        (b, 2, 3, Ok(()), 1),
    ];
    for (i, (ip, max, per_ip, want, end)) in steps.iter().enumerate() {
        for _ in 0..*end {
            held.remove(0);
        }
        let got = table.acquire(*ip, *max, *per_ip);
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(|f| *f),
            *want,
            "step {}",
            i + 1
        );
        if let Ok((slot, admitted)) = got {
            assert_eq!(admitted, Admitted::Free, "step {}", i + 1);
            slot.logged_in();
            held.push(slot);
        }
    }
    drop(held);
    assert_eq!(table.totals(), (0, 0, 0));
}

/// The per-address cap counts an IPv6 /64 as one host, and IPv4-mapped IPv6 as the
/// IPv4 address.
#[test]
fn the_per_address_cap_is_per_host() {
    let mut table = Table::new();
    let mut held = Vec::new();
    #[rustfmt::skip]
    let steps = [
        ("2001:db8:1:2::1", Ok(())),
        ("2001:db8:1:2::2", Ok(())),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", Err(Full::PerIp)),
        ("2001:db8:1:3::1", Ok(())),
        ("::ffff:10.0.0.1", Ok(())),
        ("10.0.0.1", Ok(())),
        ("10.0.0.1", Err(Full::PerIp)),
        ("10.0.0.2", Ok(())),
    ];
    for (i, (ip, want)) in steps.into_iter().enumerate() {
        let got = table.acquire(ip.parse().unwrap(), 100, 2);
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(|f| *f),
            want,
            "step {} ({ip})",
            i + 1
        );
        held.extend(got.ok());
    }
    drop(held);
    assert_eq!(table.totals(), (0, 0, 0));
}

/// What happens to each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Stays connected without logging in (an idle socket).
    Idle,
    /// Logs in at once.
    LogIn,
}

/// Idle pre-login sockets from a few addresses cannot hold every slot: they get a
/// quarter of `max_sessions`, and beyond it (or at the total) the one idle longest is
/// shed for each newcomer, while logged-in sessions are never shed.
#[test]
fn idle_pre_login_sessions_are_shed_oldest_first() {
    let attackers: Vec<IpAddr> = (1..=8)
        .map(|i| format!("10.0.0.{i}").parse().unwrap())
        .collect();
    let device: IpAddr = "192.168.1.50".parse().unwrap();
    let (max, per_ip) = (16, 4); // pre-login share: 4
    let mut table = Table::new();
    let mut held: Vec<(u64, Slot)> = Vec::new();
    #[rustfmt::skip]
    let steps: Vec<(IpAddr, Then, Result<Option<u64>, Full>)> = vec![
        // A user logs in and stays.
        (device, Then::LogIn, Ok(None)),
        // Attackers fill the pre-login share with idle sockets...
        (attackers[0], Then::Idle, Ok(None)),
        (attackers[1], Then::Idle, Ok(None)),
        (attackers[2], Then::Idle, Ok(None)),
        (attackers[3], Then::Idle, Ok(None)),
        // ...and each further one sheds the oldest idle one (ids 2, 3, ...).
        (attackers[4], Then::Idle, Ok(Some(2))),
        (attackers[5], Then::Idle, Ok(Some(3))),
        // A new device still gets in (shedding the oldest idle socket), and logs in.
        (device, Then::LogIn, Ok(Some(4))),
        // Room again in the share: no one is shed.
        (device, Then::LogIn, Ok(None)),
        (device, Then::LogIn, Ok(None)),
    ];
    for (i, (ip, then, want)) in steps.into_iter().enumerate() {
        let id = table.next;
        let got = table.acquire(ip, max, per_ip);
        let admitted = got.as_ref().map(|(_, a)| match a {
            Admitted::Free => None,
            Admitted::Shed(v) => Some(*v),
        });
        assert_eq!(admitted.map_err(|f| *f), want, "step {}", i + 1);
        if let Some(victim) = admitted.ok().flatten() {
            let (_, slot) = held
                .iter()
                .find(|(h, _)| *h == victim)
                .expect("victim held");
            assert_eq!(slot.shed_reply(), Some(busy_reply(Protocol::Smtp)));
            assert!(slot.state.token.is_cancelled());
            // Its task ends and drops the slot: nothing is freed twice.
            held.retain(|(h, _)| *h != victim);
        }
        if let Ok((slot, _)) = got {
            if then == Then::LogIn {
                slot.logged_in();
            }
            assert_eq!(slot.shed_reply(), None);
            held.push((id, slot));
        }
    }
    let logged_in = held
        .iter()
        .filter(|(_, s)| !table.sessions.counts().pre_login.contains_key(&s.id))
        .count();
    assert_eq!(table.totals(), (held.len(), 4, 3));
    assert_eq!(logged_in, 4);
    drop(held);
    assert_eq!(table.totals(), (0, 0, 0));
}

/// The session idle longest goes first, not simply the oldest: a device still talking
/// keeps its place.
#[test]
fn the_session_idle_longest_is_shed() {
    let mut table = Table::new();
    let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
    let (a, _) = table.acquire(ip(1), 4, 4).unwrap(); // share: 1
                                                      // A later activity of `a` does not save it when it is the only pre-login session.
    a.state.active_ms.store(1_000, Ordering::Relaxed);
    let (b, admitted) = table.acquire(ip(2), 4, 4).unwrap();
    assert_eq!(admitted, Admitted::Shed(1));
    drop(a);
    // Two pre-login sessions (share raised by a larger max): the older one is active.
    let (c, _) = table.acquire(ip(3), 8, 4).unwrap(); // share: 2
    b.state.active_ms.store(5_000, Ordering::Relaxed);
    c.state.active_ms.store(4_000, Ordering::Relaxed);
    let (_d, admitted) = table.acquire(ip(4), 8, 4).unwrap();
    assert_eq!(admitted, Admitted::Shed(3), "c was idle longer than b");
    assert!(c.shed_reply().is_some() && b.shed_reply().is_none());
}

/// After a reload lowered the limits below the sessions running, a newcomer is refused
/// rather than shedding a session that would not make room.
#[test]
fn no_shedding_that_makes_no_room() {
    let mut table = Table::new();
    let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
    let held: Vec<_> = (1..=8)
        .map(|i| table.acquire(ip(i), 32, 4).unwrap().0)
        .collect();
    assert!(matches!(table.acquire(ip(9), 4, 4), Err(Full::Total)));
    assert!(held.iter().all(|s| s.shed_reply().is_none()));
}

/// At the total (the share not full), the newcomer still gets the slot of the pre-login
/// session idle longest; with only logged-in sessions left, it is refused.
#[test]
fn at_the_total_a_pre_login_session_makes_room() {
    let mut table = Table::new();
    let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
    let (max, per_ip) = (8, 8); // share: 2
    let mut held = Vec::new();
    for i in 1..=7 {
        let (slot, admitted) = table.acquire(ip(i), max, per_ip).unwrap();
        assert_eq!(admitted, Admitted::Free);
        slot.logged_in();
        held.push(slot);
    }
    let (idle, _) = table.acquire(ip(8), max, per_ip).unwrap();
    let (newcomer, admitted) = table.acquire(ip(9), max, per_ip).unwrap();
    assert_eq!(admitted, Admitted::Shed(8));
    assert!(idle.shed_reply().is_some());
    newcomer.logged_in();
    assert!(matches!(
        table.acquire(ip(10), max, per_ip),
        Err(Full::Total)
    ));
    assert!(held.iter().all(|s| s.shed_reply().is_none()));
}
