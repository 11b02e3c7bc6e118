//! `serve` as a process: the zero-config start from the environment (generated password,
//! reused on the next start, replaced by `reset-password`), SIGTERM, and SIGHUP reloads.

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{cli, launch_with_args, user_toml, value_after, Reloadable, WAIT};
use crate::pop3::{builder as pop3_builder, qq_opts, server_of, Raw, PASSWORD, USER};
use crate::support::ca::TestCa;
use crate::support::pop3::FakePop3;
use crate::support::proxy::{secret_forms, Launch, Proxy};
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE, DEFAULT_USER};

/// Sends one message through the proxy's SMTP listener as `user`/`password`.
async fn send_as(proxy: &Proxy, user: &str, password: &str) -> Result<(), String> {
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(proxy.smtp_addr().port())
        .credentials(Credentials::new(user.into(), password.into()))
        .timeout(Some(WAIT))
        .build();
    let message = lettre::Message::builder()
        .from("scanner@printer.local".parse().expect("from"))
        .to("friend@example.com".parse().expect("to"))
        .subject("scan")
        .body("page 1\n".to_string())
        .expect("message");
    mailer
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Asserts that `password` appears in no form in the proxy's log (stderr); stdout is
/// where a generated password is shown on purpose.
fn assert_not_logged(proxy: &Proxy, password: &str) {
    let logs = proxy.logs();
    for (form, text) in secret_forms(password, &[DEFAULT_USER]) {
        assert!(
            !logs.contains(&text),
            "the generated password is in the log as {form}"
        );
    }
}

#[tokio::test]
async fn zero_config_generates_a_password_once_and_reset_replaces_it() {
    let ca = TestCa::new("cli zero-config CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let state = tempfile::tempdir().expect("state dir");
    let state_dir = state.path().display().to_string();
    let server = smtp.config_server();
    let ca_file = ca.pem_path().display().to_string();
    let env = [
        ("QQMAIL_EMAIL", DEFAULT_USER),
        ("QQMAIL_AUTH_CODE", DEFAULT_CODE),
        ("QQMAIL_STATE_DIR", state_dir.as_str()),
        ("QQMAIL_SMTP_LISTEN", "127.0.0.1:0"),
        ("QQMAIL_IMAP_LISTEN", "127.0.0.1:0"),
        ("QQMAIL_POP3_LISTEN", "127.0.0.1:0"),
        ("QQMAIL_SMTP_SERVER", server.as_str()),
        ("QQMAIL_CA_FILE", ca_file.as_str()),
    ];
    let start = || Proxy::launch(launch_with_args(&["serve"]).env(&env));

    let proxy = start().await;
    for protocol in ["smtp", "imap", "pop3"] {
        assert_eq!(proxy.readiness().addrs(protocol).len(), 1, "{protocol}");
    }
    let line = proxy.wait_for_stdout("password:", WAIT).await;
    let first = value_after(&line, "password:").expect("password");
    assert!(proxy
        .stdout()
        .contains(&format!("user:     {DEFAULT_USER}")));
    send_as(&proxy, DEFAULT_USER, &first)
        .await
        .expect("the generated password logs in");
    let got = smtp.wait_messages(1, WAIT).await;
    assert_eq!(got[0].auth_password, DEFAULT_CODE);
    assert!(send_as(&proxy, DEFAULT_USER, "not-it-at-all")
        .await
        .is_err());
    assert!(proxy.terminate().await.success());
    assert_eq!(
        proxy.stdout().matches("password:").count(),
        1,
        "{}",
        proxy.stdout()
    );
    assert_not_logged(&proxy, &first);
    proxy.assert_no_secret(&[DEFAULT_CODE]);
    let first_stdout = proxy.stdout();
    let users_file = state.path().join("local-users");
    let stored = std::fs::read_to_string(&users_file).expect("local-users written");
    assert!(
        !stored.contains(&first) && stored.contains("$argon2"),
        "{stored}"
    );

    // The second start reuses the stored hash and prints nothing.
    let proxy = start().await;
    send_as(&proxy, DEFAULT_USER, &first)
        .await
        .expect("the same password still logs in");
    smtp.wait_messages(2, WAIT).await;
    assert!(proxy.terminate().await.success());
    assert!(!proxy.stdout().contains("password:"), "{}", proxy.stdout());
    assert_eq!(std::fs::read_to_string(&users_file).expect("kept"), stored);
    proxy.assert_no_secret(&[DEFAULT_CODE, &first]);

    // reset-password, run exactly as the banner printed it (its variables and nothing
    // else: no code), prints a new one; the next start takes it and refuses the old one.
    let printed = first_stdout
        .lines()
        .find_map(|l| l.split_once("Lost it? A new one: ").map(|(_, c)| c))
        .expect("the banner names the reset command")
        .split(" (from a checkout")
        .next()
        .expect("command")
        .to_string();
    let words: Vec<&str> = printed.split_whitespace().collect();
    let program = words
        .iter()
        .position(|w| *w == "qqmail-proxy")
        .unwrap_or_else(|| panic!("{printed}"));
    let vars: Vec<(&str, &str)> = words[..program]
        .iter()
        .map(|w| w.split_once('=').unwrap_or_else(|| panic!("{printed}")))
        .collect();
    let elsewhere = tempfile::tempdir().expect("another working directory");
    let ran = cli(&words[program + 1..], &vars, None, elsewhere.path())
        .await
        .success();
    let second = value_after(&ran.stdout, "password:").expect("a new password");
    assert_ne!(second, first);
    assert!(ran.stdout.contains("SIGHUP"), "{}", ran.stdout);
    let proxy = start().await;
    assert!(send_as(&proxy, DEFAULT_USER, &first).await.is_err());
    send_as(&proxy, DEFAULT_USER, &second)
        .await
        .expect("the reset password logs in");
    assert!(proxy.terminate().await.success());
    assert!(!proxy.stdout().contains("password:"), "{}", proxy.stdout());
    proxy.assert_no_secret(&[DEFAULT_CODE, &first, &second]);
}

#[tokio::test]
async fn sigterm_closes_waiting_clients_and_exits_zero() {
    let ca = TestCa::new("cli sigterm CA");
    let fake = FakePop3::start(qq_opts(&ca)).await;
    let b = pop3_builder(&ca, server_of(&fake));
    let proxy = Proxy::start_built(&b, &[]).await;
    let (mut waiting, _) = Raw::connect(proxy.pop3_addr()).await;
    assert!(waiting.cmd("CAPA").await.starts_with("+OK"));
    waiting.multi(WAIT).await;
    let status = proxy.terminate().await;
    assert!(status.success(), "{status}");
    let (rest, _) = waiting.until_closed().await;
    assert_eq!(rest, b"-ERR Server shutting down\r\n");
    let logs = proxy.logs();
    assert!(
        logs.contains("SIGTERM: shutting down") && logs.contains("stopped"),
        "{logs}"
    );
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD]);
}

