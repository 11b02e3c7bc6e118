//! The local certificate for STARTTLS: loaded from `[tls]`, or generated on first start
//! and signed by the local CA ([`ca`]; key files mode 0600, new directories 0700), and the
//! acceptor built from it: rustls, or OpenSSL ([`legacy`]) when `[tls] min_version` is
//! below 1.2. Existing files must pass the [`crate::trust`] rule.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use super::{provider, TlsError};
use crate::config::LocalTls;
use crate::trust::{self, Kind};
use ca::Ca;
pub use stream::{LocalAcceptor, LocalTlsStream};

pub mod ca;
pub mod diagnose;
#[cfg(feature = "legacy-tls")]
pub mod legacy;
pub mod names;
pub mod sniff;
pub mod stream;

/// A loaded local certificate.
pub struct LocalCert {
    /// Acceptor for STARTTLS and implicit TLS.
    pub acceptor: LocalAcceptor,
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
    let mut renewed = Vec::new();
    let generated = match (cert_exists, key_exists) {
        (true, true) => {
            renewed = uncovered(cfg, hostname);
            if !renewed.is_empty() {
                renew(cfg, hostname)?;
            }
            false
        }
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
    // Read once for either backend; wiped when dropped.
    let key_pem =
        zeroize::Zeroizing::new(fs::read(&cfg.key_file).map_err(|source| TlsError::Io {
            what: "[tls] key_file",
            path: cfg.key_file.display().to_string(),
            source,
        })?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        what: "[tls] key_file",
        path: cfg.key_file.display().to_string(),
        message: format!("no usable private key ({e})"),
    })?;
    let fingerprint = fingerprint(&certs[0]);
    if !renewed.is_empty() {
        tracing::info!(
            "the local certificate did not name {}: a new one was issued by the same local \
             CA (clients that trust the CA need nothing), sha256={fingerprint}",
            renewed.join(", ")
        );
    }
    let acceptor = if cfg.min_version.is_legacy() {
        legacy_acceptor(cfg, &key_pem)?
    } else {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        LocalAcceptor::Rustls(TlsAcceptor::from(Arc::new(config)))
    };
    Ok(LocalCert {
        acceptor,
        fingerprint,
        generated,
    })
}

/// The OpenSSL acceptor for `[tls] min_version` below 1.2, on the same files.
#[cfg(feature = "legacy-tls")]
fn legacy_acceptor(cfg: &LocalTls, key_pem: &[u8]) -> Result<LocalAcceptor, TlsError> {
    let chain = fs::read(&cfg.cert_file).map_err(|source| TlsError::Io {
        what: "[tls] cert_file",
        path: cfg.cert_file.display().to_string(),
        source,
    })?;
    legacy::acceptor(&cfg.cert_file, &chain, key_pem, cfg.min_version).map(LocalAcceptor::OpenSsl)
}

/// Without the feature the configuration already refused an old `min_version`
/// (`config::local_tls`); this keeps a hand-built `LocalTls` from silently getting 1.2.
#[cfg(not(feature = "legacy-tls"))]
fn legacy_acceptor(cfg: &LocalTls, _key_pem: &[u8]) -> Result<LocalAcceptor, TlsError> {
    Err(TlsError::Legacy {
        version: cfg.min_version.name(),
        message: "this build has no legacy-tls feature (cargo build --features legacy-tls)".into(),
    })
}

