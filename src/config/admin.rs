//! `[admin]`'s login rule (issue 14): `password_hash` is a valid hash when given, and an
//! admin listener off loopback without one is refused at start, naming the key and the
//! fix.

use std::net::SocketAddr;

use super::raw::RawAdmin;
use super::validate::check_hash;
use super::{invalid, ConfigError};

/// `[admin] password_hash`: a valid hash when given, and required unless the admin
/// listener is on loopback (the status page changes things: off loopback it needs a
/// login, and a LAN neighbour must not get one for free).
pub(super) fn validate_password(
    raw: Option<&RawAdmin>,
    listen: Option<SocketAddr>,
) -> Result<Option<String>, ConfigError> {
    let hash = raw.and_then(|a| a.password_hash.as_deref()).map(str::trim);
    if let Some(h) = hash {
        check_hash(h).map_err(|why| {
            invalid(
                "[admin] password_hash",
                format!("{why} (env QQMAIL_ADMIN_PASSWORD_HASH)"),
            )
        })?;
    }
    match listen {
        Some(addr) if hash.is_none() && !addr.ip().to_canonical().is_loopback() => Err(invalid(
            "[admin] password_hash",
            format!(
                "[admin] listen {addr} is not a loopback address, so the status page there \
                 needs a login: set [admin] password_hash (env QQMAIL_ADMIN_PASSWORD_HASH or \
                 QQMAIL_ADMIN_PASSWORD_HASH_FILE) to the output of `qqmail-proxy \
                 hash-password`, or listen on 127.0.0.1:9925"
            ),
        )),
        _ => Ok(hash.map(String::from)),
    }
}
