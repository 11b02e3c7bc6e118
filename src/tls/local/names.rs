//! The names a generated leaf carries: every name a client on this machine, the LAN or a
//! neighbouring container may use to reach the gateway, so that a verifying client (Go's
//! net/smtp, Python's default context) accepts it without an "insecure" switch.

use std::net::IpAddr;

/// The host name Docker Desktop (and `--add-host=host.docker.internal:host-gateway`)
/// gives containers for the host: a sidecar reaching a gateway on the host uses it.
pub const DOCKER_HOST: &str = "host.docker.internal";

/// Names for a leaf, without duplicates, in a stable order: localhost, the loopback
/// addresses, `hostname` (the configured greeting name), the machine's (or container's)
/// host name, `host.docker.internal`, every interface address, then `[tls] names`.
pub fn leaf_names(hostname: &str, extra: &[String]) -> Vec<String> {
    let fixed = ["localhost", "127.0.0.1", "::1", hostname];
    let system = system_host_name();
    let interfaces = interface_addresses();
    let all = fixed
        .iter()
        .map(|s| s.to_string())
        .chain(system)
        .chain(std::iter::once(DOCKER_HOST.to_string()))
        .chain(interfaces.iter().map(IpAddr::to_string))
        .chain(extra.iter().cloned());
    let mut out: Vec<String> = Vec::new();
    for name in all {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if valid(&name) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Whether `name` can be a SAN: an IP address, or a DNS name of letters, digits, `-`,
/// `_`, `.` and a leading `*.` (a host name such as `MY_PC` or one with spaces, from a
/// container or Windows, is skipped rather than failing the start).
fn valid(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The kernel's host name (in a container, the container's), if any.
fn system_host_name() -> Option<String> {
    #[cfg(unix)]
    {
        let uname = rustix::system::uname();
        let name = uname.nodename().to_string_lossy().into_owned();
        (!name.is_empty()).then_some(name)
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}

/// The addresses of this machine's interfaces (IPv6 link-local ones excepted: they need a
/// zone that a certificate cannot name). None when they cannot be listed.
fn interface_addresses() -> Vec<IpAddr> {
    let Ok(list) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    list.into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_of_names() {
        let cases = [
            ("localhost", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("nas.local", true),
            ("*.example.org", true),
            ("my_pc", true),
            ("", false),
            ("has space", false),
            ("a..b", false),
            ("é.example", false),
            (".", false),
        ];
        for (name, ok) in cases {
            assert_eq!(valid(name), ok, "{name:?}");
        }
    }

    #[test]
    fn fixed_names_first_then_extra_without_duplicates() {
        let extra = vec![
            "NAS.local.".to_string(),
            "localhost".to_string(),
            "bad name".to_string(),
            "192.168.1.10".to_string(),
        ];
        let names = leaf_names("gw.example", &extra);
        assert_eq!(names[..4], ["localhost", "127.0.0.1", "::1", "gw.example"]);
        assert!(names.contains(&DOCKER_HOST.to_string()), "{names:?}");
        assert!(names.contains(&"nas.local".to_string()), "{names:?}");
        assert!(names.contains(&"192.168.1.10".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains(' ')), "{names:?}");
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len(), "{names:?}");
        if let Some(system) = system_host_name().filter(|n| valid(&n.to_ascii_lowercase())) {
            assert!(names.contains(&system.to_ascii_lowercase()), "{names:?}");
        }
    }
}
