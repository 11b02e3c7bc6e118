//! Validation of the local TLS settings (issue 13): `tls://` listen addresses and `[tls]`
//! (certificate files, `key_type`, the local CA's files in `state_dir`).

use std::net::SocketAddr;
use std::path::Path;

use super::raw::RawTls;
use super::{invalid, ConfigError, KeyType, ListenAddr, ListenMode, LocalTls};

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
    Ok(LocalTls {
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