/// Logs in over POP3 as `user`; returns the reply to PASS.
async fn pop3_login(proxy: &Proxy, user: &str, password: &str) -> String {
    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    assert!(raw.cmd(&format!("USER {user}")).await.starts_with("+OK"));
    let reply = raw.cmd(&format!("PASS {password}")).await;
    raw.send(b"QUIT\r\n").await;
    reply
}

#[tokio::test]
async fn sighup_reloads_the_config_and_keeps_it_when_the_new_one_is_bad() {
    let ca = TestCa::new("cli sighup CA");
    let fake = FakePop3::start(qq_opts(&ca)).await;
    let b = pop3_builder(&ca, server_of(&fake));
    let original = b.build();
    let reloadable = Reloadable::start(&b, &original).await;
    let proxy = &reloadable.proxy;

    const SCANNER_PASSWORD: &str = "Sc4nner-Pa55";
    let refused = pop3_login(proxy, "scanner", SCANNER_PASSWORD).await;
    assert_eq!(refused, "-ERR [AUTH] Invalid credentials\r\n");

    let scanner = user_toml("scanner", SCANNER_PASSWORD, "main");
    reloadable.reload(&format!("{original}{scanner}")).await;
    assert_eq!(
        pop3_login(proxy, "scanner", SCANNER_PASSWORD).await,
        "+OK Logged in\r\n"
    );

    let mark = reloadable.hup("[[account]\nthis is not TOML\n");
    let line = proxy.wait_for_log_since(mark, "reload failed", WAIT).await;
    assert!(
        line.contains("config.toml"),
        "the error names the file: {line}"
    );
    for (user, password) in [(USER, PASSWORD), ("scanner", SCANNER_PASSWORD)] {
        assert_eq!(
            pop3_login(proxy, user, password).await,
            "+OK Logged in\r\n",
            "{user} after a failed reload"
        );
    }
    assert!(
        proxy.exit_status().is_none(),
        "a bad reload must not stop the proxy"
    );
    assert!(proxy.terminate().await.success());
    proxy.assert_no_secret_for(&[DEFAULT_CODE, PASSWORD, SCANNER_PASSWORD], &["scanner"]);
}

