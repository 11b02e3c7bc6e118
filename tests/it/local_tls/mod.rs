//! Local TLS for legacy devices (issue 13): the local CA and its exported certificate, the
//! generated RSA leaf, and the verifying clients that must accept it; TLS 1.0/1.1 on the
//! local side (`old_tls`, legacy-tls builds) and never on the upstream side.
//! Shared here: the usual one-account SMTP setup and `qqmail-proxy <args>` runs.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE};

mod auto;
mod ca;
mod handshake_log;
mod implicit;
#[cfg(feature = "legacy-tls")]
mod old_tls;
mod upstream_unchanged;

/// The local user's password (distinctive, so a leak is findable).
pub const PASSWORD: &str = "Tls-Pr1nter-Pa55";
/// The local user's name.
pub const USER: &str = "printer";
/// How long an outside client may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// The secrets no log line may contain.
pub fn secrets() -> [&'static str; 2] {
    [DEFAULT_CODE, PASSWORD]
}

/// An implicit-TLS fake SMTP upstream and a config with one account on it, user
/// `printer`, `[smtp] starttls = "optional"` and a certificate left to the proxy to
/// generate (no `[tls]` file exists yet).
pub fn generated_cert_setup() -> (TestCa, FakeSmtp, ConfigBuilder) {
    let ca = TestCa::new("local-tls upstream CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp_fake(&smtp))
        .user(USER, PASSWORD, "main")
        .smtp("optional");
    (ca, smtp, builder)
}

/// Where the builder's `state_dir` keeps the local CA certificate and key.
pub fn ca_files(builder: &ConfigBuilder) -> (PathBuf, PathBuf) {
    let state = builder.dir().join("state");
    (state.join("local-ca.pem"), state.join("local-ca-key.pem"))
}

/// Runs `qqmail-proxy --config <builder's config> <args>` to completion.
pub fn cli(builder: &ConfigBuilder, args: &[&str]) -> Output {
    let path = builder.dir().join("cli-config.toml");
    std::fs::write(&path, builder.build()).expect("write config");
    std::process::Command::new(env!("CARGO_BIN_EXE_qqmail-proxy"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .envs(builder.env())
        .output()
        .expect("run qqmail-proxy")
}

/// `ca export` into `dir/name`, returning its path.
pub fn export_ca(builder: &ConfigBuilder, dir: &Path, name: &str) -> PathBuf {
    let out = cli(builder, &["ca", "export"]);
    assert!(
        out.status.success(),
        "ca export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).expect("write exported CA");
    path
}
