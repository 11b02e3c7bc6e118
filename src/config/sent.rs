//! `[[account]] save_sent`: the setting, its parsing, and the rule that a copy needs an
//! IMAP server to go to.

use super::{invalid, ConfigError};

/// `[[account]] save_sent`: whether the gateway files a copy of each message the upstream
/// accepted in the account's Sent folder (IMAP APPEND, `src/sent/`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SaveSent {
    /// No copy (the default): the provider's own setting decides, as for any client.
    #[default]
    Off,
    /// A copy of every accepted message, flagged `\Seen`, in the Sent folder.
    On,
}

impl SaveSent {
    /// Parses a `save_sent` value for `key`.
    fn parse(key: &str, value: &str) -> Result<SaveSent, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(SaveSent::Off),
            "on" => Ok(SaveSent::On),
            _ => Err(invalid(
                key,
                format!(
                    "{value:?} is not one of \"off\", \"on\" (\"on\" files a copy of each \
                     accepted message in the account's Sent folder over IMAP)"
                ),
            )),
        }
    }
}

/// The account's `save_sent` from its raw value; `key` names it in errors, `has_imap`:
/// the account has an IMAP server (the copy's only way into the mailbox).
pub(super) fn validate(
    value: Option<&str>,
    has_imap: bool,
    key: &str,
) -> Result<SaveSent, ConfigError> {
    let save_sent = match value {
        None => SaveSent::Off,
        Some(v) => SaveSent::parse(key, v)?,
    };
    if save_sent == SaveSent::On && !has_imap {
        return Err(invalid(
            key,
            "\"on\" needs an IMAP server to APPEND the copy to: set imap_server, or \
             save_sent = \"off\"",
        ));
    }
    Ok(save_sent)
}
