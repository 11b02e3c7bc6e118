//! What a client may see. The admin endpoint has no login, so a client off loopback (a
//! LAN neighbour, a container on the same network) gets a redacted view: `/healthz` says
//! only `ok` or `degraded`, and `/metrics` drops every sample whose labels name an
//! account address or an upstream host. Today's labels carry neither; the filter keeps
//! it so when a counter with such a label is added.

use std::net::IpAddr;

/// The view a peer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Loopback: everything (the operator on this machine).
    Full,
    /// Anyone else: no upstream host names, no account addresses.
    Redacted,
}

impl View {
    /// The view for a peer address (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(peer: IpAddr) -> View {
        if peer.to_canonical().is_loopback() {
            View::Full
        } else {
            View::Redacted
        }
    }
}

/// The `/healthz` body for `failing` upstreams (`"<protocol> <host:port>"`).
pub fn healthz(failing: &[String], view: View) -> String {
    match (failing.is_empty(), view) {
        (true, _) => "ok\n".to_string(),
        (false, View::Full) => format!(
            "ok (listeners up); last login failed for: {}\n",
            failing.join(", ")
        ),
        (false, View::Redacted) => {
            "degraded (listeners up; an upstream login failed: details on loopback only)\n"
                .to_string()
        }
    }
}

/// The `/metrics` text for `view`: in the redacted view, sample lines whose labels
/// contain `@` or any of `hidden` (upstream host names) are left out.
pub fn metrics(text: &str, hidden: &[String], view: View) -> String {
    if view == View::Full {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let labels = line
            .split_once('{')
            .and_then(|(_, rest)| rest.rsplit_once('}'))
            .map_or("", |(labels, _)| labels);
        let leaks = !line.starts_with('#')
            && (labels.contains('@')
                || hidden
                    .iter()
                    .any(|h| !h.is_empty() && labels.contains(h.as_str())));
        if !leaks {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
