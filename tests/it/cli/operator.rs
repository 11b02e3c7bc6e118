//! Operator commands against fake upstreams: `check` (OK lines, or FAILED lines with the
//! authorization-code hint), `send-test`, and `healthcheck` against a running proxy.

use super::cli;
use crate::pop3::qq_opts;
use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::config::{Account, ConfigBuilder};
use crate::support::imap::{FakeImap, ImapOpts};
use crate::support::pop3::FakePop3;
use crate::support::proxy::Proxy;
use crate::support::smtp::{self, FakeSmtp, SmtpOptions, DEFAULT_CODE, DEFAULT_USER};
use crate::support::upstream::{Fault, TlsMode};

/// The three fakes an account's `check` logs into.
struct Upstreams {
    smtp: FakeSmtp,
    imap: FakeImap,
    pop3: FakePop3,
}

async fn upstreams(ca: &TestCa, reject: bool) -> Upstreams {
    let mut s = SmtpOptions::implicit(ca);
    let mut i = ImapOpts::default()
        .tls(TlsMode::Implicit(ca.server_config(UPSTREAM_NAMES)))
        .user(DEFAULT_USER)
        .code(DEFAULT_CODE);
    let mut p = qq_opts(ca);
    if reject {
        s = s.fault(smtp::Fault::RejectAuth);
        i = i.fault(Fault::RejectLogin);
        p = p.fault(Fault::RejectLogin);
    }
    Upstreams {
        smtp: FakeSmtp::start(s),
        imap: FakeImap::start(i).await,
        pop3: FakePop3::start(p).await,
    }
}

/// A config for one account using all three fakes, written to `<builder dir>/config.toml`.
fn config(ca: &TestCa, up: &Upstreams) -> (ConfigBuilder, String) {
    let b = ConfigBuilder::new(ca)
        .account(
            Account::new("main")
                .smtp_fake(&up.smtp)
                .imap(format!("127.0.0.1:{}", up.imap.addr().port()))
                .pop3(format!("127.0.0.1:{}", up.pop3.addr().port())),
        )
        .user("printer", "Pr1nter-Pa55", "main")
        .smtp("optional");
    let path = b.dir().join("config.toml");
    std::fs::write(&path, b.build()).expect("write config");
    (b, path.display().to_string())
}

fn env_of(b: &ConfigBuilder) -> Vec<(String, String)> {
    b.env()
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The `check` line for `service` (`smtp`, `imap`, `pop3`).
fn line_for<'a>(stdout: &'a str, service: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(service))
        .unwrap_or_else(|| panic!("no {service} line in:\n{stdout}"))
}

