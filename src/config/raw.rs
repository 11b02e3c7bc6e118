//! The config file as written: serde structs that mirror the TOML, before validation.
//!
//! Unknown keys are rejected (`deny_unknown_fields`) so that a typo is an error, not a
//! silently ignored setting. Every value is checked again in `config::validate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::proto::StartTlsMode;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where generated credentials and certificates live (default `certs`).
    pub state_dir: Option<PathBuf>,
    /// Name used in greetings and EHLO (default: `localhost`).
    pub hostname: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Upstream accounts.
    #[serde(default)]
    pub account: Vec<RawAccount>,
    /// Local users.
    #[serde(default)]
    pub user: Vec<RawUser>,
    /// SMTP listener.
    pub smtp: Option<RawSmtp>,
    /// IMAP listener.
    pub imap: Option<RawListener>,
    /// POP3 listener.
    pub pop3: Option<RawListener>,
    /// Local certificate.
    #[serde(default)]
    pub tls: RawTls,
    /// Limits and timeouts.
    #[serde(default)]
    pub limits: RawLimits,
    /// Admin HTTP listener.
    pub admin: Option<RawAdmin>,
    /// The store-and-forward queue.
    #[serde(default)]
    pub queue: RawQueue,
}

impl RawConfig {
    /// Makes every relative path written in the file relative to `base`, the config
    /// file's own directory, so that the same file works whatever the process's working
    /// directory is (systemd starts services in `/`, a container may have a read-only
    /// one). Paths from `QQMAIL_*` variables are applied later and keep the shell's
    /// meaning (relative to the working directory).
    ///
    /// `state_dir` (default `certs`) is the one exception, for configs written before
    /// this rule: when it does not exist beside the file but does exist relative to the
    /// working directory, that one is kept, and the returned warning says how to move it.
    pub fn resolve_paths(&mut self, base: &Path) -> Option<String> {
        let written = self
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("certs"));
        let mut warning = None;
        if written.is_relative() {
            let beside = base.join(&written);
            if !beside.exists() && holds_state(&written) {
                warning = Some(format!(
                    "state_dir: using {} relative to the working directory as before; \
                     relative paths in a config file now mean relative to the file's \
                     directory: move it to {} or set an absolute state_dir",
                    written.display(),
                    beside.display()
                ));
                self.state_dir = std::path::absolute(&written).ok().or(Some(written));
            } else {
                self.state_dir = Some(beside);
            }
        }
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut().filter(|p| p.is_relative()) {
                *path = base.join(&*path);
            }
        };
        fix(&mut self.queue.dir);
        fix(&mut self.tls.cert_file);
        fix(&mut self.tls.key_file);
        for account in &mut self.account {
            fix(&mut account.auth_code_file);
            fix(&mut account.ca_file);
        }
        warning
    }
}

/// Whether `dir` holds what `serve` generated (a certificate or the generated logins):
/// only then is a working-directory `state_dir` worth keeping over a fresh one.
fn holds_state(dir: &Path) -> bool {
    ["local-cert.pem", "local-users"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// `[[account]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    /// Referred to by `[[user]].account`.
    pub id: Option<String>,
    /// The mailbox address; also the upstream login name.
    pub email: Option<String>,
    /// Preset name.
    pub provider: Option<String>,
    /// Environment variable holding the code.
    pub auth_code_env: Option<String>,
    /// File holding the code.
    pub auth_code_file: Option<PathBuf>,
    /// Upstream SMTP override.
    pub smtp_server: Option<String>,
    /// Upstream IMAP override.
    pub imap_server: Option<String>,
    /// Upstream POP3 override.
    pub pop3_server: Option<String>,
    /// Extra trust anchor (PEM) for the upstream certificates.
    pub ca_file: Option<PathBuf>,
    /// `"off"` or `"on"`: APPEND a copy of each accepted message to the Sent folder.
    pub save_sent: Option<String>,
}

/// `[[user]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Local login name.
    pub name: Option<String>,
    /// Argon2 PHC string.
    pub password_hash: Option<String>,
    /// Account id; may be omitted when there is exactly one account.
    pub account: Option<String>,
    /// `relay`, `queue` or `fallback`; default `[smtp] delivery`.
    pub delivery: Option<String>,
    /// Where a user from the environment came from (`QQMAIL_USERS_FILE /path line 3`),
    /// for error messages; `None`: the config file's `[[user]] #N`.
    #[serde(skip)]
    pub origin: Option<String>,
}

/// `[imap]` and `[pop3]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Addresses to listen on.
    pub listen: Option<Vec<String>>,
    /// STARTTLS mode.
    pub starttls: Option<StartTlsMode>,
}

/// `[smtp]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Addresses to listen on.
    pub listen: Option<Vec<String>>,
    /// STARTTLS mode.
    pub starttls: Option<StartTlsMode>,
    /// `off`, `envelope` or `header`.
    pub rewrite_sender: Option<String>,
    /// CIDRs that may send without AUTH.
    pub allow_unauthenticated: Option<Vec<String>>,
    /// The account those clients send as.
    pub unauthenticated_account: Option<String>,
    /// Explicit consent to a catch-all `allow_unauthenticated`.
    pub i_know_this_is_an_open_relay: Option<bool>,
    /// Whom clients without a login may mail (`*@domain` or an address; empty: anyone).
    pub unauthenticated_recipients: Option<Vec<String>>,
    /// `relay`, `queue` or `fallback`.
    pub delivery: Option<String>,
    /// Add Date, Message-ID and From when a message lacks them (default true).
    pub add_missing_headers: Option<bool>,
}

