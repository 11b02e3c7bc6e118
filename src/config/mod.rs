//! Configuration: the TOML file and `QQMAIL_*` environment variables, validated into typed
//! settings. Every mistake stops start-up with a message naming the key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

use crate::proto::StartTlsMode;
use crate::providers::{Provider, ServerAddr};
use crate::secrets::Secret;

mod admin;
mod defaults;
pub mod env;
mod local_tls;
mod queue;
pub mod raw;
pub mod recipients;
mod sent;
#[cfg(test)]
mod tests;
mod validate;

pub use env::{Env, ProcessEnv};
pub use queue::{Delivery, QueueSettings};
use raw::RawConfig;
pub use sent::SaveSent;
pub use validate::{check_hash, parse_cidr, CodeNeed};

/// A configuration mistake. The text always names the key (or variable) and the fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A value is missing or wrong.
    #[error("{key}: {message}")]
    Invalid {
        /// Where: `[[account]] "main" email`, `QQMAIL_EMAIL`, ...
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// How the envelope sender and From header are made acceptable to the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteSender {
    /// Pass MAIL FROM as the client sent it (the provider may refuse it).
    Off,
    /// Replace MAIL FROM with the account address (QQ's 501 rule).
    Envelope,
    /// Also rewrite the `From:` header, keeping the display name, adding `Reply-To:`,
    /// and drop any `Sender:`; a header block over 256 KiB is refused (552 5.3.4).
    Header,
}

impl RewriteSender {
    pub(crate) fn parse(s: &str) -> Option<RewriteSender> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(RewriteSender::Off),
            "envelope" => Some(RewriteSender::Envelope),
            "header" => Some(RewriteSender::Header),
            _ => None,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// An upstream mailbox and how to log into it.
#[derive(Debug)]
pub struct Account {
    /// The id users refer to.
    pub id: String,
    /// The address: upstream login name and, when rewriting, the sender.
    pub email: String,
    /// The preset it came from.
    pub provider: &'static Provider,
    /// Upstream SMTP server, if any.
    pub smtp: Option<ServerAddr>,
    /// Upstream IMAP server, if any.
    pub imap: Option<ServerAddr>,
    /// Upstream POP3 server, if any.
    pub pop3: Option<ServerAddr>,
    /// Extra trust anchor for upstream certificates.
    pub ca_file: Option<PathBuf>,
    /// The authorization code.
    pub code: Secret,
    /// Where the code came from (`env QQMAIL_AUTH_CODE`, `file /run/secrets/x`), for messages.
    pub code_source: String,
    /// `save_sent`: whether accepted messages are copied into the Sent folder.
    pub save_sent: SaveSent,
}

/// A local login.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Argon2 PHC string (never the password).
    pub password_hash: String,
    /// Index into [`Config::accounts`].
    pub account: usize,
    /// `[[user]] delivery`: overrides `[smtp] delivery` for this login.
    pub delivery: Option<Delivery>,
}

/// One protocol's listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Bound addresses, each with how its sessions start.
    pub listen: Vec<ListenAddr>,
    /// STARTTLS offer (plain listeners only).
    pub starttls: StartTlsMode,
}

impl Listener {
    /// Whether any address starts sessions without TLS (so `starttls` matters).
    pub fn has_plain(&self) -> bool {
        self.listen.iter().any(|l| l.mode != ListenMode::Tls)
    }

    /// Whether any address needs the local certificate.
    pub fn needs_certificate(&self) -> bool {
        self.starttls != StartTlsMode::Off
            || self.listen.iter().any(|l| l.mode != ListenMode::Plain)
    }
}

/// One listen address and how sessions on it start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    /// The socket address.
    pub addr: SocketAddr,
    /// Plaintext (STARTTLS per `starttls`) or implicit TLS.
    pub mode: ListenMode,
}

