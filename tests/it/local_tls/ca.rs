//! The local CA: a verifying client that trusts only the exported CA logs in over STARTTLS
//! by the machine's host name (not a loopback name); the generated leaf is RSA and usable
//! by a client restricted to RSA signatures; key files are private; a certificate
//! generated before the CA existed is kept, and check-config says how to replace it.

use std::os::unix::fs::PermissionsExt;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::tools::{python, require, run};

/// STARTTLS with a default (verifying) context, checking the certificate for `name`
/// while connected to 127.0.0.1: a client that reached the gateway by that name.
const STARTTLS_LOGIN: &str = r#"
import smtplib, socket, ssl, sys
port, cafile, user, password, name = sys.argv[1:6]
name = name or socket.gethostname()
ctx = ssl.create_default_context(cafile=cafile)
s = smtplib.SMTP(timeout=20)
s.connect("127.0.0.1", int(port))
s._host = name  # what starttls() verifies the certificate against
s.ehlo("python.test")
try:
    s.starttls(context=ctx)
except ssl.SSLError as e:
    print("TLS-FAILED", e)
    sys.exit(0)
print("NAME", name, "VERSION", s.sock.version())
s.ehlo("python.test")
code, _ = s.login(user, password)
print("AUTH", code)
s.quit()
"#;

pub(super) async fn starttls_login(port: u16, cafile: &Path, name: &str) -> String {
    let args: Vec<String> = vec![
        port.to_string(),
        cafile.display().to_string(),
        USER.into(),
        PASSWORD.into(),
        name.into(),
    ];
    let out = python(STARTTLS_LOGIN, &args, WAIT).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn exported_ca_lets_a_verifying_client_log_in_by_host_name() {
    let (ca, smtp, builder) = generated_cert_setup();
    let proxy = Proxy::start_built(&builder, &[]).await;
    let (ca_cert, ca_key) = ca_files(&builder);
    let (_, leaf_key) = builder.tls_paths();
    assert_eq!(mode(&ca_key), 0o600, "CA key mode");
    assert_eq!(mode(&leaf_key), 0o600, "leaf key mode");
    let dir = tempfile::tempdir().expect("tempdir");
    let exported = export_ca(&builder, dir.path(), "ca.pem");
    assert_eq!(
        std::fs::read(&exported).ok(),
        std::fs::read(&ca_cert).ok(),
        "ca export prints the CA certificate"
    );
    let exported_pem = std::fs::read_to_string(&exported).expect("exported");
    assert!(!exported_pem.contains("PRIVATE KEY"), "{exported_pem}");
    // DER: the same certificate, raw (Windows' .cer import).
    let der = cli(&builder, &["ca", "export", "--format", "der"]);
    assert!(der.status.success());
    let from_pem = CertificateDer::from_pem_slice(exported_pem.as_bytes()).expect("PEM");
    assert_eq!(der.stdout, from_pem.as_ref());

    // By the machine's host name ("" = socket.gethostname()), then by localhost.
    for name in ["", "localhost"] {
        let out = starttls_login(proxy.smtp_addr().port(), &exported, name).await;
        assert!(out.contains("AUTH 235"), "{name:?}: {out}");
        assert!(!out.contains("NAME localhost\n") || name == "localhost");
    }
    // A CA the proxy's leaf does not chain to is refused: the check above is real.
    let out = starttls_login(proxy.smtp_addr().port(), ca.pem_path(), "").await;
    assert!(out.contains("TLS-FAILED"), "{out}");
    assert!(out.contains("CERTIFICATE_VERIFY_FAILED"), "{out}");
    smtp.wait_auth_attempts(2, WAIT).await;
    proxy.assert_no_secret(&secrets());
}

/// `openssl s_client -tls1_2 -sigalgs RSA+SHA256`, as an old stack that signs and
/// verifies with RSA only: completes the handshake with the default (RSA) generated
/// certificate, and fails with an ECDSA one (the certificate generated before issue 13).
#[tokio::test]
async fn a_client_limited_to_rsa_signatures_completes_the_handshake() {
    let openssl = require("openssl", "openssl");
    for (key_type, works) in [(None, true), (Some("ecdsa"), false)] {
        let (_ca, _smtp, mut builder) = generated_cert_setup();
        if let Some(k) = key_type {
            builder = builder.tls_line(&format!("key_type = \"{k}\""));
        }
        let proxy = Proxy::start_built(&builder, &[]).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let exported = export_ca(&builder, dir.path(), "ca.pem");
        let args: Vec<String> = [
            "s_client",
            "-connect",
            &proxy.smtp_addr().to_string(),
            "-starttls",
            "smtp",
            "-tls1_2",
            "-sigalgs",
            "RSA+SHA256",
            "-CAfile",
            &exported.display().to_string(),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = run(openssl.clone(), args, None, WAIT).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if works {
            assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
            assert!(text.contains("Server public key is 2048 bit"), "{text}");
            assert!(text.contains("Peer signature type: RSA"), "{text}");
        } else {
            // OpenSSL prints "Verify return code: 0" even when no certificate came.
            assert!(text.contains("no peer certificate available"), "{text}");
            assert!(text.contains("handshake failure"), "{text}");
        }
        drop(proxy);
    }
}

/// A self-signed ECDSA certificate with the name the proxy gave generated certificates
/// before issue 13, written where the builder's `[tls]` points.
fn write_legacy_cert(builder: &ConfigBuilder) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "qqmail-proxy local certificate");
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).expect("self-signed");
    let (cert_path, key_path) = builder.tls_paths();
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
}