/// The names a generated leaf should carry (`[tls] names`, this machine's host name and
/// addresses, …) that the one in `cert_file` does not: non-empty means issue a new one.
/// Always empty for a certificate the proxy did not generate with its CA (a user's own
/// `cert_file`, or an older self-signed one, which [`legacy_hint`] covers): those are
/// never touched.
fn uncovered(cfg: &LocalTls, hostname: &str) -> Vec<String> {
    let Ok(certs) = read_certs("[tls] cert_file", &cfg.cert_file) else {
        return Vec::new();
    };
    let ours = certs.len() >= 2
        && cfg.ca_cert_file.exists()
        && memchr::memmem::find(certs[0].as_ref(), ca::LEAF_CN.as_bytes()).is_some();
    if !ours {
        return Vec::new();
    }
    let Ok(leaf) = webpki::EndEntityCert::try_from(&certs[0]) else {
        return Vec::new();
    };
    names::leaf_names(hostname, &cfg.names)
        .into_iter()
        .filter(|name| {
            rustls::pki_types::ServerName::try_from(name.as_str())
                .is_ok_and(|n| leaf.verify_is_valid_for_subject_name(&n).is_err())
        })
        .collect()
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
    for path in [
        &cfg.cert_file,
        &cfg.key_file,
        &cfg.ca_cert_file,
        &cfg.ca_key_file,
    ] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            trust::create_private_dir(dir).map_err(|source| TlsError::Io {
                what: "creating directory",
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    let ca = load_or_generate_ca(cfg)?;
    let (chain, key) = ca.issue(cfg.key_type, hostname, &cfg.names)?;
    write_file(&cfg.key_file, key.as_bytes(), 0o600, "[tls] key_file")?;
    write_file(&cfg.cert_file, chain.as_bytes(), 0o644, "[tls] cert_file")?;
    Ok(())
}

/// Replaces a generated leaf with a new one from the same CA: both files written beside
/// the old ones and renamed over them (a crash leaves the old pair or the new one, but
/// for the instant between the two renames).
fn renew(cfg: &LocalTls, hostname: &str) -> Result<(), TlsError> {
    let ca = load_or_generate_ca(cfg)?;
    let (chain, key) = ca.issue(cfg.key_type, hostname, &cfg.names)?;
    for (path, bytes, mode, what) in [
        (&cfg.key_file, key.as_bytes(), 0o600, "[tls] key_file"),
        (&cfg.cert_file, chain.as_bytes(), 0o644, "[tls] cert_file"),
    ] {
        let new = path.with_extension("pem.new");
        let _ = fs::remove_file(&new);
        write_file(&new, bytes, mode, what)?;
        fs::rename(&new, path).map_err(|source| TlsError::Io {
            what,
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The local CA from `state_dir`, generated (with `[tls] key_type`) when neither of its
/// files exists. Kept across leaf renewals: clients trust it once.
fn load_or_generate_ca(cfg: &LocalTls) -> Result<Ca, TlsError> {
    let (cert, key) = (&cfg.ca_cert_file, &cfg.ca_key_file);
    for (path, kind) in [(key, Kind::PrivateFile), (cert, Kind::SharedFile)] {
        trust::check(path, kind).map_err(|source| TlsError::Untrusted {
            what: "local CA",
            source,
        })?;
    }
    match (cert.exists(), key.exists()) {
        (true, true) => {
            let pem = fs::read_to_string(key).map_err(|source| TlsError::Io {
                what: "local CA key",
                path: key.display().to_string(),
                source,
            })?;
            Ca::from_key_pem(&pem)
        }
        (false, false) => {
            let ca = Ca::generate(cfg.key_type)?;
            write_file(key, ca.key_pem().as_bytes(), 0o600, "local CA key")?;
            write_file(
                cert,
                ca.cert_pem().as_bytes(),
                0o644,
                "local CA certificate",
            )?;
            Ok(ca)
        }
        (true, false) | (false, true) => {
            let (present, absent) = if cert.exists() {
                (cert, key)
            } else {
                (key, cert)
            };
            Err(TlsError::Pem {
                what: "local CA",
                path: absent.display().to_string(),
                message: format!(
                    "is missing while {} exists: restore it, or delete both (and the \
                     generated [tls] cert_file and key_file) to have a new CA generated, \
                     which clients must then trust anew",
                    present.display()
                ),
            })
        }
    }
}

/// When the certificate in use was generated before the local CA existed (self-signed,
/// ECDSA): the text telling how to replace it. It is kept on purpose (its fingerprint,
/// which users may have pinned, does not change by surprise).
pub fn legacy_hint(cfg: &LocalTls) -> Option<String> {
    if cfg.ca_cert_file.exists() || !cfg.key_file.exists() {
        return None;
    }
    let bytes = fs::read(&cfg.cert_file).ok()?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    let generated = certs.len() == 1
        && certs[0]
            .as_ref()
            .windows(ca::LEAF_CN.len())
            .any(|w| w == ca::LEAF_CN.as_bytes());
    generated.then(|| {
        format!(
            "{} was generated by an older version (self-signed ECDSA, no local CA) and is \
             kept so that its fingerprint does not change. To get a {} certificate signed by \
             the local CA (which `qqmail-proxy ca export` prints for clients' trust stores), \
             stop the proxy, delete {} and {}, and start it again",
            cfg.cert_file.display(),
            match cfg.key_type {
                crate::config::KeyType::Rsa => "RSA",
                crate::config::KeyType::Ecdsa => "ECDSA",
            },
            cfg.cert_file.display(),
            cfg.key_file.display()
        )
    })
}

/// The local CA certificate as PEM, for `ca export`.
pub fn ca_pem(cfg: &LocalTls) -> Result<String, TlsError> {
    let path = &cfg.ca_cert_file;
    match fs::read_to_string(path) {
        Ok(pem) => Ok(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TlsError::Pem {
            what: "local CA",
            path: path.display().to_string(),
            message: match legacy_hint(cfg) {
                Some(hint) => format!("does not exist: {hint}"),
                // A certificate of the user's own: the proxy made no CA for it.
                None if cfg.cert_file.exists() => format!(
                    "does not exist: the certificate in use ({}) was not generated by the \
                     proxy, so give clients the CA that issued it",
                    cfg.cert_file.display()
                ),
                None => "does not exist yet: start the proxy once (`qqmail-proxy serve`, with \
                         STARTTLS or a tls:// listener on) to generate it"
                    .into(),
            },
        }),
        Err(source) => Err(TlsError::Io {
            what: "local CA certificate",
            path: path.display().to_string(),
            source,
        }),
    }
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

#[cfg(test)]
mod tests;