/// How sessions on a listen address start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenMode {
    /// `IP:port`: a plaintext greeting; STARTTLS as `starttls` says.
    Plain,
    /// `tls://IP:port`: the TLS handshake first, then the greeting (SMTPS, IMAPS, POP3S;
    /// RFC 8314 §3.3); STARTTLS is neither offered nor accepted.
    Tls,
    /// `auto://IP:port`: implicit TLS when the client's first bytes are a ClientHello
    /// (waiting at most `tls::local::sniff::AUTO_TLS_WAIT`), else as `Plain` — for
    /// devices set to the wrong mode.
    Auto,
}

impl ListenMode {
    /// The label used in logs.
    pub fn name(self) -> &'static str {
        match self {
            ListenMode::Plain => "plain",
            ListenMode::Tls => "implicit",
            ListenMode::Auto => "auto",
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mode {
            ListenMode::Plain => write!(f, "{}", self.addr),
            ListenMode::Tls => write!(f, "tls://{}", self.addr),
            ListenMode::Auto => write!(f, "auto://{}", self.addr),
        }
    }
}

/// The SMTP listener and its relay policy.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Addresses and STARTTLS.
    pub listener: Listener,
    /// Sender rewriting.
    pub rewrite_sender: RewriteSender,
    /// Networks that may send without AUTH.
    pub allow_unauthenticated: Vec<IpNet>,
    /// The account they send as (index into [`Config::accounts`]).
    pub unauthenticated_account: Option<usize>,
    /// Whom they may mail (`[smtp] unauthenticated_recipients`; empty: anyone).
    pub unauthenticated_recipients: Vec<recipients::RecipientPattern>,
    /// `[smtp] delivery`: for users without their own, and for allow-listed clients.
    pub delivery: Delivery,
    /// `[smtp] add_missing_headers`: Date, Message-ID and From added when missing.
    pub add_missing_headers: bool,
}

/// The local certificate for STARTTLS.
#[derive(Debug, Clone)]
pub struct LocalTls {
    /// Certificate chain (PEM); generated when absent.
    pub cert_file: PathBuf,
    /// Private key (PEM, mode 0600); generated when absent.
    pub key_file: PathBuf,
    /// Extra names for a generated certificate.
    pub names: Vec<String>,
    /// The key type of a generated certificate (and of a new local CA).
    pub key_type: KeyType,
    /// The local CA's certificate (`state_dir/local-ca.pem`): signs generated leaves and is
    /// what `ca export` prints for clients' trust stores.
    pub ca_cert_file: PathBuf,
    /// The local CA's private key (`state_dir/local-ca-key.pem`, mode 0600).
    pub ca_key_file: PathBuf,
    /// `[tls] min_version`: the oldest protocol the local side accepts.
    pub min_version: MinVersion,
}

/// `[tls] min_version`: the oldest TLS version local clients may use. Below 1.2 the local
/// side is served by OpenSSL (the `legacy-tls` feature), since rustls offers 1.2+ only;
/// the upstream side is rustls and TLS 1.2+ whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum MinVersion {
    /// TLS 1.0 (RFC 2246): old printers, scanners, Windows XP-era apps.
    Tls10,
    /// TLS 1.1 (RFC 4346).
    Tls11,
    /// TLS 1.2 (the default; rustls).
    #[default]
    Tls12,
}

impl MinVersion {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            MinVersion::Tls10 => "1.0",
            MinVersion::Tls11 => "1.1",
            MinVersion::Tls12 => "1.2",
        }
    }

    /// True when clients older than TLS 1.2 are accepted (the OpenSSL backend).
    pub fn is_legacy(self) -> bool {
        self < MinVersion::Tls12
    }
}

/// `[tls] key_type`: the key of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// RSA 2048 with SHA-256 signatures: every TLS stack since SSL 3 can use it
    /// (Windows XP SChannel and many printer firmwares cannot use ECDSA).
    #[default]
    Rsa,
    /// ECDSA P-256 with SHA-256: smaller and faster, for modern clients only.
    Ecdsa,
}

