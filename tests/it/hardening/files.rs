//! Files and configuration warnings: the generated local key is private (0600) and
//! kept across restarts, and `check-config` warns about plaintext on a non-loopback
//! listener without binding it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

#[tokio::test]
async fn generated_key_is_private_and_reused() {
    let ca = TestCa::new("files CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = smtp_builder(&ca, &smtp).smtp("optional");
    let cert = builder.dir().join("local-cert.pem");
    let key = builder.dir().join("local-key.pem");
    assert!(
        !cert.exists() && !key.exists(),
        "the builder must not write them"
    );
    let proxy = Proxy::start_built(&builder, &[]).await;
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {:o}", mode & 0o777);
    assert!(std::fs::metadata(&cert).expect("cert file").len() > 0);
    let (cert_bytes, key_bytes) = (std::fs::read(&cert), std::fs::read(&key));
    proxy.terminate().await;
    proxy.assert_no_secret(&secrets());
    // A second start uses the same files.
    let again = Proxy::start_built(&builder, &[]).await;
    assert_eq!(
        std::fs::read(&cert).ok(),
        cert_bytes.ok(),
        "certificate regenerated"
    );
    assert_eq!(std::fs::read(&key).ok(), key_bytes.ok(), "key regenerated");
    again.assert_no_secret(&secrets());
}

#[test]
fn check_config_warns_about_plaintext_off_loopback() {
    let ca = TestCa::new("check-config CA");
    // Only written, never bound: check-config reads the config and exits.
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp("127.0.0.1:9"))
        .user(USER, PASSWORD, "main")
        .smtp("off")
        .listen("smtp", &["0.0.0.0:2525"])
        .imap("off")
        .listen("imap", &["127.0.0.1:1143"]);
    let path = builder.dir().join("config.toml");
    std::fs::write(&path, builder.build()).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_qqmail-proxy"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .envs(builder.env())
        .output()
        .expect("run check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let warning = "warning: [smtp] listens on a non-loopback address with starttls = \"off\": \
                   local passwords cross the network in the clear";
    assert!(stdout.contains(warning), "{stdout}\n{stderr}");
    // The loopback listener gets no such warning.
    assert!(!stdout.contains("[imap] listens"), "{stdout}");
    for secret in secrets() {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}