#[tokio::test]
async fn check_logs_into_every_upstream_and_reports_ok() {
    let ca = TestCa::new("cli check CA");
    let up = upstreams(&ca, false).await;
    let (b, path) = config(&ca, &up);
    let env = env_of(&b);
    let ran = cli(
        &["check", "--config", &path],
        &borrowed(&env),
        None,
        b.dir(),
    )
    .await
    .success();
    for (service, port) in [
        ("smtp", up.smtp.addr().port()),
        ("imap", up.imap.addr().port()),
        ("pop3", up.pop3.addr().port()),
    ] {
        let line = line_for(&ran.stdout, service);
        assert!(line.starts_with("main"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.trim_end().ends_with("OK"), "{line}");
    }
    assert_eq!(up.smtp.auth_attempts().len(), 1);
    assert!(up.smtp.auth_attempts()[0].accepted);
    assert_eq!(up.pop3.logins().len(), 1);
    assert!(up.pop3.logins()[0].accepted);
    assert!(!ran.stdout.contains(DEFAULT_CODE) && !ran.stderr.contains(DEFAULT_CODE));
}

#[tokio::test]
async fn check_reports_a_rejected_code_with_the_hint_and_fails() {
    let ca = TestCa::new("cli check reject CA");
    let up = upstreams(&ca, true).await;
    let (b, path) = config(&ca, &up);
    let env = env_of(&b);
    let ran = cli(
        &["check", "--config", &path],
        &borrowed(&env),
        None,
        b.dir(),
    )
    .await
    .failure();
    for service in ["smtp", "imap", "pop3"] {
        let line = line_for(&ran.stdout, service);
        assert!(line.contains("FAILED"), "{line}");
        assert!(
            line.contains("the authorization code is wrong or was revoked"),
            "{service} line lacks the hint: {line}"
        );
    }
    assert!(ran.stderr.contains("3 check(s) failed"), "{}", ran.stderr);
    assert!(!ran.stdout.contains(DEFAULT_CODE) && !ran.stderr.contains(DEFAULT_CODE));
}

/// Issue 19 item 8: `starttls://` aimed at an implicit-TLS port (the server waits for a
/// ClientHello, the client for a greeting) ends within the timeout, with the hint.
#[tokio::test]
async fn check_never_hangs_on_starttls_aimed_at_an_implicit_port() {
    let ca = TestCa::new("cli check silent CA");
    let up = upstreams(&ca, false).await;
    let b = ConfigBuilder::new(&ca)
        .account(
            Account::new("main")
                .smtp(format!("starttls://127.0.0.1:{}", up.smtp.addr().port()))
                .imap(format!("starttls://127.0.0.1:{}", up.imap.addr().port()))
                .pop3(""),
        )
        .user("printer", "Pr1nter-Pa55", "main")
        .smtp("optional")
        .limit("upstream_timeout", "\"2s\"");
    let path = b.dir().join("config.toml");
    std::fs::write(&path, b.build()).expect("write config");
    let path = path.display().to_string();
    let env = env_of(&b);
    // `cli` gives up after its own deadline (60 s): a hang fails the test.
    let ran = cli(
        &["check", "--config", &path],
        &borrowed(&env),
        None,
        b.dir(),
    )
    .await
    .failure();
    for service in ["smtp", "imap"] {
        let line = line_for(&ran.stdout, service);
        assert!(line.contains("FAILED"), "{line}");
        assert!(
            line.contains("tls://host:port") && line.contains("587"),
            "{service} line lacks the hint: {line}"
        );
    }
    assert!(
        !ran.stdout.contains("see the message above"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn send_test_delivers_through_the_account() {
    let ca = TestCa::new("cli send-test CA");
    let up = upstreams(&ca, false).await;
    let (b, path) = config(&ca, &up);
    let env = env_of(&b);
    let args = ["send-test", "--to", "friend@example.com", "--config", &path];
    let ran = cli(&args, &borrowed(&env), None, b.dir()).await.success();
    assert!(ran.stdout.starts_with("sent: 250"), "{}", ran.stdout);
    let got = up.smtp.wait_messages(1, super::WAIT).await;
    assert_eq!(got[0].mail_from, DEFAULT_USER);
    assert_eq!(got[0].rcpt_to, ["friend@example.com"]);
    assert_eq!(got[0].auth_password, DEFAULT_CODE);
    let data = String::from_utf8_lossy(&got[0].data);
    assert!(
        data.contains("Subject: qqmail-proxy test message"),
        "{data}"
    );

    let args = ["send-test", "--to", "not an address", "--config", &path];
    let ran = cli(&args, &borrowed(&env), None, b.dir()).await.failure();
    assert!(ran.stderr.contains("--to"), "{}", ran.stderr);
    assert_eq!(up.smtp.messages().len(), 1);
}

#[tokio::test]
async fn healthcheck_follows_the_running_proxy() {
    let ca = TestCa::new("cli healthcheck CA");
    let up = upstreams(&ca, false).await;
    let (b, path) = config(&ca, &up);
    let proxy = Proxy::start_built(&b, &[]).await;
    // The config says 127.0.0.1:0; point healthcheck at the port the proxy really bound.
    let addr = proxy.smtp_addr().to_string();
    let mut env = env_of(&b);
    env.push(("QQMAIL_SMTP_LISTEN".into(), addr.clone()));
    let ran = cli(
        &["healthcheck", "--config", &path],
        &borrowed(&env),
        None,
        b.dir(),
    )
    .await
    .success();
    assert!(
        ran.stdout.contains(&format!("ok: {addr} answered")),
        "{}",
        ran.stdout
    );
    // The probe's session is logged at debug only (Docker probes every 30 s).
    proxy
        .wait_for_log("session end", std::time::Duration::from_secs(10))
        .await;
    let ends: Vec<_> = proxy
        .events()
        .into_iter()
        .filter(|e| e.field("message") == Some("session end"))
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0].level.as_deref(),
        Some("DEBUG"),
        "{:?}",
        ends[0].fields
    );

    assert!(proxy.terminate().await.success());
    let ran = cli(
        &["healthcheck", "--config", &path],
        &borrowed(&env),
        None,
        b.dir(),
    )
    .await
    .failure();
    assert!(
        ran.stderr.contains(&format!("connecting to {addr}")),
        "{}",
        ran.stderr
    );
    proxy.assert_no_secret(&[DEFAULT_CODE, "Pr1nter-Pa55"]);
}