/// `[queue]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The spool directory.
    pub dir: Option<PathBuf>,
    /// Age after which a message is bounced.
    #[serde(default, deserialize_with = "duration")]
    pub max_age: Option<Duration>,
    /// The whole queue's size limit (`"1GiB"`, or bytes).
    #[serde(default, deserialize_with = "size")]
    pub max_size: Option<String>,
    /// First retry delay.
    #[serde(default, deserialize_with = "duration")]
    pub retry_min: Option<Duration>,
    /// Longest retry delay.
    #[serde(default, deserialize_with = "duration")]
    pub retry_max: Option<Duration>,
    /// Per-account pacing, `"20/min"`.
    pub rate: Option<String>,
    /// Per-account messages per day.
    pub daily_limit: Option<u32>,
}

/// `[tls]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Extra names for a generated certificate.
    pub names: Option<Vec<String>>,
    /// `rsa` or `ecdsa`, for a generated certificate.
    pub key_type: Option<String>,
    /// `"1.2"`, `"1.1"` or `"1.0"`: the oldest protocol the local side accepts.
    pub min_version: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Address of the health/metrics listener.
    pub listen: Option<String>,
    /// Argon2 (or bcrypt) hash of the status page's password.
    pub password_hash: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Longest command line.
    pub max_line_length: Option<usize>,
    /// Largest IMAP literal before login.
    pub max_literal_size: Option<usize>,
    /// Silence allowed before login.
    #[serde(default, deserialize_with = "duration")]
    pub pre_auth_timeout: Option<Duration>,
    /// Silence allowed after login (IMAP/POP3).
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<Duration>,
    /// Silence allowed between SMTP commands after login.
    #[serde(default, deserialize_with = "duration")]
    pub command_timeout: Option<Duration>,
    /// Upstream connect, greeting, login and reply timeout.
    #[serde(default, deserialize_with = "duration")]
    pub upstream_timeout: Option<Duration>,
    /// Wait for the upstream's reply to the end of DATA.
    #[serde(default, deserialize_with = "duration")]
    pub upstream_data_timeout: Option<Duration>,
    /// Concurrent sessions in total.
    pub max_sessions: Option<usize>,
    /// Concurrent sessions from one client address.
    pub max_sessions_per_ip: Option<usize>,
    /// Failed logins allowed in one session.
    pub max_auth_failures: Option<u32>,
    /// Distinct failed logins from one client host before it is locked out.
    pub lockout_failures: Option<u32>,
    /// How long a lockout lasts.
    #[serde(default, deserialize_with = "duration")]
    pub lockout_duration: Option<Duration>,
    // Per-user budget and global ceiling of password checks (issue 16 item 2).
    /// Failed logins for one user, from any address, before that user's logins are
    /// throttled.
    pub user_throttle_failures: Option<u32>,
    /// Once throttled, one login for that user per this interval, from all addresses.
    #[serde(default, deserialize_with = "duration")]
    pub user_throttle_interval: Option<Duration>,
    /// Password checks (argon2 runs) per second, all users and hosts together.
    pub max_password_checks_per_second: Option<u32>,
    /// How long a successful local login is remembered (skipping argon2).
    #[serde(default, deserialize_with = "duration")]
    pub auth_cache_ttl: Option<Duration>,
    /// How long shutdown waits for sessions in flight.
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_grace: Option<Duration>,
    /// How long a warm upstream spare is kept.
    #[serde(default, deserialize_with = "duration")]
    pub warm_upstream_ttl: Option<Duration>,
}

/// Accepts a whole number of seconds or a string such as `"90s"`, `"5m"`, `"2h"`, `"250ms"`.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Secs(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Secs(s) => Ok(Some(Duration::from_secs(s))),
        Either::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Accepts a number of bytes or a string such as `"1GiB"` (parsed in validation, where
/// the error can name the key).
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bytes(u64),
        Text(String),
    }
    Ok(Some(match Either::deserialize(d)? {
        Either::Bytes(n) => n.to_string(),
        Either::Text(t) => t,
    }))
}

/// Parses `"90s"`, `"5m"`, `"2h"`, `"5d"`, `"250ms"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {text:?}: write e.g. \"30s\", \"5m\", \"1h\", \"5d\"")
    })?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use ms, s, m, h or d"
            ))
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(30_000)),
            ("5m", Some(300_000)),
            ("1h", Some(3_600_000)),
            ("250ms", Some(250)),
            ("12", Some(12_000)),
            ("5 m", Some(300_000)),
            ("x", None),
            ("5d", Some(432_000_000)),
            ("5w", None),
            ("", None),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_millis() as u64),
                ms,
                "{text}"
            );
        }
    }
}
