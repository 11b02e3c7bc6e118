//! Files and configuration warnings: the generated local key is private (0600) and
//! kept across restarts, `check-config` warns about plaintext on a non-loopback
//! listener without binding it, and (issue 16 item 7) the state directory is created
//! 0700 whatever the umask while a state file or directory another user could have
//! written stops the start with the path and the fix.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use super::*;
use crate::support::proxy::{Launch, Proxy};
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

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One account, no `[[user]]` (so the login is generated into `state_dir/local-users`),
/// STARTTLS offered (so the key is generated).
fn generated_login_builder(ca: &TestCa, smtp: &FakeSmtp) -> ConfigBuilder {
    ConfigBuilder::new(ca)
        .account(Account::new("main").smtp_fake(smtp))
        .smtp("optional")
}

#[tokio::test]
async fn state_dir_is_private_under_umask_000() {
    let ca = TestCa::new("umask CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = generated_login_builder(&ca, &smtp);
    let state = builder.dir().join("state");
    assert!(!state.exists(), "the builder must not create it");
    // `umask 000`: every mode the proxy does not set itself comes out world-writable.
    let launch = Launch::from_builder(&builder).program(
        "sh",
        &[
            "-c",
            "umask 000 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_qqmail-proxy"),
        ],
    );
    let proxy = Proxy::launch(launch).await;
    assert_eq!(mode(&state), 0o700, "state_dir");
    assert_eq!(mode(&state.join("local-users")), 0o600, "local-users");
    assert_eq!(mode(&builder.dir().join("local-key.pem")), 0o600, "key");
    proxy.terminate().await;
    proxy.assert_no_secret(&[DEFAULT_CODE]);
}

#[tokio::test]
async fn untrusted_state_is_refused_with_the_fix() {
    let ca = TestCa::new("state trust CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = generated_login_builder(&ca, &smtp);
    let first = Proxy::start_built(&builder, &[]).await;
    first.terminate().await;
    let state = builder.dir().join("state");
    let users = state.join("local-users");
    let key = builder.dir().join("local-key.pem");
    assert!(users.exists() && key.exists());

    // (path, mode planted, mode restored, the fix the error must name)
    let writable = [
        (&users, 0o666, 0o600, "chmod 600"),
        (&users, 0o620, 0o600, "chmod 600"),
        (&state, 0o777, 0o700, "chmod 700"),
        (&state, 0o770, 0o700, "chmod 700"),
        (&key, 0o646, 0o600, "chmod 600"),
    ];
    for (path, planted, restored, fix) in writable {
        chmod(path, planted);
        let (_, logs) = Proxy::launch_expect_failure(Launch::from_builder(&builder)).await;
        let want = format!("`{fix} {}`", path.display());
        assert!(
            logs.contains("writable by") && logs.contains(&want),
            "mode {planted:o} on {}: {want} missing in:\n{logs}",
            path.display()
        );
        chmod(path, restored);
    }

    // A file owned by another non-root user (CI runs as root: chown to nobody).
    let nobody = 65534;
    if let Err(e) = std::os::unix::fs::chown(&users, Some(nobody), None) {
        panic!("this test must run as root (it chowns local-users to nobody): {e}");
    }
    let (_, logs) = Proxy::launch_expect_failure(Launch::from_builder(&builder)).await;
    let want = format!("owned by uid {nobody}");
    assert!(
        logs.contains(&want)
            && logs.contains("chown")
            && logs.contains(&users.display().to_string()),
        "{want} / chown missing in:\n{logs}"
    );
    let me = std::fs::metadata(&state).expect("state").uid();
    std::os::unix::fs::chown(&users, Some(me), None).expect("chown back");

    // Restored: the same state is trusted again.
    let again = Proxy::start_built(&builder, &[]).await;
    again.terminate().await;
}
