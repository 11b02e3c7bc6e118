//! The request head and the `Host` rule that keeps web pages out (DNS rebinding): a page
//! on `http://evil.example:9925/` whose name an attacker re-points at 127.0.0.1 is
//! same-origin with the admin endpoint in the browser's eyes, but its requests still
//! say `Host: evil.example:9925`. Only names the operator gave this machine pass:
//! `localhost`, `hostname`, `[tls] names`, and IP literals. Any IP literal is safe: a
//! browser sends one only when the page itself was loaded from that address, and
//! rebinding needs a name (and a port-published container sees the host's address in
//! `Host`, not its own, so "this listener's address" would be too narrow).

use std::net::{Ipv4Addr, Ipv6Addr};

/// What the request line and headers said, as far as the admin endpoint cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// `GET`, ...
    pub method: &'a str,
    /// `/healthz`, ...
    pub path: &'a str,
    /// True for `HTTP/1.1` (and later), which must carry `Host` (RFC 9112 §3.2).
    pub needs_host: bool,
    /// Every `Host` field value, trimmed.
    pub hosts: Vec<&'a str>,
}

impl<'a> Head<'a> {
    /// Parses a request head (lossily decoded; fields after the first empty line are
    /// not looked at). Never fails: missing parts are empty.
    pub fn parse(text: &'a str) -> Head<'a> {
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.split("\r\n");
        let mut words = lines.next().unwrap_or("").split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let needs_host = words
            .next()
            .is_some_and(|v| v != "HTTP/1.0" && v.starts_with("HTTP/"));
        let hosts = lines
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| value.trim_matches([' ', '\t']))
            .collect();
        Head {
            method,
            path,
            needs_host,
            hosts,
        }
    }

    /// The `Host` rule: `Err` carries the status line to answer with.
    pub fn check_host(&self, names: &[&str]) -> Result<(), &'static str> {
        match self.hosts.as_slice() {
            [] if self.needs_host => Err("400 Bad Request"),
            // Without Host (HTTP/1.0, a health probe): not a browser, nothing to rebind.
            [] => Ok(()),
            [one] if host_allowed(one, names) => Ok(()),
            [_] => Err("421 Misdirected Request"),
            // RFC 9112 §3.2: more than one Host field is a 400.
            _ => Err("400 Bad Request"),
        }
    }
}

/// True when `host` (`name`, `name:port`, `a.b.c.d[:port]`, `[v6][:port]`) is an IP
/// literal or one of `localhost` and `names` (ASCII case-insensitive, one trailing dot
/// ignored).
pub fn host_allowed(host: &str, names: &[&str]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        return inside.parse::<Ipv6Addr>().is_ok() && port_ok(after);
    } else {
        match host.split_once(':') {
            Some((name, port)) if port_ok(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && std::iter::once("localhost")
            .chain(names.iter().copied())
            .any(|n| n.eq_ignore_ascii_case(name))
}

/// An empty suffix or `:` followed by 1..=5 digits.
fn port_ok(after: &str) -> bool {
    match after.strip_prefix(':') {
        None => after.is_empty(),
        Some(p) => (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()),
    }
}
