//! How a session ended and what it did: the one line logged at its end, the labels
//! of the session metrics, and the entry in the activity record (`crate::activity`).

use serde::{Deserialize, Serialize};

/// Longest error text kept for a session (QQ's longest known reply, 535 with its help
/// link, fits).
const ERROR_MAX: usize = 400;

/// How a session ended, for the session log line, metrics and the activity record (as
/// JSON: the same snake_case names as [`Outcome::label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Normal end (QUIT/LOGOUT, or the relay closed cleanly).
    Ok,
    /// The client went away before logging in.
    ClientClosed,
    /// Wrong local credentials (and the client gave up or was closed).
    AuthFailed,
    /// The upstream could not be reached or refused the login.
    UpstreamError,
    /// A timeout (pre-auth or idle).
    Timeout,
    /// The STARTTLS handshake failed.
    TlsFailed,
    /// A read or write error.
    Error,
    /// The proxy shut down.
    Shutdown,
    /// Still logging in when the sessions were full: closed to make room for a new one.
    Shed,
    /// The client sent HTTP (a cross-protocol attack) and was closed at once.
    CrossProtocol,
    /// Refused before any login (SMTP 530: MAIL without AUTH) and left without one.
    Refused,
}

impl Outcome {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientClosed => "client_closed",
            Outcome::AuthFailed => "auth_failed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::TlsFailed => "tls_failed",
            Outcome::Error => "error",
            Outcome::Shutdown => "shutdown",
            Outcome::Shed => "shed",
            Outcome::CrossProtocol => "cross_protocol",
            Outcome::Refused => "refused",
        }
    }

    /// Whether the session failed from its client's point of view (what the status page
    /// counts as a failure): a normal end, a client that left and a shutdown did not.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Outcome::Ok | Outcome::ClientClosed | Outcome::Shutdown
        )
    }
}

/// What a session did, logged as one line when it ends.
#[derive(Debug)]
pub struct Report {
    /// The local user who logged in, if any.
    pub user: Option<String>,
    /// The account used, if any.
    pub account: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Bytes from the client.
    pub from_client: u64,
    /// Bytes to the client.
    pub to_client: u64,
    /// SMTP messages accepted upstream.
    pub messages: u64,
    /// Failed local logins.
    pub auth_failures: u32,
    /// Whether and how the client's connection was encrypted.
    pub tls: TlsUse,
    /// The last refusal: the upstream's (login, sender, recipient, message) or the error
    /// the client was shown for a failed login or an undelivered message. One line,
    /// secret-free (replies and [`crate::upstream::UpstreamError`] texts carry no code).
    pub error: Option<String>,
}

/// How a session's client connection was encrypted, for the session log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsUse {
    /// Plaintext throughout.
    None,
    /// Upgraded by STARTTLS (STLS).
    StartTls,
    /// A tls:// listener: encrypted from the first byte.
    Implicit,
}

impl TlsUse {
    /// The label used in logs (`tls=implicit`).
    pub fn label(self) -> &'static str {
        match self {
            TlsUse::None => "none",
            TlsUse::StartTls => "starttls",
            TlsUse::Implicit => "implicit",
        }
    }
}

impl Report {
    /// Whether the session was only a probe: connected, read the greeting, sent at most
    /// `QUIT` (or nothing) and left, without logging in (`qqmail-proxy healthcheck`).
    pub fn is_probe(&self) -> bool {
        const QUIT: u64 = b"QUIT\r\n".len() as u64;
        matches!(self.outcome, Outcome::Ok | Outcome::ClientClosed)
            && self.user.is_none()
            && self.messages == 0
            && self.auth_failures == 0
            && self.from_client <= QUIT
    }

    /// An empty report: nothing done yet, ending normally unless told otherwise.
    pub fn new() -> Report {
        Report {
            user: None,
            account: None,
            outcome: Outcome::Ok,
            from_client: 0,
            to_client: 0,
            messages: 0,
            auth_failures: 0,
            tls: TlsUse::None,
            error: None,
        }
    }

    /// Notes `text` as the session's last error: control characters blanked (so it is
    /// one line), cut at a character boundary.
    pub fn note_error(&mut self, text: &str) {
        self.error = Some(crate::proto::reply_text(text, ERROR_MAX));
    }

    /// Notes a reply (the upstream's, or the proxy's own) as the session's last error.
    pub fn note_reply(&mut self, raw: &[u8]) {
        self.note_error(&crate::net::show(raw));
    }
}

impl Default for Report {
    fn default() -> Report {
        Report::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_names_are_the_labels() {
        use Outcome::*;
        #[rustfmt::skip]
        let all = [Ok, ClientClosed, AuthFailed, UpstreamError, Timeout, TlsFailed, Error,
                   Shutdown, Shed, CrossProtocol, Refused];
        for o in all {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.label()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
        }
    }

    #[test]
    fn noted_errors_are_one_bounded_line() {
        let cases: [(&[u8], &str); 3] = [
            (b"535 Login Fail\r\n", "535 Login Fail"),
            (b"550 a\r\n550 b\r\n", "550 a  550 b"),
            (b"535 \xb5\xc7\r\n", "535 \\xb5\\xc7"),
        ];
        for (raw, want) in cases {
            let mut r = Report::new();
            r.note_reply(raw);
            assert_eq!(r.error.as_deref(), Some(want), "{}", raw.escape_ascii());
        }
        let mut r = Report::new();
        r.note_error(&"x".repeat(5000));
        assert_eq!(r.error.map(|e| e.len()), Some(ERROR_MAX));
    }
}
