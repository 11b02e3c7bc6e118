//! Counters for the admin endpoint (`GET /metrics`, Prometheus text format): sessions by
//! protocol and result, active sessions, bytes relayed, auth failures, upstream errors
//! by kind, and a login latency histogram. Plain atomics: no per-byte cost.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::proto::Protocol;

/// Login latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Process-wide counters.
#[derive(Default)]
pub struct Metrics {
    active: [AtomicU64; 3],
    sessions: Mutex<BTreeMap<(Protocol, &'static str), u64>>,
    upstream_errors: Mutex<BTreeMap<(Protocol, &'static str), u64>>,
    bytes_in: [AtomicU64; 3],
    bytes_out: [AtomicU64; 3],
    auth_failures: [AtomicU64; 3],
    cross_protocol: [AtomicU64; 3],
    messages: AtomicU64,
    /// `save_sent` copies: saved, failed.
    sent_copies: [AtomicU64; 2],
    login_buckets: [AtomicU64; BUCKETS.len()],
    login_count: AtomicU64,
    login_sum_micros: AtomicU64,
    last_upstream_ok: Mutex<BTreeMap<(Protocol, String), bool>>,
    /// Guessing defences: per-user throttle and the password-check ceiling.
    guard: GuardCounters,
}

/// Counters of the defences against password guessing (`src/auth/`).
#[derive(Default)]
struct GuardCounters {
    attacks: AtomicU64,
    throttled: AtomicU64,
    checks: AtomicU64,
    checks_refused: AtomicU64,
}

fn idx(p: Protocol) -> usize {
    match p {
        Protocol::Smtp => 0,
        Protocol::Imap => 1,
        Protocol::Pop3 => 2,
    }
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Smtp, Protocol::Imap, Protocol::Pop3];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// A session started.
    pub fn session_started(&self, p: Protocol) {
        self.active[idx(p)].fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended with `result`, having moved these byte counts.
    pub fn session_ended(
        &self,
        p: Protocol,
        result: &'static str,
        from_client: u64,
        to_client: u64,
    ) {
        self.active[idx(p)].fetch_sub(1, Ordering::Relaxed);
        self.bytes_in[idx(p)].fetch_add(from_client, Ordering::Relaxed);
        self.bytes_out[idx(p)].fetch_add(to_client, Ordering::Relaxed);
        *lock(&self.sessions).entry((p, result)).or_default() += 1;
    }

    /// A `save_sent` copy was saved in the Sent folder (`true`) or given up (`false`).
    pub fn sent_copy(&self, saved: bool) {
        self.sent_copies[usize::from(!saved)].fetch_add(1, Ordering::Relaxed);
    }

    /// A local login failed.
    pub fn auth_failed(&self, p: Protocol) {
        self.auth_failures[idx(p)].fetch_add(1, Ordering::Relaxed);
    }

    /// A client sent HTTP to a mail port and was closed (cross-protocol attack).
    pub fn cross_protocol(&self, p: Protocol) {
        self.cross_protocol[idx(p)].fetch_add(1, Ordering::Relaxed);
    }

    /// An SMTP message was accepted by the upstream.
    pub fn message_relayed(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// An upstream login (or connection) failed with `kind`.
    pub fn upstream_error(&self, p: Protocol, server: &str, kind: &'static str) {
        *lock(&self.upstream_errors).entry((p, kind)).or_default() += 1;
        lock(&self.last_upstream_ok).insert((p, server.to_string()), false);
    }

    /// An upstream login succeeded after `took` (client login to upstream ready).
    pub fn upstream_ok(&self, p: Protocol, server: &str, took: Duration) {
        lock(&self.last_upstream_ok).insert((p, server.to_string()), true);
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.login_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.login_count.fetch_add(1, Ordering::Relaxed);
        self.login_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Upstreams whose most recent login failed, for `/healthz`.
    pub fn failing_upstreams(&self) -> Vec<String> {
        lock(&self.last_upstream_ok)
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|((p, s), _)| format!("{p} {s}"))
            .collect()
    }

    /// Sessions in progress, all protocols.
    pub fn active_total(&self) -> u64 {
        self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP qqmail_proxy_active_sessions Sessions in progress."
        );
        let _ = writeln!(out, "# TYPE qqmail_proxy_active_sessions gauge");
        for p in PROTOCOLS {
            let _ = writeln!(
                out,
                "qqmail_proxy_active_sessions{{protocol=\"{p}\"}} {}",
                self.active[idx(p)].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP qqmail_proxy_sessions_total Finished sessions by result."
        );
        let _ = writeln!(out, "# TYPE qqmail_proxy_sessions_total counter");
        for ((p, r), n) in lock(&self.sessions).iter() {
            let _ = writeln!(
                out,
                "qqmail_proxy_sessions_total{{protocol=\"{p}\",result=\"{r}\"}} {n}"
            );
        }
        for (name, help, arr) in [
            (
                "qqmail_proxy_bytes_from_clients_total",
                "Bytes received from clients.",
                &self.bytes_in,
            ),
            (
                "qqmail_proxy_bytes_to_clients_total",
                "Bytes sent to clients.",
                &self.bytes_out,
            ),
            (
                "qqmail_proxy_auth_failures_total",
                "Failed local logins.",
                &self.auth_failures,
            ),
            (
                "qqmail_proxy_cross_protocol_total",
                "Sessions closed for sending HTTP to a mail port (cross-protocol attack).",
                &self.cross_protocol,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for p in PROTOCOLS {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{p}\"}} {}",
                    arr[idx(p)].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP qqmail_proxy_upstream_errors_total Upstream failures by kind."
        );
        let _ = writeln!(out, "# TYPE qqmail_proxy_upstream_errors_total counter");
        for ((p, k), n) in lock(&self.upstream_errors).iter() {
            let _ = writeln!(
                out,
                "qqmail_proxy_upstream_errors_total{{protocol=\"{p}\",kind=\"{k}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP qqmail_proxy_messages_total SMTP messages accepted upstream."
        );
        let _ = writeln!(out, "# TYPE qqmail_proxy_messages_total counter");
        let _ = writeln!(
            out,
            "qqmail_proxy_messages_total {}",
            self.messages.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP qqmail_proxy_sent_copies_total Copies of accepted messages for the Sent \
             folder (save_sent), saved or given up."
        );
        let _ = writeln!(out, "# TYPE qqmail_proxy_sent_copies_total counter");
        for (i, result) in ["saved", "failed"].into_iter().enumerate() {
            let _ = writeln!(
                out,
                "qqmail_proxy_sent_copies_total{{result=\"{result}\"}} {}",
                self.sent_copies[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP qqmail_proxy_login_seconds Time from local login to upstream ready."
        );
        let _ = writeln!(out, "# TYPE qqmail_proxy_login_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "qqmail_proxy_login_seconds_bucket{{le=\"{b}\"}} {}",
                self.login_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.login_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "qqmail_proxy_login_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "qqmail_proxy_login_seconds_sum {}",
            self.login_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "qqmail_proxy_login_seconds_count {count}");
        self.render_guard(&mut out);
        out
    }
}

/// Guessing defences: what the authenticator reports (`src/auth.rs`).
impl Metrics {
    /// A login was refused unchecked because its user is throttled; `new_episode` when
    /// that began an attack on the user.
    pub fn login_throttled(&self, new_episode: bool) {
        self.guard.throttled.fetch_add(1, Ordering::Relaxed);
        if new_episode {
            self.guard.attacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A password was checked (one argon2 run).
    pub fn password_checked(&self) {
        self.guard.checks.fetch_add(1, Ordering::Relaxed);
    }

    /// A password check was refused by `max_password_checks_per_second`.
    pub fn password_check_refused(&self) {
        self.guard.checks_refused.fetch_add(1, Ordering::Relaxed);
    }

    fn render_guard(&self, out: &mut String) {
        for (name, help, counter) in [
            (
                "qqmail_proxy_users_attacked_total",
                "Times a local user (unknown names counting as one) came under attack: its \
                 failed-login budget spent, its logins throttled.",
                &self.guard.attacks,
            ),
            (
                "qqmail_proxy_logins_throttled_total",
                "Logins refused unchecked because their user was throttled.",
                &self.guard.throttled,
            ),
            (
                "qqmail_proxy_password_checks_total",
                "Local passwords checked (argon2 runs).",
                &self.guard.checks,
            ),
            (
                "qqmail_proxy_password_checks_refused_total",
                "Logins answered with a temporary failure by max_password_checks_per_second.",
                &self.guard.checks_refused,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
    }
}