impl KeyType {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ecdsa => "ecdsa",
        }
    }
}

/// Limits and timeouts, each with a safe default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line, CRLF excluded (default 16 KiB; RFC 4954 §4 asks for 12288).
    pub max_line_length: usize,
    /// Largest IMAP literal before login (default 16 KiB).
    pub max_literal_size: usize,
    /// Silence allowed before login (default 60 s).
    pub pre_auth_timeout: Duration,
    /// Silence allowed after login on IMAP/POP3 (default 31 min: RFC 9051 §5.4 wants ≥ 30).
    pub idle_timeout: Duration,
    /// Silence allowed between SMTP commands (default 5 min, RFC 5321 §4.5.3.2.7).
    pub command_timeout: Duration,
    /// Upstream connect/greeting/login/reply timeout (default 30 s).
    pub upstream_timeout: Duration,
    /// Wait for the upstream's verdict after DATA (default 10 min, RFC 5321 §4.5.3.2.6).
    pub upstream_data_timeout: Duration,
    /// Concurrent sessions (default 256).
    pub max_sessions: usize,
    /// Concurrent sessions per client host: an IPv4 address, or an IPv6 /64 unless the client
    /// is on the proxy's own /64 (default 32).
    pub max_sessions_per_ip: usize,
    /// Failed logins per session before it is closed (default 3).
    pub max_auth_failures: u32,
    /// Distinct failed logins (user name and password) from one client host before a
    /// lockout (default 10); they are forgotten `lockout_duration` after the last new one.
    pub lockout_failures: u32,
    /// Lockout length (default 15 min).
    pub lockout_duration: Duration,
    /// How long a verified password is remembered (default 5 min; 0 disables).
    pub auth_cache_ttl: Duration,
    /// Failed logins for one local user, from any address (unknown names share one
    /// budget), before that user's logins are throttled (default 20). The budget refills
    /// by one every `user_throttle_interval`.
    pub user_throttle_failures: u32,
    /// While a user is throttled, one login is checked per this interval from all
    /// addresses together (default 90 s: 40 guesses an hour, ~25 h per 1,000).
    pub user_throttle_interval: Duration,
    /// Password checks (argon2 runs) per second across all users and hosts (default 10);
    /// more wait their turn, up to a bound, then get a temporary failure.
    pub max_password_checks_per_second: u32,
    /// How long shutdown waits for sessions in flight (default 30 s).
    pub shutdown_grace: Duration,
    /// How long a warm upstream spare is kept during bursts of logins (default 20 s;
    /// 0 disables).
    pub warm_upstream_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_length: 16 * 1024,
            max_literal_size: 16 * 1024,
            pre_auth_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(31 * 60),
            command_timeout: Duration::from_secs(5 * 60),
            upstream_timeout: Duration::from_secs(30),
            upstream_data_timeout: Duration::from_secs(10 * 60),
            max_sessions: 256,
            max_sessions_per_ip: 32,
            max_auth_failures: 3,
            lockout_failures: 10,
            lockout_duration: Duration::from_secs(15 * 60),
            auth_cache_ttl: Duration::from_secs(5 * 60),
            user_throttle_failures: 20,
            user_throttle_interval: Duration::from_secs(90),
            max_password_checks_per_second: 10,
            shutdown_grace: Duration::from_secs(30),
            warm_upstream_ttl: Duration::from_secs(20),
        }
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Generated credentials and certificates.
    pub state_dir: PathBuf,
    /// Name in greetings.
    pub hostname: String,
    /// Log format from the file or `QQMAIL_LOG_FORMAT` (the CLI flag wins).
    pub log_format: Option<LogFormat>,
    /// Upstream accounts (at least one).
    pub accounts: Vec<Arc<Account>>,
    /// Local users; empty means "generate one per account on first start".
    pub users: Vec<User>,
    /// SMTP gateway, when enabled.
    pub smtp: Option<SmtpSettings>,
    /// IMAP gateway, when enabled.
    pub imap: Option<Listener>,
    /// POP3 gateway, when enabled.
    pub pop3: Option<Listener>,
    /// Local certificate.
    pub tls: LocalTls,
    /// Limits.
    pub limits: Limits,
    /// Health and metrics listener.
    pub admin: Option<SocketAddr>,
    /// `[admin] password_hash`: the status page's login (required off loopback).
    pub admin_password_hash: Option<String>,
    /// The store-and-forward queue (`[queue]`), used by `queue` and `fallback` delivery.
    pub queue: QueueSettings,
    /// Things worth a warning at start (not errors).
    pub warnings: Vec<String>,
    /// The config file read, made absolute (`None`: the environment alone).
    pub file: Option<PathBuf>,
    /// Where each gateway's listen addresses came from (logged at start).
    pub listen_origins: Vec<String>,
}

