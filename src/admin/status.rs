//! What the status page shows, gathered once per request from the runtime in force: the
//! accounts, the listeners, the locked-out hosts and the queue. The HTML page
//! (`page`) and `GET /api/status` render the same [`Status`], so they cannot disagree.
//! Nothing secret is in it: no authorization code, no password or hash, no message body.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::activity::{Snapshot, UpstreamLogin};
use crate::cli::check::CheckLine;
use crate::config::{Config, ListenMode, Listener};
use crate::proto::{Protocol, StartTlsMode};
use crate::runtime::Runtime;

/// Everything the page shows.
#[derive(Serialize)]
pub struct Status {
    /// The gateway's version.
    pub version: &'static str,
    /// Upstream accounts.
    pub accounts: Vec<AccountRow>,
    /// Local listeners.
    pub listeners: Vec<ListenerRow>,
    /// Client hosts locked out after failed logins.
    pub lockouts: Vec<LockoutRow>,
    /// The queue, when `[smtp] delivery` (or a user's) queues.
    pub queue: Option<QueueView>,
    /// The last "check now", if any.
    pub last_check: Option<CheckView>,
    /// Devices, recent session ends, the hourly chart's data and the upstream logins
    /// (`crate::activity`).
    pub activity: Snapshot,
}

/// One upstream account.
#[derive(Serialize)]
pub struct AccountRow {
    /// `[[account]] id`.
    pub id: String,
    /// The upstream address.
    pub address: String,
    /// The provider preset's label.
    pub provider: &'static str,
    /// `(protocol, server)` for each configured service.
    pub servers: Vec<ServerRow>,
    /// The last upstream login per protocol (from the activity record): when, ok or
    /// the refusal with its hint.
    pub last_logins: Vec<UpstreamLogin>,
}

/// One upstream service of an account.
#[derive(Serialize)]
pub struct ServerRow {
    /// `smtp`, `imap` or `pop3`.
    pub protocol: &'static str,
    /// `host:port` (`starttls://` when not implicit TLS).
    pub server: String,
}

/// How sessions on a listen address start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plaintext, STARTTLS not offered.
    Plain,
    /// Plaintext, STARTTLS offered (clients may log in without it).
    Starttls,
    /// Plaintext, STARTTLS required before a login.
    StarttlsRequired,
    /// TLS from the first byte.
    ImplicitTls,
    /// Implicit TLS or plaintext, by the client's first bytes.
    Auto,
}

impl Security {
    fn of(mode: ListenMode, starttls: StartTlsMode) -> Security {
        match (mode, starttls) {
            (ListenMode::Tls, _) => Security::ImplicitTls,
            (ListenMode::Auto, _) => Security::Auto,
            (ListenMode::Plain, StartTlsMode::Off) => Security::Plain,
            (ListenMode::Plain, StartTlsMode::Optional) => Security::Starttls,
            (ListenMode::Plain, StartTlsMode::Required) => Security::StarttlsRequired,
        }
    }
}

/// One local listen address.
#[derive(Serialize)]
pub struct ListenerRow {
    /// `smtp`, `imap` or `pop3`.
    pub protocol: &'static str,
    /// The socket address.
    pub address: String,
    /// How sessions start.
    pub security: Security,
    /// The lowest TLS version accepted (`[tls] min_version`: `"1.2"` by default, rustls
    /// with 1.2 and 1.3; `"1.0"`/`"1.1"` through OpenSSL), or `None` when the address
    /// never speaks TLS.
    pub min_tls: Option<&'static str>,
}

/// A locked-out client host.
#[derive(Serialize)]
pub struct LockoutRow {
    /// An IPv4 address or an IPv6 /64, as the log names it.
    pub host: String,
    /// Seconds until the lockout ends.
    pub seconds_left: u64,
}

/// The queue's messages, or why they could not be read.
#[derive(Serialize)]
pub struct QueueView {
    /// As `qqmail-proxy queue list --json` prints them.
    pub messages: serde_json::Value,
    /// Set when the queue could not be read.
    pub error: Option<String>,
}

