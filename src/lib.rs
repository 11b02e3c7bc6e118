//! qqmail-proxy: a local SMTP/IMAP/POP3 gateway for mail providers that require an
//! authorization code over TLS (QQ Mail, Tencent Exmail, NetEase, iCloud, Gmail).
//!
//! How a session flows, and which module owns each step:
//!
//! ```text
//! client ──TCP──▶ server (accept, limits, span) ──▶ session::run::<P>
//!     P = proto::{smtp,imap,pop3} (pure login phase: bytes in → Actions out)
//!     STARTTLS ─ tls::local        local auth ─ auth (argon2, cache, lockout)
//!     upstream ─ upstream::{smtp,imap,pop3} over tls::upstream (verified, never plaintext)
//!     relay    ─ session::relay::splice (IMAP/POP3 bytes) | session::smtp (transactions)
//! ```
//!
//! `config` turns TOML and `QQMAIL_*` variables into typed settings, `providers` holds
//! the presets, `secrets` the zeroizing `Secret`, `host` which addresses the
//! per-address limits count as one client, `runtime` what sessions share, `state`
//! generated local logins, `trust` which state files it believes (owner and mode),
//! `fdlimit` the descriptor budget, `logging` the escaping of every logged value,
//! `queue` the durable store-and-forward spool, `sent` the `save_sent` copies APPENDed
//! to the Sent folder, `metrics` + `admin` the health and
//! Prometheus endpoint, and `cli` the command line.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activity;
pub mod admin;
pub mod auth;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod fdlimit;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod providers;
pub mod queue;
pub mod runtime;
pub mod secrets;
pub mod sent;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;

/// True in a build with the `legacy-tls` feature: the local side can accept TLS 1.0 and
/// 1.1 (`[tls] min_version`) through OpenSSL. A constant rather than `#[cfg]` at the use
/// sites, so that both answers (and their messages) are compiled and tested in one build.
pub const LEGACY_TLS: bool = cfg!(feature = "legacy-tls");
pub mod trust;
pub mod upstream;
