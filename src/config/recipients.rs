//! `[smtp] unauthenticated_recipients`: whom a client allowed to send without a login
//! may mail (smtprelay's `allowed_recipients`), and the warning for an
//! `allow_unauthenticated` entry that is a whole network rather than one device.

use ipnet::IpNet;

use super::ConfigError;

/// One allowed recipient: a whole domain (`*@example.com`) or one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientPattern {
    /// `*@domain`: any address at the domain (lowercase, without the `@`).
    Domain(String),
    /// One exact address (lowercase).
    Address(String),
}

impl RecipientPattern {
    /// Parses `*@domain` or `local@domain`; `None` for anything else.
    pub fn parse(s: &str) -> Option<RecipientPattern> {
        let s = s.trim().to_ascii_lowercase();
        let (local, domain) = s.rsplit_once('@')?;
        let bad = |part: &str| part.is_empty() || part.contains(['@', '*', '<', '>', ' ']);
        if bad(domain) {
            return None;
        }
        match local {
            "*" => Some(RecipientPattern::Domain(domain.to_string())),
            _ if bad(local) => None,
            _ => Some(RecipientPattern::Address(s.clone())),
        }
    }

    /// Whether `addr` (a bare address, as in `RCPT TO:<addr>`) matches, ignoring case.
    pub fn matches(&self, addr: &str) -> bool {
        let addr = addr.trim().to_ascii_lowercase();
        match self {
            RecipientPattern::Domain(d) => addr
                .rsplit_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain == d),
            RecipientPattern::Address(a) => addr == *a,
        }
    }
}

impl std::fmt::Display for RecipientPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecipientPattern::Domain(d) => write!(f, "*@{d}"),
            RecipientPattern::Address(a) => f.write_str(a),
        }
    }
}

/// Whether an unauthenticated client may mail `addr` under `allowed` (empty: anyone).
pub fn allowed(allowed: &[RecipientPattern], addr: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|p| p.matches(addr))
}

/// Validates `[smtp] unauthenticated_recipients`; an error names the key and the fix.
pub(super) fn validate(raw: Option<&Vec<String>>) -> Result<Vec<RecipientPattern>, ConfigError> {
    raw.into_iter()
        .flatten()
        .map(|s| {
            RecipientPattern::parse(s).ok_or_else(|| ConfigError::Invalid {
                key: "[smtp] unauthenticated_recipients".into(),
                message: format!(
                    "{s:?} is neither an address (\"boss@qq.com\") nor a whole domain \
                     (\"*@example.com\")"
                ),
            })
        })
        .collect()
}

/// A warning for each entry of `allow_unauthenticated` that is a network (more than one
/// host) but not a catch-all, which has its own warning.
pub(super) fn network_warnings(allow: &[IpNet], limited: bool, warnings: &mut Vec<String>) {
    for net in allow {
        if net.prefix_len() == 0 || net.prefix_len() == net.max_prefix_len() {
            continue;
        }
        let limit = if limited {
            "its recipients are limited by unauthenticated_recipients"
        } else {
            "limit its recipients with [smtp] unauthenticated_recipients"
        };
        warnings.push(format!(
            "[smtp] allow_unauthenticated \"{net}\" is a whole network: every host in it may \
             send as your account without a login; list each device's own address instead \
             (e.g. \"192.168.1.50\"), or {limit}"
        ));
    }
}
