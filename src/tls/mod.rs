//! TLS on both sides: the local certificate for STARTTLS (`local`) and verified
//! connections to the providers (`upstream`). rustls, TLS 1.2 and 1.3, ring — except the
//! local side of a `legacy-tls` build with `[tls] min_version` below 1.2 (OpenSSL, see
//! `local::legacy`); the upstream side is rustls always.

use std::sync::Arc;

use thiserror::Error;

pub mod local;
pub mod upstream;

/// The crypto provider used everywhere (one provider, so one set of algorithms to audit).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate or TLS configuration could not be set up.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// Which file (`tls.cert_file`, `ca_file`, ...).
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{what} {path}: {message}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("generating the local certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// OpenSSL (the `legacy-tls` backend for `[tls] min_version` below 1.2) refused the
    /// certificate, the key or a setting.
    #[error("[tls] min_version = \"{version}\" (OpenSSL): {message}")]
    Legacy {
        /// The configured `min_version`.
        version: &'static str,
        /// OpenSSL's reasons, and which file.
        message: String,
    },
    /// RSA key generation failed.
    #[error("generating an RSA key: {0}")]
    Rsa(String),
    /// The key or certificate could have been written by another user.
    #[error("{what}: {source}")]
    Untrusted {
        /// Which file.
        what: &'static str,
        /// What is wrong and the fix.
        source: crate::trust::Distrust,
    },
}