/// The result of the last "check now".
#[derive(Clone, Serialize)]
pub struct CheckView {
    /// When it ran (seconds since the Unix epoch).
    pub at: u64,
    /// One line per account and service, as `qqmail-proxy check` prints them.
    pub lines: Vec<CheckRow>,
}

/// One service's check.
#[derive(Clone, Serialize)]
pub struct CheckRow {
    /// The account id.
    pub account: String,
    /// `smtp`, `imap` or `pop3`.
    pub service: &'static str,
    /// The server checked.
    pub server: String,
    /// Whether the login worked.
    pub ok: bool,
    /// `OK`, or what failed and its hint.
    pub text: String,
}

impl From<CheckLine> for CheckRow {
    fn from(l: CheckLine) -> CheckRow {
        let (ok, text) = match l.result {
            Ok(t) => (true, t),
            Err(t) => (false, t),
        };
        CheckRow {
            account: l.account,
            service: l.service,
            server: l.server,
            ok,
            text,
        }
    }
}

/// Gathers the status (reads the queue directory on a blocking thread).
pub async fn gather(rt: &Runtime, bound: &[SocketAddr], last_check: Option<CheckView>) -> Status {
    let config = &rt.config;
    let activity = rt.activity.snapshot();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        accounts: accounts(config, &activity),
        listeners: listeners(config, bound),
        lockouts: rt
            .auth
            .lockouts()
            .into_iter()
            .map(|(host, left)| LockoutRow {
                host,
                seconds_left: left.as_secs(),
            })
            .collect(),
        queue: queue(rt).await,
        last_check,
        activity,
    }
}

fn accounts(config: &Config, activity: &Snapshot) -> Vec<AccountRow> {
    config
        .accounts
        .iter()
        .map(|a| AccountRow {
            id: a.id.clone(),
            address: a.email.clone(),
            provider: a.provider.label,
            servers: [("smtp", &a.smtp), ("imap", &a.imap), ("pop3", &a.pop3)]
                .into_iter()
                .filter_map(|(protocol, s)| {
                    s.as_ref().map(|s| ServerRow {
                        protocol,
                        server: s.to_string(),
                    })
                })
                .collect(),
            last_logins: activity
                .upstream_logins
                .iter()
                .filter(|l| l.account == a.id)
                .cloned()
                .collect(),
        })
        .collect()
}

/// Each listen address as bound (`bound`, in the config's order; the configured address
/// when absent, as in tests that build no sockets).
fn listeners(config: &Config, bound: &[SocketAddr]) -> Vec<ListenerRow> {
    let all: [(Protocol, Option<&Listener>); 3] = [
        (Protocol::Smtp, config.smtp.as_ref().map(|s| &s.listener)),
        (Protocol::Imap, config.imap.as_ref()),
        (Protocol::Pop3, config.pop3.as_ref()),
    ];
    let mut rows = Vec::new();
    for (protocol, listener) in all {
        let Some(l) = listener else { continue };
        for a in &l.listen {
            let security = Security::of(a.mode, l.starttls);
            let addr = bound.get(rows.len()).copied().unwrap_or(a.addr);
            rows.push(ListenerRow {
                protocol: protocol.name(),
                address: addr.to_string(),
                security,
                min_tls: (security != Security::Plain).then_some(config.tls.min_version.name()),
            });
        }
    }
    rows
}

async fn queue(rt: &Runtime) -> Option<QueueView> {
    let store = rt.queue.get()?.store.clone();
    let listed = tokio::task::spawn_blocking(move || store.list()).await;
    let now = SystemTime::now();
    Some(match listed {
        Ok(Ok(envs)) => {
            let messages = crate::cli::queue::json::messages(&envs, now);
            QueueView {
                messages: serde_json::to_value(messages).unwrap_or_default(),
                error: None,
            }
        }
        Ok(Err(e)) => QueueView {
            messages: serde_json::Value::Array(Vec::new()),
            error: Some(e.to_string()),
        },
        Err(_) => QueueView {
            messages: serde_json::Value::Array(Vec::new()),
            error: Some("the queue listing stopped".to_string()),
        },
    })
}
