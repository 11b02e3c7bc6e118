//! The local certificate for STARTTLS: loaded from `[tls]`, or generated with rcgen on
//! first start (key file mode 0600, new directories 0700), and the rustls acceptor built
//! from it. Existing files must pass the [`crate::trust`] rule.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use super::{provider, TlsError};
use crate::config::LocalTls;
use crate::trust::{self, Kind};

/// A loaded local certificate.
pub struct LocalCert {
    /// Acceptor for STARTTLS.
    pub acceptor: TlsAcceptor,
    /// SHA-256 fingerprint of the leaf, `AB:CD:...`, for users to compare in their client.
    pub fingerprint: String,
    /// True when it was generated during this start.
    pub generated: bool,
}

/// Loads the certificate and key, generating both when neither file exists.
pub fn load_or_generate(cfg: &LocalTls, hostname: &str) -> Result<LocalCert, TlsError> {
    // A key another user could write is a key they chose: refuse it (see `trust`).
    for (what, path, kind) in [
        ("[tls] key_file", &cfg.key_file, Kind::PrivateFile),
        ("[tls] cert_file", &cfg.cert_file, Kind::SharedFile),
    ] {
        trust::check(path, kind).map_err(|source| TlsError::Untrusted { what, source })?;
    }
    let (cert_exists, key_exists) = (cfg.cert_file.exists(), cfg.key_file.exists());
    let generated = match (cert_exists, key_exists) {
        (true, true) => false,
        (false, false) => {
            generate(cfg, hostname)?;
            true
        }
        (true, false) | (false, true) => {
            let (present, absent) = if cert_exists {
                (&cfg.cert_file, &cfg.key_file)
            } else {
                (&cfg.key_file, &cfg.cert_file)
            };
            return Err(TlsError::Pem {
                what: "[tls]",
                path: absent.display().to_string(),
                message: format!(
                    "is missing while {} exists: provide both files, or delete both to have \
                     a new certificate generated",
                    present.display()
                ),
            });
        }
    };
    let certs = read_certs("[tls] cert_file", &cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| TlsError::Pem {
        what: "[tls] key_file",
        path: cfg.key_file.display().to_string(),
        message: format!("no usable private key ({e})"),
    })?;
    let fingerprint = fingerprint(&certs[0]);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(LocalCert {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        generated,
    })
}

/// Reads every certificate in a PEM file (at least one).
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(|source| TlsError::Io {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.display().to_string(),
            message: format!("invalid PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.display().to_string(),
            message: "contains no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// SHA-256 of a certificate's DER, as colon-separated upper-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn generate(cfg: &LocalTls, hostname: &str) -> Result<(), TlsError> {
    let mut names: Vec<String> = vec!["localhost".into()];
    for n in std::iter::once(hostname.to_string()).chain(cfg.names.iter().cloned()) {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    let mut params = CertificateParams::default();
    for n in &names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "qqmail-proxy local certificate");
    params.distinguished_name = dn;
    // Valid from yesterday (clock skew) for ten years: long enough for a NAS that runs
    // for years; delete both files to get a new one.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    for path in [&cfg.cert_file, &cfg.key_file] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            trust::create_private_dir(dir).map_err(|source| TlsError::Io {
                what: "creating directory",
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    write_file(
        &cfg.key_file,
        key.serialize_pem().as_bytes(),
        0o600,
        "[tls] key_file",
    )?;
    write_file(
        &cfg.cert_file,
        cert.pem().as_bytes(),
        0o644,
        "[tls] cert_file",
    )?;
    Ok(())
}

/// Writes a new file with `mode` (the key is never readable by others, not even briefly).
pub fn write_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    what: &'static str,
) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        what,
        path: path.display().to_string(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}
