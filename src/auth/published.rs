//! Passwords printed in the project's own documentation (README examples, the old
//! example config): a local user whose hash matches one of them is warned about at start
//! and by `check-config`, since anyone who read the docs can log in as that user.

use crate::config::User;
use crate::secrets::Secret;

/// Every password the README, `config/example.toml` (now or in an earlier release) and
/// the docs show in an example.
pub const PUBLISHED: &[&str] = &[
    "example-printer-password",
    "local-password",
    "printer password",
    "the printer password",
    "DEZW5HjfjdhjwsqoWJJV",
];

/// One warning per user whose password is a published one. Costs one hash check per
/// user and published password (argon2: tens of milliseconds each), so `serve` runs it
/// off the start path.
pub fn warnings(users: &[User]) -> Vec<String> {
    users
        .iter()
        .filter(|u| {
            PUBLISHED
                .iter()
                .any(|p| super::verify_password(&Secret::from(*p), &u.password_hash))
        })
        .map(|u| {
            format!(
                "[[user]] {:?}: its password is one printed in qqmail-proxy's documentation, \
                 so anyone can log in as it; choose another and put its hash (`qqmail-proxy \
                 hash-password`) in password_hash",
                u.name
            )
        })
        .collect()
}
