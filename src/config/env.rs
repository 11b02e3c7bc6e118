//! `QQMAIL_*` environment variables: the whole configuration for the one-account case
//! (Docker, the README's one-command start), and overrides of a config file.

use std::collections::HashMap;

use super::raw::{RawAccount, RawConfig, RawListener, RawSmtp, RawUser};
use super::{invalid, ConfigError};

/// Where variables come from: the process, or a map in tests.
pub trait Env {
    /// The value of `name`, if set (an empty value counts as set).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Account-level variables; with a config file they override its single account.
const ACCOUNT_VARS: &[&str] = &[
    "QQMAIL_EMAIL",
    "QQMAIL_PROVIDER",
    "QQMAIL_AUTH_CODE",
    "QQMAIL_AUTH_CODE_FILE",
    "QQMAIL_SMTP_SERVER",
    "QQMAIL_IMAP_SERVER",
    "QQMAIL_POP3_SERVER",
    "QQMAIL_CA_FILE",
    "QQMAIL_SAVE_SENT",
];

fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Applies the environment to `raw`. Without a file (`file_given == false`) the
/// environment must describe an account (the gateways' default listeners were filled in
/// by `config::defaults`).
pub fn apply(raw: &mut RawConfig, env: &dyn Env, file_given: bool) -> Result<(), ConfigError> {
    let get = |name: &str| env.var(name);
    if !file_given && get("QQMAIL_EMAIL").is_none() {
        return Err(invalid(
            "QQMAIL_EMAIL",
            "not set and no --config file given: either run `qqmail-proxy serve --config FILE` \
             or set QQMAIL_EMAIL=12345@qq.com and QQMAIL_AUTH_CODE=<16-character code>",
        ));
    }
    // A variable that an account names in `auth_code_env` is that account's code, not an
    // override (the example config uses QQMAIL_AUTH_CODE that way).
    let referenced = |v: &str| {
        raw.account
            .iter()
            .any(|a| a.auth_code_env.as_deref() == Some(v))
    };
    let account_vars: Vec<&str> = ACCOUNT_VARS
        .iter()
        .copied()
        .filter(|v| get(v).is_some() && !(raw.account.len() > 1 && referenced(v)))
        .collect();
    if !account_vars.is_empty() {
        if raw.account.len() > 1 {
            return Err(invalid(
                account_vars[0],
                "account variables apply to a single account, but the config file has several \
                 [[account]] entries: set the values in the file instead",
            ));
        }
        if raw.account.is_empty() {
            raw.account.push(RawAccount {
                id: Some("main".into()),
                auth_code_env: Some("QQMAIL_AUTH_CODE".into()),
                ..RawAccount::default()
            });
        }
        let acc = &mut raw.account[0];
        if let Some(v) = get("QQMAIL_EMAIL") {
            acc.email = Some(v);
        }
        if let Some(v) = get("QQMAIL_PROVIDER") {
            acc.provider = Some(v);
        }
        match (get("QQMAIL_AUTH_CODE"), get("QQMAIL_AUTH_CODE_FILE")) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "QQMAIL_AUTH_CODE",
                    "set only one of QQMAIL_AUTH_CODE and QQMAIL_AUTH_CODE_FILE",
                ))
            }
            (Some(_), None) => {
                acc.auth_code_env = Some("QQMAIL_AUTH_CODE".into());
                acc.auth_code_file = None;
            }
            (None, Some(f)) => {
                acc.auth_code_file = Some(f.into());
                acc.auth_code_env = None;
            }
            (None, None) => {}
        }
        for (var, field) in [
            ("QQMAIL_SMTP_SERVER", &mut acc.smtp_server),
            ("QQMAIL_IMAP_SERVER", &mut acc.imap_server),
            ("QQMAIL_POP3_SERVER", &mut acc.pop3_server),
        ] {
            if let Some(v) = get(var) {
                *field = Some(v);
            }
        }
        if let Some(v) = get("QQMAIL_CA_FILE") {
            acc.ca_file = Some(v.into());
        }
        if let Some(v) = get("QQMAIL_SAVE_SENT") {
            acc.save_sent = Some(v);
        }
    }
    let users_text = match (get("QQMAIL_USERS"), get("QQMAIL_USERS_FILE")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "QQMAIL_USERS",
                "set only one of QQMAIL_USERS and QQMAIL_USERS_FILE",
            ))
        }
        (Some(v), None) => Some(("QQMAIL_USERS".to_string(), v)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid("QQMAIL_USERS_FILE", format!("cannot read {path}: {e}")))?;
            // Errors name the file: "QQMAIL_USERS_FILE /etc/users line 3".
            Some((format!("QQMAIL_USERS_FILE {path}"), text))
        }
        (None, None) => None,
    };
    if let Some((var, text)) = users_text {
        raw.user = parse_users(&var, &text)?;
    }
    if let Some(v) = get("QQMAIL_ALLOW_UNAUTHENTICATED") {
        smtp(raw).allow_unauthenticated = Some(list(&v));
    }
    if let Some(v) = get("QQMAIL_SMTP_UNAUTHENTICATED_RECIPIENTS") {
        smtp(raw).unauthenticated_recipients = Some(list(&v));
    }
    if let Some(v) = get("QQMAIL_SMTP_DELIVERY") {
        smtp(raw).delivery = Some(v);
    }
    if let Some(v) = get("QQMAIL_REWRITE_SENDER") {
        smtp(raw).rewrite_sender = Some(v);
    }
    if let Some(v) = get("QQMAIL_SMTP_LISTEN") {
        if list(&v).is_empty() {
            raw.smtp = None;
        } else {
            smtp(raw).listen = Some(list(&v));
        }
    }
    for (var, section) in [
        ("QQMAIL_IMAP_LISTEN", &mut raw.imap),
        ("QQMAIL_POP3_LISTEN", &mut raw.pop3),
    ] {
        if let Some(v) = get(var) {
            if list(&v).is_empty() {
                *section = None;
            } else {
                section.get_or_insert_with(RawListener::default).listen = Some(list(&v));
            }
        }
    }
    if let Some(v) = get("QQMAIL_LOG_FORMAT") {
        raw.log_format = Some(v);
    }
    if let Some(v) = get("QQMAIL_STATE_DIR") {
        raw.state_dir = Some(v.into());
    }
    if let Some(v) = get("QQMAIL_TLS_MIN_VERSION") {
        raw.tls.min_version = Some(v);
    }
    if let Some(v) = get("QQMAIL_ADMIN_LISTEN") {
        raw.admin.get_or_insert_with(Default::default).listen = Some(v);
    }
    let admin_hash =
        match (
            get("QQMAIL_ADMIN_PASSWORD_HASH"),
            get("QQMAIL_ADMIN_PASSWORD_HASH_FILE"),
        ) {
            (Some(_), Some(_)) => return Err(invalid(
                "QQMAIL_ADMIN_PASSWORD_HASH",
                "set only one of QQMAIL_ADMIN_PASSWORD_HASH and QQMAIL_ADMIN_PASSWORD_HASH_FILE",
            )),
            (Some(v), None) => Some(v),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        invalid(
                            "QQMAIL_ADMIN_PASSWORD_HASH_FILE",
                            format!("cannot read {path}: {e}"),
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
    if let Some(v) = admin_hash {
        raw.admin.get_or_insert_with(Default::default).password_hash = Some(v);
    }
    Ok(())
}

fn smtp(raw: &mut RawConfig) -> &mut RawSmtp {
    raw.smtp.get_or_insert_with(RawSmtp::default)
}

/// Parses `name:hash[:account]` entries separated by white space or new lines
/// (htpasswd style; `#` starts a comment line).
fn parse_users(var: &str, text: &str) -> Result<Vec<RawUser>, ConfigError> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for entry in line.split_whitespace() {
            let place = format!("{var} line {}", n + 1);
            let mut parts = entry.splitn(3, ':');
            let name = parts.next().unwrap_or_default();
            let hash = parts.next().filter(|h| h.starts_with('$')).ok_or_else(|| {
                invalid(
                    &place,
                    format!(
                        "entry starting {:?} is not name:hash (the hash comes from \
                         `qqmail-proxy hash-password` or `htpasswd -nB name`)",
                        name.chars().take(16).collect::<String>()
                    ),
                )
            })?;
            users.push(RawUser {
                name: Some(name.to_string()),
                password_hash: Some(hash.to_string()),
                account: parts.next().map(String::from),
                delivery: None,
                origin: Some(format!("{place} (user {name:?})")),
            });
        }
    }
    Ok(users)
}
