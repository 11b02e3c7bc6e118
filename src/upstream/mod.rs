//! Connections to the providers: TCP with timeouts, implicit TLS or mandatory STARTTLS
//! (never plaintext), and the injected login with the account's authorization code for
//! each protocol (`smtp`, `imap`, `pop3`).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::net::{self, show, LineError, LineStream};
use crate::providers::{Security, ServerAddr};
use crate::tls::upstream::handshake;

pub mod hint;
pub mod imap;
pub mod pool;
pub mod pop3;
pub mod smtp;

/// The connection to an upstream server: always TLS.
pub type UpstreamStream = TlsStream<TcpStream>;

/// Longest reply line accepted from an upstream.
pub const MAX_UPSTREAM_LINE: usize = 64 * 1024;

/// Why the upstream login failed. `Display` is for logs; [`UpstreamError::client_text`]
/// is the short text shown to the client. Neither ever contains the code.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// The account has no server for this protocol.
    #[error("account has no {0} server configured")]
    NotConfigured(&'static str),
    /// TCP connect failed.
    #[error("cannot reach {server}: {source}")]
    Connect {
        /// `host:port`.
        server: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS failed (certificate problems are named).
    #[error("{server}: {message}")]
    Tls {
        /// `host:port`.
        server: String,
        /// What failed.
        message: String,
    },
    /// `starttls://` was asked for but the server does not offer it. No credential was sent.
    #[error("{server} does not offer STARTTLS; refusing to send credentials without TLS")]
    NoStartTls {
        /// `host:port`.
        server: String,
    },
    /// The server sent something before the TLS handshake that it should not have.
    #[error("{server} sent unexpected data before the TLS handshake")]
    PlaintextInjection {
        /// `host:port`.
        server: String,
    },
    /// No reply within the timeout.
    #[error("{server} did not answer ({stage}) within {secs} s")]
    Timeout {
        /// `host:port`.
        server: String,
        /// Greeting, login, ...
        stage: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// The connection closed or failed mid-exchange.
    #[error("{server} closed the connection ({stage}): {detail}")]
    Closed {
        /// `host:port`.
        server: String,
        /// Greeting, login, ...
        stage: &'static str,
        /// Detail.
        detail: String,
    },
    /// The server refused the connection or greeted with an error.
    #[error("{server} refused the session: {}", show(reply))]
    Refused {
        /// `host:port`.
        server: String,
        /// The server's reply, as bytes.
        reply: Vec<u8>,
    },
    /// The server rejected the account's code (wrong, revoked, or service disabled).
    #[error("{server} rejected the login for {email}: {}", show(reply))]
    Rejected {
        /// `host:port`.
        server: String,
        /// The account address.
        email: String,
        /// The server's reply.
        reply: Vec<u8>,
    },
    /// A temporary refusal of the login (rate limiting, in use).
    #[error("{server} temporarily refused the login for {email}: {}", show(reply))]
    TempFail {
        /// `host:port`.
        server: String,
        /// The account address.
        email: String,
        /// The server's reply.
        reply: Vec<u8>,
    },
    /// Anything else unexpected.
    #[error("{server}: unexpected reply ({stage}): {}", show(reply))]
    Protocol {
        /// `host:port`.
        server: String,
        /// Greeting, login, ...
        stage: &'static str,
        /// The reply.
        reply: Vec<u8>,
    },
}

impl UpstreamError {
    /// True when the upstream rejected the stored code (not a network problem).
    pub fn is_rejection(&self) -> bool {
        matches!(self, UpstreamError::Rejected { .. })
    }

    /// A short kind for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::NotConfigured(_) => "not_configured",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Tls { .. } => "tls",
            UpstreamError::NoStartTls { .. } | UpstreamError::PlaintextInjection { .. } => {
                "starttls"
            }
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Closed { .. } => "closed",
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::Rejected { .. } => "rejected",
            UpstreamError::TempFail { .. } => "tempfail",
            UpstreamError::Protocol { .. } => "protocol",
        }
    }

    /// A plain-language hint for logs and `qqmail-proxy check`.
    pub fn hint(&self) -> Option<&'static str> {
        let reply = match self {
            UpstreamError::Rejected { reply, .. }
            | UpstreamError::TempFail { reply, .. }
            | UpstreamError::Refused { reply, .. } => Some(reply),
            _ => None,
        };
        if reply.is_some_and(|r| hint::for_reply(r) == Some(hint::RATE_LIMITED)) {
            return Some(hint::RATE_LIMITED);
        }
        match self {
            UpstreamError::Rejected { .. } => Some(hint::CODE_REFUSED),
            UpstreamError::TempFail { .. } => {
                Some("the provider refused the login for now (often rate limiting): try again later")
            }
            UpstreamError::Timeout {
                stage: "greeting", ..
            } => Some(
                "the server sent no greeting: a port that speaks TLS at once (465, 993, 995) \
                 needs tls://host:port (implicit TLS); for STARTTLS use its plaintext port \
                 (SMTP 587)",
            ),
            UpstreamError::Connect { .. } | UpstreamError::Timeout { .. } => Some(
                "check the server name and port, DNS, and that this machine may reach the provider \
                 (firewall, proxy)",
            ),
            UpstreamError::Tls { .. } => Some(hint::TLS_UNTRUSTED),
            UpstreamError::NoStartTls { .. } => Some(
                "the server offers no STARTTLS: use its implicit-TLS port (tls://host:port) instead",
            ),
            _ => None,
        }
    }

    /// Text for the client: one line, no secrets, the cause at most 200 bytes.
    pub fn client_text(&self) -> String {
        format!(
            "upstream unavailable: {}",
            crate::proto::reply_text(&self.to_string(), 200)
        )
    }
}