#[tokio::test]
async fn a_certificate_generated_before_the_ca_is_kept_and_check_config_says_how_to_replace_it() {
    let (_ca, _smtp, builder) = generated_cert_setup();
    let (cert, key) = write_legacy_cert(&builder);
    let (cert_path, key_path) = builder.tls_paths();
    let check = cli(&builder, &["check-config"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{stdout}");
    assert!(
        stdout.contains("was generated by an older version (self-signed ECDSA, no local CA)"),
        "{stdout}"
    );
    let delete = format!(
        "delete {} and {}, and start it again",
        cert_path.display(),
        key_path.display()
    );
    assert!(stdout.contains(&delete), "{stdout}");
    let proxy = Proxy::start_built(&builder, &[]).await;
    assert_eq!(
        std::fs::read(&cert_path).ok(),
        Some(cert),
        "certificate kept"
    );
    assert_eq!(std::fs::read(&key_path).ok(), Some(key), "key kept");
    let (ca_cert, _) = ca_files(&builder);
    assert!(!ca_cert.exists(), "no CA for a leaf it did not sign");
    let export = cli(&builder, &["ca", "export"]);
    assert!(!export.status.success());
    assert!(
        String::from_utf8_lossy(&export.stderr).contains(&delete),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    drop(proxy);
    // Deleted as told: the next start generates an RSA leaf signed by a new CA.
    std::fs::remove_file(&cert_path).expect("rm cert");
    std::fs::remove_file(&key_path).expect("rm key");
    let proxy = Proxy::start_built(&builder, &[]).await;
    assert!(ca_cert.exists(), "CA generated");
    let check = cli(&builder, &["check-config"]);
    assert!(!String::from_utf8_lossy(&check.stdout).contains("older version"));
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn a_renewed_leaf_is_signed_by_the_same_ca() {
    let (_ca, _smtp, builder) = generated_cert_setup();
    let proxy = Proxy::start_built(&builder, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let exported = export_ca(&builder, dir.path(), "ca.pem");
    drop(proxy);
    let (cert_path, key_path) = builder.tls_paths();
    let first = std::fs::read(&cert_path).expect("leaf");
    std::fs::remove_file(&cert_path).expect("rm cert");
    std::fs::remove_file(&key_path).expect("rm key");
    let proxy = Proxy::start_built(&builder, &[]).await;
    assert_ne!(std::fs::read(&cert_path).ok(), Some(first), "a new leaf");
    let out = starttls_login(proxy.smtp_addr().port(), &exported, "localhost").await;
    assert!(
        out.contains("AUTH 235"),
        "the CA exported before still verifies: {out}"
    );
}
