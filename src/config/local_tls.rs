//! Validation of the local TLS settings (issue 13): `tls://` listen addresses and `[tls]`
//! (certificate files, `key_type`, the local CA's files in `state_dir`).

use std::net::SocketAddr;
use std::path::Path;

use super::raw::RawTls;
use super::{invalid, ConfigError, KeyType, ListenAddr, ListenMode, LocalTls, MinVersion};

/// `[tls]`, with the generated files' defaults in `state_dir`.
pub(super) fn validate_tls(raw: &RawTls, state_dir: &Path) -> Result<LocalTls, ConfigError> {
    let key_type = match raw.key_type.as_deref() {
        None | Some("rsa") => KeyType::Rsa,
        Some("ecdsa") => KeyType::Ecdsa,
        Some(other) => {
            return Err(invalid(
                "[tls] key_type",
                format!(
                    "{other:?} is not a key type: use \"rsa\" (the default; RSA 2048, for \
                     every client) or \"ecdsa\" (P-256, modern clients only)"
                ),
            ))
        }
    };
    let min_version = min_version(raw.min_version.as_deref(), crate::LEGACY_TLS)?;
    Ok(LocalTls {
        min_version,
        cert_file: raw
            .cert_file
            .clone()
            .unwrap_or_else(|| state_dir.join("local-cert.pem")),
        key_file: raw
            .key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("local-key.pem")),
        names: raw.names.clone().unwrap_or_default(),
        key_type,
        ca_cert_file: state_dir.join("local-ca.pem"),
        ca_key_file: state_dir.join("local-ca-key.pem"),
    })
}

/// `[tls] min_version` (or `QQMAIL_TLS_MIN_VERSION`). `legacy_built` is
/// [`crate::LEGACY_TLS`], a parameter so that tests cover the build without the feature
/// too: there an old version is a start-up error saying how to get a build that has it.
pub(super) fn min_version(
    value: Option<&str>,
    legacy_built: bool,
) -> Result<MinVersion, ConfigError> {
    const KEY: &str = "[tls] min_version (QQMAIL_TLS_MIN_VERSION)";
    let version = match value.map(str::trim) {
        None | Some("1.2") => MinVersion::Tls12,
        Some("1.1") => MinVersion::Tls11,
        Some("1.0") => MinVersion::Tls10,
        Some(other) => {
            return Err(invalid(
                KEY,
                format!(
                    "{other:?} is not a TLS version: use \"1.2\" (the default), \"1.1\" or \
                     \"1.0\" (for devices that speak only TLS 1.0; SSL 3 is not offered)"
                ),
            ))
        }
    };
    if version.is_legacy() && !legacy_built {
        return Err(invalid(
            KEY,
            format!(
                "\"{}\" needs the legacy-tls feature, which this build of qqmail-proxy does \
                 not have (rustls offers TLS 1.2 and 1.3 only): use the Docker image, or build \
                 with `cargo build --release --features legacy-tls`; or remove the setting and \
                 connect the device to a plain listener on a trusted LAN",
                version.name()
            ),
        ));
    }
    Ok(version)
}

/// A protocol listener's address: `IP:port` (plaintext, STARTTLS per `starttls`) or
/// `tls://IP:port` (implicit TLS).
pub(super) fn parse_listen_addr(key: &str, s: &str) -> Result<ListenAddr, ConfigError> {
    let t = s.trim();
    let (mode, rest) = match t.split_once("://") {
        None => (ListenMode::Plain, t),
        Some(("tls", rest)) => (ListenMode::Tls, rest),
        Some(("auto", rest)) => (ListenMode::Auto, rest),
        Some((scheme, _)) => {
            return Err(invalid(
                key,
                format!(
                    "{s:?}: unknown scheme {scheme:?}: write IP:port (plaintext, STARTTLS per \
                     `starttls`), tls://IP:port (implicit TLS, as on ports 465/993/995) or \
                     auto://IP:port (either, by the client's first bytes)"
                ),
            ))
        }
    };
    let addr = rest.parse::<SocketAddr>().map_err(|_| {
        invalid(
            key,
            format!(
                "{s:?} is not a listen address: write IP:port (plaintext, STARTTLS per \
                 `starttls`), tls://IP:port (implicit TLS) or auto://IP:port (either), e.g. \"127.0.0.1:2525\", \
                 \"tls://0.0.0.0:4650\" or \"[::1]:2525\""
            ),
        )
    })?;
    Ok(ListenAddr { addr, mode })
}