/// Context for one upstream exchange: the server name for messages, and the timeout.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// `host:port` for messages.
    pub server: String,
    /// Timeout for each read and write.
    pub timeout: Duration,
    /// The account address (the upstream login name).
    pub email: String,
}

impl Ctx {
    /// Maps a line-reading error at `stage` into an [`UpstreamError`].
    pub fn line_error(&self, stage: &'static str, e: LineError) -> UpstreamError {
        match e {
            LineError::Timeout => UpstreamError::Timeout {
                server: self.server.clone(),
                stage,
                secs: self.timeout.as_secs(),
            },
            other => UpstreamError::Closed {
                server: self.server.clone(),
                stage,
                detail: other.to_string(),
            },
        }
    }

    /// An unexpected reply at `stage`.
    pub fn protocol(&self, stage: &'static str, reply: &[u8]) -> UpstreamError {
        UpstreamError::Protocol {
            server: self.server.clone(),
            stage,
            reply: reply.to_vec(),
        }
    }
}

/// How a protocol opens a session: reading the greeting, and the plaintext part of a
/// STARTTLS upstream (greeting, check the offer, ask for the upgrade).
pub trait Dialect {
    /// Reads and checks the server greeting (implicit TLS, after the handshake).
    fn greeting(
        conn: &mut LineStream<UpstreamStream>,
        ctx: &Ctx,
    ) -> impl std::future::Future<Output = Result<(), UpstreamError>> + Send;

    /// Runs the plaintext dialog; on success the next byte on the wire is the TLS handshake.
    fn negotiate(
        conn: &mut LineStream<TcpStream>,
        ctx: &Ctx,
    ) -> impl std::future::Future<Output = Result<(), UpstreamError>> + Send;
}

impl Ctx {
    /// The context for logging into `server` as `account`.
    pub fn new(account: &crate::config::Account, server: &ServerAddr, timeout: Duration) -> Ctx {
        Ctx {
            server: server.to_string(),
            timeout,
            email: account.email.clone(),
        }
    }
}

/// Connects to `server` and returns a verified TLS stream whose greeting has been read
/// (for `starttls://`, the plaintext dialog of `D` runs first; if the server does not
/// offer STARTTLS, no credential is ever sent).
pub async fn connect<D: Dialect>(
    server: &ServerAddr,
    tls: Arc<rustls::ClientConfig>,
    ctx: &Ctx,
) -> Result<LineStream<UpstreamStream>, UpstreamError> {
    let tcp = net::connect(&server.host, server.port, ctx.timeout)
        .await
        .map_err(|source| UpstreamError::Connect {
            server: ctx.server.clone(),
            source,
        })?;
    let tcp = match server.security {
        Security::Implicit => tcp,
        Security::StartTls => {
            let mut plain = LineStream::new(tcp, MAX_UPSTREAM_LINE);
            D::negotiate(&mut plain, ctx).await?;
            let (tcp, leftover) = plain.into_parts();
            // Bytes that arrived before the handshake could be an injected reply
            // (CVE-2011-0411 in reverse): refuse rather than interpret them.
            if !leftover.is_empty() {
                return Err(UpstreamError::PlaintextInjection {
                    server: ctx.server.clone(),
                });
            }
            tcp
        }
    };
    let stream = tokio::time::timeout(ctx.timeout, handshake(tls, &server.host, tcp))
        .await
        .map_err(|_| UpstreamError::Timeout {
            server: ctx.server.clone(),
            stage: "TLS handshake",
            secs: ctx.timeout.as_secs(),
        })?
        .map_err(|message| UpstreamError::Tls {
            server: ctx.server.clone(),
            message,
        })?;
    let mut conn = LineStream::with_buffer(
        stream,
        BytesMut::with_capacity(16 * 1024),
        MAX_UPSTREAM_LINE,
    );
    if server.security == Security::Implicit {
        D::greeting(&mut conn, ctx).await?;
    }
    Ok(conn)
}
