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
            format!("TLS failed: {}", certificate_problem(c))
        }
        Some(other) => format!("TLS failed: {other}"),
        None => format!("TLS failed: {e}"),
    }
}

/// Why a server certificate was refused, in words a user can act on (never Rust's
/// `Debug` of an error enum: `check` and the log show this to people).
#[allow(deprecated)] // the unit variants are still produced alongside the `*Context` ones
fn certificate_problem(c: &CertificateError) -> String {
    let text = match c {
        CertificateError::UnknownIssuer => {
            "certificate is not trusted (unknown issuer; set ca_file only for a private CA)"
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "certificate is not valid for this host name"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate has expired (or this machine's clock is wrong)"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet (check this machine's clock)"
        }
        CertificateError::Revoked => "certificate has been revoked",
        CertificateError::BadEncoding => "certificate is malformed",
        CertificateError::BadSignature => "certificate's signature does not verify",
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate is signed with an algorithm that is not accepted (SHA-1, MD5)"
        }
        CertificateError::Other(other) => return pki_problem(other),
        _ => "certificate was rejected",
    };
    text.to_string()
}

/// The webpki errors rustls passes on without a name of its own.
#[allow(deprecated)] // as above
fn pki_problem(other: &rustls::OtherError) -> String {
    let Some(e) = other.0.downcast_ref::<webpki::Error>() else {
        return format!("certificate was rejected ({other})");
    };
    match e {
        // `openssl req -x509` makes exactly this: a self-signed certificate with CA:TRUE.
        webpki::Error::CaUsedAsEndEntity => "the server presents a CA certificate (CA:TRUE) as              its own certificate, which TLS clients refuse: give the server a certificate              signed by that CA (and put the CA in ca_file)"
            .to_string(),
        webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_) => {
            "certificate is not meant for TLS servers (its extended key usage lacks serverAuth)"
                .to_string()
        }
        webpki::Error::EndEntityUsedAsCa | webpki::Error::PathLenConstraintViolated => {
            "certificate chain is invalid (a server certificate used as a CA)".to_string()
        }
        other => format!("certificate was rejected ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(e: rustls::Error) -> String {
        describe_tls_error(&std::io::Error::other(e))
    }

    #[test]
    #[allow(deprecated)] // the unit variant is what older webpki paths still return
    fn certificate_failures_read_as_words() {
        let other = |e: webpki::Error| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        };
        let table: Vec<(rustls::Error, &str)> = vec![
            (CertificateError::UnknownIssuer.into(), "unknown issuer"),
            (CertificateError::NotValidForName.into(), "host name"),
            (CertificateError::Expired.into(), "expired"),
            (CertificateError::BadSignature.into(), "does not verify"),
            (other(webpki::Error::CaUsedAsEndEntity), "CA:TRUE"),
            (other(webpki::Error::RequiredEkuNotFound), "serverAuth"),
            (other(webpki::Error::EndEntityUsedAsCa), "chain is invalid"),
        ];
        for (error, expected) in table {
            let text = described(error);
            assert!(text.starts_with("TLS failed: "), "{text}");
            assert!(text.contains(expected), "{text} lacks {expected:?}");
            // Never the Debug form of a nested error enum.
            assert!(!text.contains("OtherError"), "{text}");
        }
    }
}
