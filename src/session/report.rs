//! How a session ended and what it did: the one line logged at its end, and the labels
//! of the session metrics.

/// How a session ended, for the session log line and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    pub(super) fn new() -> Report {
        Report {
            user: None,
            account: None,
            outcome: Outcome::Ok,
            from_client: 0,
            to_client: 0,
            messages: 0,
            auth_failures: 0,
            tls: TlsUse::None,
        }
    }
}