/// Default listen addresses when running from the environment alone.
pub const DEFAULT_SMTP_LISTEN: &str = "127.0.0.1:2525";
/// Default IMAP listen address.
pub const DEFAULT_IMAP_LISTEN: &str = "127.0.0.1:1143";
/// Default POP3 listen address.
pub const DEFAULT_POP3_LISTEN: &str = "127.0.0.1:1110";

impl Config {
    /// Loads `path` (if any), applies `QQMAIL_*` variables from `env`, and validates.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        Config::load_for(path, env, CodeNeed::Required)
    }

    /// [`Config::load`] for a command that may or may not need the codes: with
    /// [`CodeNeed::Optional`] a missing code is a warning and the account's code empty.
    pub fn load_for(
        path: Option<&Path>,
        env: &dyn Env,
        need: CodeNeed,
    ) -> Result<Config, ConfigError> {
        let defaults = defaults::Defaults::from_env(env)?;
        let mut legacy = None;
        let mut raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let mut raw = parse(&text).map_err(|message| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message,
                })?;
                defaults.fill(&mut raw, true);
                legacy = raw.resolve_paths(&config_dir(p));
                raw
            }
            None => RawConfig::default(),
        };
        let origins = defaults.origins(&raw, env, path.is_some());
        if path.is_none() {
            defaults.fill(&mut raw, false);
        }
        // A local-only command needs no account, so no QQMAIL_EMAIL either.
        env::apply(&mut raw, env, path.is_some() || need == CodeNeed::LocalOnly)?;
        let mut config = validate::validate(raw, env, need)?;
        config.warnings.extend(legacy);
        config.listen_origins = origins;
        config.file = path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
        Ok(config)
    }

    /// The account a user logs into.
    pub fn account_of(&self, user: &User) -> &Arc<Account> {
        &self.accounts[user.account]
    }

    /// How `user`'s messages are delivered: the user's own `delivery`, else `[smtp]
    /// delivery`; `None` (an allow-listed client without login) takes `[smtp] delivery`.
    pub fn delivery_of(&self, user: Option<&User>) -> Delivery {
        let default = self.smtp.as_ref().map_or(Delivery::Relay, |s| s.delivery);
        user.and_then(|u| u.delivery).unwrap_or(default)
    }

    /// Whether anything delivers through the queue (then `serve` opens it).
    pub fn uses_queue(&self) -> bool {
        let Some(smtp) = &self.smtp else {
            return false;
        };
        smtp.delivery != Delivery::Relay
            || self
                .users
                .iter()
                .any(|u| u.delivery.is_some_and(|d| d != Delivery::Relay))
    }
}

/// The directory relative paths in the config file at `path` are resolved against: the
/// file's own directory, made absolute (so a later change of working directory cannot
/// move it).
fn config_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Parses TOML text into the raw shape.
pub fn parse(text: &str) -> Result<RawConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}
