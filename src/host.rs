//! Which client addresses count as one host for the per-address limits: the failed-login
//! table (`auth`) and the session cap per address (`server`). An IPv4 address is one
//! host; an IPv6 host is its /64, because one machine routinely owns a whole /64 (its
//! interface identifier is 64 bits, RFC 4291 §2.5.1; RFC 8273 even hands each host a
//! prefix of its own) and could otherwise take a fresh address, with fresh guesses and a
//! fresh session cap, for every connection.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A client host as the per-address limits see it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Host(IpAddr);

impl Host {
    /// The host `ip` belongs to. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack
    /// listener reports for IPv4 clients) is the IPv4 address.
    pub fn of(ip: IpAddr) -> Host {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Host(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Host(IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            ))),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
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
}
