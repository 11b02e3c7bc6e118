//! The OpenSSL acceptor behind the `legacy-tls` feature: TLS 1.0 and 1.1 with the CBC
//! suites old printers and scanners use, for the LOCAL side only, when `[tls]
//! min_version` is below 1.2 (rustls offers neither). Same certificate and key as the
//! rustls acceptor; the upstream side never uses this.

use std::path::Path;
use std::sync::Arc;

use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslOptions, SslVersion};
use openssl::x509::X509;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::TlsError;
use crate::config::MinVersion;

/// Suites for TLS 1.0–1.2: the AEAD suites of Mozilla's "intermediate" profile first
/// (the server's order wins), then the CBC suites of TLS 1.0-era devices, of which
/// `AES128-SHA` is TLS_RSA_WITH_AES_128_CBC_SHA (RFC 5246's mandatory suite) and
/// `ECDHE-RSA-AES128-SHA` TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA (RFC 4492).
/// `@SECLEVEL=0`: OpenSSL 3 refuses TLS 1.0/1.1 (their MD5+SHA-1 handshake signatures) at
/// any higher level. No RC4, 3DES, export or NULL suites: the default list excludes them.
pub const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
    ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
    ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:\
    ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:\
    AES128-SHA:AES256-SHA:@SECLEVEL=0";

/// A shared OpenSSL server context.
#[derive(Clone)]
pub struct LegacyAcceptor(Arc<SslAcceptor>);

impl LegacyAcceptor {
    /// The handshake on `tcp`; an OpenSSL failure comes back as an `InvalidData` error
    /// wrapping the `openssl::ssl::Error` (for `diagnose`).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<SslStream<TcpStream>> {
        let ssl = Ssl::new(self.0.context()).map_err(std::io::Error::other)?;
        let mut stream = SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
        match std::pin::Pin::new(&mut stream).accept().await {
            Ok(()) => Ok(stream),
            Err(e) => Err(match e.into_io_error() {
                Ok(io) => io,
                Err(e) => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
        }
    }
}

/// The acceptor for `min_version`, from the PEM chain in `cert` (leaf first) and the
/// PEM key in `key` (RSA or ECDSA, PKCS#8 or traditional).
pub fn acceptor(
    cert: &Path,
    chain_pem: &[u8],
    key_pem: &[u8],
    min_version: MinVersion,
) -> Result<LegacyAcceptor, TlsError> {
    let version = min_version.name();
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: openssl::error::ErrorStack| TlsError::Legacy {
            version,
            message: format!("{what}: {e}"),
        }
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(fail("creating the context"))?;
    // The Mozilla profile turns the old versions off by option; the minimum decides here.
    b.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
    let min = match min_version {
        MinVersion::Tls10 => SslVersion::TLS1,
        MinVersion::Tls11 => SslVersion::TLS1_1,
        MinVersion::Tls12 => SslVersion::TLS1_2,
    };
    b.set_min_proto_version(Some(min))
        .map_err(fail("setting the minimum version"))?;
    b.set_cipher_list(CIPHERS)
        .map_err(fail("setting the cipher suites"))?;
    // Client-initiated renegotiation is a DoS lever and never needed by mail clients;
    // the server's suite order puts AEAD suites before CBC for clients offering both.
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::CIPHER_SERVER_PREFERENCE);
    let file = |what: &str| format!("{what} {}", cert.display());
    let mut chain = X509::stack_from_pem(chain_pem)
        .map_err(fail(&file("reading the certificate chain in")))?
        .into_iter();
    let leaf = chain.next().ok_or_else(|| TlsError::Legacy {
        version,
        message: file("no certificate in"),
    })?;
    b.set_certificate(&leaf)
        .map_err(fail(&file("using the certificate in")))?;
    for extra in chain {
        b.add_extra_chain_cert(extra)
            .map_err(fail(&file("using the chain in")))?;
    }
    let key = PKey::private_key_from_pem(key_pem).map_err(fail("reading [tls] key_file"))?;
    b.set_private_key(&key)
        .map_err(fail("using [tls] key_file"))?;
    b.check_private_key()
        .map_err(fail("[tls] key_file does not match [tls] cert_file"))?;
    Ok(LegacyAcceptor(Arc::new(b.build())))
}
