//! qqmail-proxy: a local SMTP/IMAP/POP3 gateway for mail providers that require an
//! authorization code over TLS (QQ Mail, Tencent Exmail, NetEase, iCloud, Gmail).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod net;
pub mod proto;
pub mod providers;
pub mod secrets;
pub mod tls;
pub mod upstream;
