//! Socket-free protocol machines for the login phase of SMTP, IMAP and POP3.
//!
//! Each protocol module turns client bytes into [`Action`]s for the session pipeline
//! (`crate::session`) and never touches a socket, a clock or a task: tests and fuzzers
//! drive them with plain byte slices, split at any point. The pipeline performs the
//! actions (write, STARTTLS, verify credentials, close) and reports login results back
//! with [`LoginPhase::login_result`].

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::secrets::Secret;

pub mod http;
pub mod imap;
pub mod line;
pub mod pop3;
pub mod sasl;
pub mod smtp;

#[cfg(test)]
#[allow(dead_code)] // each protocol's tests use a different part of it
pub(crate) mod testkit;

#[cfg(test)]
mod hardening_tests;

/// Protocol errors tolerated before login (unknown commands, bad syntax, refused
/// arguments) before the session is closed, in all three protocols: Postfix's
/// `smtpd_hard_error_limit`. Without it a client could probe for ever within the
/// pre-auth deadline.
pub const MAX_ERRORS: u32 = 20;

/// The three protocols the proxy serves (as JSON: `"smtp"`, `"imap"`, `"pop3"`, the same
/// as [`Protocol::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SMTP submission (RFC 5321, RFC 4954).
    Smtp,
    /// IMAP4rev1 / IMAP4rev2 (RFC 3501, RFC 9051).
    Imap,
    /// POP3 (RFC 1939, RFC 2449, RFC 5034).
    Pop3,
}

impl Protocol {
    /// Lower-case name, as used in config sections, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a listener offers STARTTLS to its clients (config key `starttls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTlsMode {
    /// Not offered; every command is accepted in plaintext.
    Off,
    /// Offered; clients may log in with or without it.
    #[default]
    Optional,
    /// Offered, and no credentials are accepted before it (RFC 3207 §4, RFC 2595 §3.2).
    Required,
}

impl StartTlsMode {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            StartTlsMode::Off => "off",
            StartTlsMode::Optional => "optional",
            StartTlsMode::Required => "required",
        }
    }
}

/// What a login phase needs to know about its session; fixed when the session starts.
#[derive(Clone, Debug)]
pub struct Policy {
    /// STARTTLS offer for this listener.
    pub starttls: StartTlsMode,
    /// Longest command line accepted, CRLF excluded.
    pub max_line: usize,
    /// IMAP: largest literal accepted before login.
    pub max_literal: usize,
    /// Name used in greetings (SMTP `220 <hostname>`).
    pub hostname: String,
    /// SMTP: this client may send mail without AUTH (its address is allow-listed).
    pub allow_unauthenticated: bool,
    /// SMTP: the SIZE limit to advertise (from the upstream), `None` for a bare `SIZE`.
    pub smtp_size: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            starttls: StartTlsMode::Optional,
            max_line: 16 * 1024,
            max_literal: 16 * 1024,
            hostname: "localhost".into(),
            allow_unauthenticated: false,
            smtp_size: None,
        }
    }
}

/// A local user name and password presented by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Local user name (`[[user]].name`); never the upstream address.
    pub user: String,
    /// The password as sent; compared against the argon2 hash, never logged.
    pub password: Secret,
}

/// What the session pipeline must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the client, then call `advance` again.
    Reply(Vec<u8>),
    /// Send these bytes, then run the TLS handshake and call [`LoginPhase::tls_started`].
    /// Client bytes still buffered were sent in plaintext before the handshake and must be
    /// discarded, never interpreted (RFC 3207 §6, CVE-2011-0411).
    StartTls(Vec<u8>),
    /// Verify these credentials and connect upstream, then report with `login_result`.
    Login(Credentials),
    /// SMTP only: the (allow-listed) client starts a transaction without AUTH. The command
    /// that triggered this is left unconsumed in the input for the relay phase.
    Proceed,
    /// Send these bytes, then close the connection.
    Close(Vec<u8>),
    /// The client sent an HTTP request line or header (see [`http`]): a web page is
    /// driving a browser against this port (cross-protocol attack). Discard every byte
    /// still buffered, send these bytes, close, and log and count it.
    CrossProtocol(Vec<u8>),
    /// No whole command is buffered: read more bytes, then call `advance` again.
    NeedMore,
}

/// The result of an [`Action::Login`], reported back to the protocol machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Local credentials accepted and the upstream login succeeded. For IMAP,
    /// `capabilities` is the upstream's post-login capability list (the text after the
    /// word `CAPABILITY`, e.g. `IMAP4rev1 IDLE MOVE`), to be shown to the client.
    Success {
        /// Upstream capabilities to pass on (IMAP), if the upstream sent them.
        capabilities: Option<Vec<u8>>,
    },
    /// Unknown local user or wrong password.
    BadCredentials,
    /// Too many failures in this session or from this address: answer and close.
    TooManyFailures,
    /// The upstream could not be reached, its TLS failed, or it timed out. `reason` is a
    /// short, secret-free text for the client.
    UpstreamUnavailable {
        /// Human-readable cause, e.g. `cannot reach imap.qq.com:993: connection refused`.
        reason: String,
    },
    /// The upstream rejected the stored authorization code.
    UpstreamRejected,
}

/// Makes a reason (an upstream failure, say) safe inside a one-line reply: control
/// characters (CR, LF, NUL, ...) become spaces, so the text cannot end the reply early or
/// inject another, and it is cut at `max` bytes on a character boundary, then trimmed.
pub fn reply_text(reason: &str, max: usize) -> String {
    let mut out = String::new();
    for c in reason.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// A protocol's login phase, as a pure state machine.
pub trait LoginPhase {
    /// The protocol this machine speaks.
    const PROTOCOL: Protocol;

    /// Bytes to send as soon as a client connects.
    fn greeting(&self) -> Vec<u8>;

    /// Consumes whole commands from the front of `input` (leaving a partial one in place)
    /// and returns the next thing to do. After `Login`, `StartTls`, `Proceed` or `Close`
    /// the machine waits for the pipeline; after `Reply` call again; `NeedMore` means
    /// read more bytes first.
    fn advance(&mut self, input: &mut BytesMut) -> Action;

    /// Reports the outcome of the last [`Action::Login`]. Returns `Reply` (for
    /// `Success`: the last reply of the login phase, after which the relay starts) or
    /// `Close`.
    fn login_result(&mut self, outcome: LoginOutcome) -> Action;

    /// Called once the TLS handshake requested by [`Action::StartTls`] has completed.
    fn tls_started(&mut self);

    /// Sent before closing a client that stayed silent past the pre-auth timeout.
    fn timeout_reply(&self) -> Vec<u8>;

    /// Sent before closing a client that is still logging in when the proxy shuts down.
    fn shutdown_reply(&self) -> Vec<u8>;

    /// How the client's lines have ended so far, for a relay that goes on framing them
    /// (SMTP's DATA framing depends on it; see `proto::smtp::framing`).
    fn line_endings(&self) -> line::LineEndings {
        line::LineEndings::None
    }

    /// Whether the client was refused something only a login allows (SMTP's 530 to a
    /// MAIL without AUTH): a session that ends without a login after that is reported
    /// as refused, not as a normal end.
    fn refused(&self) -> bool {
        false
    }
}
