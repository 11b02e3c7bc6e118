//! A throw-away certificate authority made with rcgen, and rustls configs built from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The crypto provider every test config uses (the proxy uses ring too).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA whose certificate is written to a temp file, to be named by `ca_file`.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: tempfile::TempDir,
    pem_path: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA cert");
        let dir = tempfile::tempdir().expect("tempdir");
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).expect("write CA");
        TestCa {
            cert,
            key,
            dir,
            pem_path,
        }
    }

    /// Path of the CA certificate (PEM), for `ca_file`.
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// PEM text of the CA certificate.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP literals), valid now, signed by
    /// this CA, as DER chain and key.
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.leaf_with(names, false)
    }

    /// Like [`TestCa::leaf`], but `expired` makes the certificate's validity end in 2001.
    pub fn leaf_with(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().expect("DNS name")),
            };
            params.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.distinguished_name = dn;
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key_der)
    }

    /// A rustls server config presenting a leaf for `names`.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.leaf(names);
        server_config_from(chain, key)
    }

    /// A server config whose certificate has expired.
    pub fn expired_server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.leaf_with(names, true);
        server_config_from(chain, key)
    }

    /// A rustls client config that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("add CA root");
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// The temp dir holding the CA file (kept alive as long as the CA).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A server config from a chain and key.
pub fn server_config_from(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert"),
    )
}

/// The names every fake upstream's certificate carries: the proxy's tests address the
/// fakes as `127.0.0.1:PORT`.
pub const UPSTREAM_NAMES: &[&str] = &["127.0.0.1", "localhost"];
