//! Which client addresses count as one host for the per-address limits: the failed-login
//! table (`auth`) and the session cap per address (`server`). An IPv4 address is one
//! host; an IPv6 host is its /64, because one machine routinely owns a whole /64 (its
//! interface identifier is 64 bits, RFC 4291 §2.5.1; RFC 8273 even hands each host a
//! prefix of its own) and could otherwise take a fresh address, with fresh guesses and a
//! fresh session cap, for every connection. The exception is a client on the proxy's own
//! /64 (its LAN, or link-local): there the /64 is the whole network, not one machine, so
//! each address is a host of its own.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A client host as the per-address limits see it: an IPv4 address, an IPv6 /64, or an
/// on-link IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Host {
    ip: IpAddr,
    /// 64 for an off-link IPv6 /64, else the whole address.
    prefix: u8,
}

fn prefix64(v6: Ipv6Addr) -> u128 {
    u128::from(v6) & !u128::from(u64::MAX)
}

impl Host {
    /// The host `ip` belongs to, as seen from off its network. IPv4-mapped IPv6
    /// (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4 clients) is the
    /// IPv4 address.
    pub fn of(ip: IpAddr) -> Host {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Host {
                ip: IpAddr::V4(v4),
                prefix: 32,
            },
            IpAddr::V6(v6) => Host {
                ip: IpAddr::V6(Ipv6Addr::from(prefix64(v6))),
                prefix: 64,
            },
        }
    }

    /// The host of a client at `peer` that reached the proxy at `local` (the accepted
    /// socket's own address): an IPv6 client on the same /64 is its own address.
    pub fn of_peer(peer: IpAddr, local: Option<IpAddr>) -> Host {
        match (peer.to_canonical(), local.map(|l| l.to_canonical())) {
            (IpAddr::V6(p), Some(IpAddr::V6(l))) if prefix64(p) == prefix64(l) => Host {
                ip: IpAddr::V6(p),
                prefix: 128,
            },
            (p, _) => Host::of(p),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V6(v6) if self.prefix == 64 => write!(f, "{v6}/64"),
            ip => ip.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        #[rustfmt::skip]
        let cases = [
            // (address, another address, same host, how the first is shown)
            ("192.0.2.1", "192.0.2.1", true, "192.0.2.1"),
            ("192.0.2.1", "192.0.2.2", false, "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1", true, "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.2", false, "192.0.2.1"),
            ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true, "2001:db8:1:2::/64"),
            ("2001:db8:1:2::1", "2001:db8:1:3::1", false, "2001:db8:1:2::/64"),
            ("2001:db8:1:2::1", "2001:db9:1:2::1", false, "2001:db8:1:2::/64"),
            ("::1", "::2", true, "::/64"),
            // Not IPv4-mapped: an IPv6 host like any other.
            ("::192.0.2.1", "192.0.2.1", false, "::/64"),
        ];
        for (a, b, same, shown) in cases {
            let (ha, hb) = (Host::of(a.parse().unwrap()), Host::of(b.parse().unwrap()));
            assert_eq!(ha == hb, same, "{a} vs {b}");
            assert_eq!(ha.to_string(), shown, "{a}");
        }
    }

    #[test]
    fn on_link_clients_are_hosts_of_their_own() {
        #[rustfmt::skip]
        let cases = [
            // (client, the proxy's address it reached, another client, same host, shown)
            // A LAN sharing the proxy's /64, global or link-local: one host per address.
            ("2001:db8:1:2::10", "2001:db8:1:2::1", "2001:db8:1:2::11", false, "2001:db8:1:2::10"),
            ("fe80::10", "fe80::1", "fe80::11", false, "fe80::10"),
            ("::1", "::1", "::1", true, "::1"),
            // Off-link: the /64, whatever the proxy's address.
            ("2001:db8:9:9::10", "2001:db8:1:2::1", "2001:db8:9:9::11", true, "2001:db8:9:9::/64"),
            // IPv4, mapped or not, on a dual-stack listener: the address.
            ("::ffff:192.0.2.7", "::ffff:192.0.2.1", "192.0.2.8", false, "192.0.2.7"),
            ("192.0.2.7", "192.0.2.1", "192.0.2.7", true, "192.0.2.7"),
        ];
        for (a, local, b, same, shown) in cases {
            let local = Some(local.parse().unwrap());
            let ha = Host::of_peer(a.parse().unwrap(), local);
            let hb = Host::of_peer(b.parse().unwrap(), local);
            assert_eq!(ha == hb, same, "{a} vs {b} at {local:?}");
            assert_eq!(ha.to_string(), shown, "{a}");
        }
        // Without the local address: as seen from off-link.
        let p: IpAddr = "fe80::10".parse().unwrap();
        assert_eq!(Host::of_peer(p, None), Host::of(p));
    }
}
