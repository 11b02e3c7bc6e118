//! Verified TLS to the providers: public roots (webpki-roots, so a `FROM scratch` image
//! needs no CA bundle) plus an account's `ca_file` when set, and plain-language names for
//! certificate failures. There is no way to turn verification off.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::local::read_certs;
use super::{provider, TlsError};

/// A client config trusting the public roots and, if given, the certificates in `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in read_certs("ca_file", path)? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                what: "ca_file",
                path: path.display().to_string(),
                message: format!("not a usable CA certificate ({e})"),
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the client handshake over `tcp`, verifying the certificate against `host`.
pub async fn handshake(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| describe_tls_error(&e))
}

/// A plain-language description of a failed handshake, naming certificate problems.
pub fn describe_tls_error(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => {
            let what = match c {
                CertificateError::UnknownIssuer => {
                    "certificate is not trusted (unknown issuer; set ca_file only for a private CA)"
                        .to_string()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "certificate is not valid for this host name".to_string()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "certificate has expired (or this machine's clock is wrong)".to_string()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "certificate is not valid yet (check this machine's clock)".to_string()
                }
                CertificateError::Revoked => "certificate has been revoked".to_string(),
                other => format!("certificate rejected: {other:?}"),
            };
            format!("TLS failed: {what}")
        }
        Some(other) => format!("TLS failed: {other}"),
        None => format!("TLS failed: {e}"),
    }
}
