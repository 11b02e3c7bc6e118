//! TLS set-up from the run's throw-away CA: the upstream stand-in's acceptor and the load
//! generator's verifying connector (rustls defaults, so session resumption is on for the
//! client exactly as it is inside qqmail-proxy).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::wire::Stream;

/// An acceptor serving `cert` (PEM chain) with `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading key {}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A connector that trusts only `ca` (PEM).
pub fn connector(ca: &Path) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots
            .add(c.context("CA certificate")?)
            .context("adding the CA")?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name every benchmark certificate carries (SAN IP 127.0.0.1).
pub fn loopback_name() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into())
}

/// Upgrades a plain TCP stream with a TLS client handshake.
pub async fn client_handshake(tls: &TlsConnector, tcp: TcpStream) -> Result<Stream> {
    let s = tls
        .connect(loopback_name(), tcp)
        .await
        .context("TLS handshake")?;
    Ok(Stream::Client(Box::new(s)))
}