/// Issue 19, wall 2: `config/example.toml` copied as it is starts from any working
/// directory (systemd's `/`, a read-only container) and keeps everything it generates
/// beside the config file, never in the working directory.
#[tokio::test]
async fn the_example_config_keeps_its_state_beside_itself() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
            .expect("config/example.toml");
    let cwd = tempfile::tempdir().expect("cwd");
    let launch = Launch::new(&example).cwd(cwd.path()).env(&[
        ("QQMAIL_AUTH_CODE", DEFAULT_CODE),
        ("QQMAIL_SMTP_LISTEN", "127.0.0.1:0"),
        ("QQMAIL_IMAP_LISTEN", "127.0.0.1:0"),
        ("QQMAIL_POP3_LISTEN", "127.0.0.1:0"),
    ]);
    let proxy = Proxy::launch(launch).await;
    let state = proxy.config_dir().join("certs");
    for file in ["local-cert.pem", "local-key.pem", "local-users"] {
        assert!(state.join(file).is_file(), "{file} is not in {state:?}");
    }
    let left: Vec<_> = std::fs::read_dir(cwd.path()).expect("cwd").collect();
    assert!(
        left.is_empty(),
        "the proxy wrote into its working directory: {left:?}"
    );
}

/// Issue 19 item 7: a generated login belongs to the address it was made for. When
/// QQMAIL_EMAIL changes, the old login is retired (logged) and a new one printed; a config
/// with its own [[user]] entries says the generated file is not used.
#[tokio::test]
async fn a_generated_login_is_tied_to_its_address() {
    let state = tempfile::tempdir().expect("state dir");
    let state_dir = state.path().display().to_string();
    let start = |email: &'static str| {
        let env = [
            ("QQMAIL_EMAIL", email),
            ("QQMAIL_AUTH_CODE", DEFAULT_CODE),
            ("QQMAIL_STATE_DIR", state_dir.as_str()),
            ("QQMAIL_SMTP_LISTEN", "127.0.0.1:0"),
            ("QQMAIL_IMAP_LISTEN", ""),
            ("QQMAIL_POP3_LISTEN", ""),
        ];
        Proxy::launch(launch_with_args(&["serve"]).env(&env))
    };
    let proxy = start("old@qq.com").await;
    proxy.wait_for_stdout("password:", WAIT).await;
    assert!(proxy.stdout().contains("user:     old@qq.com"));
    assert!(proxy.terminate().await.success());

    let proxy = start("new@qq.com").await;
    proxy.wait_for_stdout("password:", WAIT).await;
    assert!(
        proxy.stdout().contains("user:     new@qq.com"),
        "{}",
        proxy.stdout()
    );
    proxy
        .wait_for_log("\\\"old@qq.com\\\" was made for another address", WAIT)
        .await;
    assert!(proxy.terminate().await.success());
    let stored = std::fs::read_to_string(state.path().join("local-users")).expect("users");
    assert!(!stored.contains("old@qq.com"), "{stored}");

    // The same start again: nothing retired, nothing printed.
    let proxy = start("new@qq.com").await;
    assert!(proxy.terminate().await.success());
    assert!(!proxy.stdout().contains("password:"));
    assert!(!proxy.logs().contains("another address"));
}
