//! One-shot commands that need no upstream: `--version`, `--help`, `providers`,
//! `hash-password`, `init`, `check-config`, and start-up config errors.

use argon2::{Argon2, PasswordHash, PasswordVerifier};

use super::{cli, value_after};
use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::proxy::Proxy;
use crate::support::smtp::DEFAULT_CODE;

fn verifies(password: &str, hash: &str) -> bool {
    let parsed = PasswordHash::new(hash).unwrap_or_else(|e| panic!("{hash:?} is not PHC: {e}"));
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[tokio::test]
async fn version_help_and_providers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ran = cli(&["--version"], &[], None, tmp.path()).await.success();
    assert_eq!(
        ran.stdout.trim(),
        format!("qqmail-proxy {}", env!("CARGO_PKG_VERSION"))
    );

    let ran = cli(&["--help"], &[], None, tmp.path()).await.success();
    for needle in [
        "Examples:",
        "QQMAIL_EMAIL=",
        "hash-password",
        "serve",
        "check-config",
    ] {
        assert!(
            ran.stdout.contains(needle),
            "--help lacks {needle:?}:\n{}",
            ran.stdout
        );
    }

    let ran = cli(&["providers"], &[], None, tmp.path()).await.success();
    for needle in [
        "smtp.exmail.qq.com:465",
        "starttls://smtp.mail.me.com:587",
        "pop.qq.com:995",
        "imap.163.com:993",
    ] {
        assert!(
            ran.stdout.contains(needle),
            "providers lacks {needle:?}:\n{}",
            ran.stdout
        );
    }
    // A typo in a subcommand is a usage error, not a silent start.
    let ran = cli(&["serv"], &[], None, tmp.path()).await.failure();
    assert!(ran.stderr.contains("serve"), "{}", ran.stderr);
}

#[tokio::test]
async fn hash_password_reads_stdin_and_verifies_with_argon2() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ran = cli(&["hash-password"], &[], Some(b"Pr1nter-Pa55\n"), tmp.path())
        .await
        .success();
    let hash = ran.stdout.trim();
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.stdout);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verifies("Pr1nter-Pa55", hash), "the hash does not verify");
    assert!(
        !verifies("Pr1nter-Pa55\n", hash),
        "the newline must not be hashed"
    );
    assert!(!verifies("Pr1nter-Pa56", hash));
    assert!(!ran.stderr.contains("Pr1nter"), "{}", ran.stderr);

    for empty in [&b""[..], b"\n", b"\r\n"] {
        let ran = cli(&["hash-password"], &[], Some(empty), tmp.path())
            .await
            .failure();
        assert!(
            ran.stderr.contains("no password on stdin"),
            "{}",
            ran.stderr
        );
        assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    }
}

/// Drives `hash-password` on a pseudo-terminal: prompts, answers, and returns everything
/// the terminal showed (echo included) and the exit status.
const PTY_DRIVER: &str = r#"
import os, pty, signal, sys
signal.alarm(30)  # a hang fails the test instead of hanging it
bin, first, second = sys.argv[1], sys.argv[2], sys.argv[3]
pid, fd = pty.fork()
if pid == 0:
    os.execv(bin, [bin, "hash-password"])
seen = b""
def until(needle):
    global seen
    while needle not in seen:
        chunk = os.read(fd, 1024)
        if not chunk:
            raise SystemExit("the program ended before showing %r: %r" % (needle, seen))
        seen += chunk
until(b"Password: ")
os.write(fd, first.encode() + b"\n")
until(b"Again: ")
os.write(fd, second.encode() + b"\n")
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// Issue 19 item 13: on a terminal, `hash-password` asks twice and echoes nothing.
#[tokio::test]
async fn hash_password_on_a_terminal_prompts_without_echo() {
    let run = |first: &str, second: &str| {
        std::process::Command::new("python3")
            .args(["-c", PTY_DRIVER, super::BIN, first, second])
            .output()
            .expect("python3 (apt-get install python3) to drive a pseudo-terminal")
    };
    let out = run("Pr1nter-Pa55", "Pr1nter-Pa55");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{screen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !screen.contains("Pr1nter-Pa55"),
        "the password was echoed:\n{screen}"
    );
    let hash = screen
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash on the terminal:\n{screen}"));
    assert!(verifies("Pr1nter-Pa55", hash));

    let out = run("Pr1nter-Pa55", "Pr1nter-Pa56");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{screen}");
    assert!(
        screen.contains("differ") && !screen.contains("$argon2"),
        "{screen}"
    );
}

#[tokio::test]
async fn init_writes_a_valid_config_once_and_prints_the_password_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("conf").join("qqmail-proxy.toml");
    let out_arg = out.display().to_string();
    let init = ["init", "--email", "12345@qq.com", "--output", &out_arg];
    let ran = cli(&init, &[], None, tmp.path()).await.success();
    let password = value_after(&ran.stdout, "password:").expect("a password line");
    assert!(password.len() >= 12, "{password:?}");
    assert_eq!(ran.stdout.matches(&password).count(), 1, "{}", ran.stdout);
    let text = std::fs::read_to_string(&out).expect("init wrote the file");
    assert!(
        !text.contains(&password),
        "the file holds the password itself"
    );
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("password_hash = "))
        .expect("a password_hash line")
        .trim_matches('"');
    assert!(
        verifies(&password, hash),
        "printed password does not match the hash"
    );

    // check-config accepts it, given the code it names.
    let code_env = [("QQMAIL_AUTH_CODE", DEFAULT_CODE)];
    let ran = cli(
        &["check-config", "--config", &out_arg],
        &code_env,
        None,
        tmp.path(),
    )
    .await
    .success();
    assert!(ran.stdout.contains("configuration OK"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains(
            "[[user]]\nname = \"printer\"\npassword_hash = \"***\"  # argon2\naccount = \"main\""
        ),
        "{}",
        ran.stdout
    );

    // QQMAIL_CONFIG names the file as --config does.
    let ran = cli(
        &["check-config"],
        &[
            ("QQMAIL_AUTH_CODE", DEFAULT_CODE),
            ("QQMAIL_CONFIG", &out_arg),
        ],
        None,
        tmp.path(),
    )
    .await
    .success();
    assert!(
        ran.stdout.contains(
            "[[user]]\nname = \"printer\"\npassword_hash = \"***\"  # argon2\naccount = \"main\""
        ),
        "{}",
        ran.stdout
    );

    // No overwrite without --force.
    let ran = cli(&init, &[], None, tmp.path()).await.failure();
    assert!(ran.stderr.contains("--force"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("password:"), "{}", ran.stdout);
    assert_eq!(std::fs::read_to_string(&out).expect("still there"), text);

    let mut forced = init.to_vec();
    forced.push("--force");
    let ran = cli(&forced, &[], None, tmp.path()).await.success();
    let second = value_after(&ran.stdout, "password:").expect("a new password");
    assert_ne!(second, password);
    assert_ne!(std::fs::read_to_string(&out).expect("rewritten"), text);

    let ran = cli(
        &[
            "init",
            "--email",
            "a@b.example",
            "--provider",
            "hotmail",
            "--output",
            "x.toml",
        ],
        &[],
        None,
        tmp.path(),
    )
    .await
    .failure();
    assert!(ran.stderr.contains("unknown provider") && ran.stderr.contains("exmail"));
    assert!(!tmp.path().join("x.toml").exists());

    // An address check-config would refuse is refused before anything is written.
    for email in ["not-an-address", "a\"b@qq.com"] {
        let ran = cli(
            &["init", "--email", email, "--output", "y.toml"],
            &[],
            None,
            tmp.path(),
        )
        .await
        .failure();
        assert!(ran.stderr.contains("nothing written"), "{}", ran.stderr);
        assert!(!ran.stdout.contains("password:"), "{}", ran.stdout);
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("tmp")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with('y'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[tokio::test]
async fn check_config_masks_the_code_and_hashes() {
    let ca = TestCa::new("cli check-config CA");
    let b = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp("127.0.0.1:4650"))
        .user("printer", "Pr1nter-Pa55", "main")
        .smtp("optional");
    let ran = check_config(&b).await;
    assert!(ran.stdout.contains("configuration OK"), "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("# authorization code: *** (16 characters"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("smtp_server = \"127.0.0.1:4650\""),
        "{}",
        ran.stdout
    );
    // The output is the config file's own language: it parses with the config's own
    // parser, which refuses unknown keys, so every key printed is a real key.
    let without_warnings: String = ran
        .stdout
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Err(e) = qqmail_proxy::config::parse(&without_warnings) {
        panic!("check-config's output is not a config: {e}\n{}", ran.stdout);
    }
    assert!(!ran.stdout.contains("Limits {"), "{}", ran.stdout);
    assert!(
        !ran.stdout.contains(DEFAULT_CODE),
        "the code leaked:\n{}",
        ran.stdout
    );
    let hash = &b.users()[0].password_hash;
    assert!(
        !ran.stdout.contains(hash.as_str()),
        "the hash is shown:\n{}",
        ran.stdout
    );

    // Zero-config: the environment alone, with the default listeners.
    let zero = [
        ("QQMAIL_EMAIL", "12345@qq.com"),
        ("QQMAIL_AUTH_CODE", DEFAULT_CODE),
    ];
    let ran = cli(&["check-config"], &zero, None, b.dir()).await.success();
    for needle in [
        "127.0.0.1:2525",
        "127.0.0.1:1143",
        "127.0.0.1:1110",
        "# [[user]]: none configured",
    ] {
        assert!(
            ran.stdout.contains(needle),
            "lacks {needle:?}:\n{}",
            ran.stdout
        );
    }
    assert!(!ran.stdout.contains(DEFAULT_CODE));

    // A config error is an exit 1 naming the key, on stderr.
    let ran = cli(
        &["check-config"],
        &[("QQMAIL_AUTH_CODE", DEFAULT_CODE)],
        None,
        b.dir(),
    )
    .await
    .failure();
    assert!(ran.stderr.contains("QQMAIL_EMAIL"), "{}", ran.stderr);
}

/// Writes `b`'s config to its directory and runs `check-config --config` on it with the
/// builder's environment; it must succeed.
async fn check_config(b: &ConfigBuilder) -> super::Ran {
    let path = b.dir().join("config.toml");
    std::fs::write(&path, b.build()).expect("write config");
    let path = path.display().to_string();
    let env: Vec<(String, String)> = b.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cli(&["check-config", "--config", &path], &env, None, b.dir())
        .await
        .success()
}

/// Issue 19 item 6: commands that never log in upstream do not demand the code.
#[tokio::test]
async fn commands_that_need_no_code_run_without_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state").display().to_string();
    let env = [
        ("QQMAIL_EMAIL", "12345@qq.com"),
        ("QQMAIL_STATE_DIR", state.as_str()),
    ];
    let ran = cli(&["check-config"], &env, None, tmp.path())
        .await
        .success();
    assert!(
        ran.stdout.contains("# authorization code: unset"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("warning:") && ran.stdout.contains("QQMAIL_AUTH_CODE"),
        "{}",
        ran.stdout
    );
    let ran = cli(&["reset-password"], &env, None, tmp.path())
        .await
        .success();
    assert!(
        value_after(&ran.stdout, "password:").is_some(),
        "{}",
        ran.stdout
    );
    cli(&["queue", "list"], &env, None, tmp.path())
        .await
        .success();
    // `serve` still refuses to start without it, naming the variable.
    let ran = cli(&["serve"], &env, None, tmp.path()).await.failure();
    assert!(ran.stderr.contains("QQMAIL_AUTH_CODE"), "{}", ran.stderr);

    // Commands that read only this machine's state need no account either: a new shell
    // with just the state directory (the README's `qqmail-proxy ca export > …`).
    let local = [("QQMAIL_STATE_DIR", state.as_str())];
    cli(&["queue", "list"], &local, None, tmp.path())
        .await
        .success();
    let ran = cli(&["ca", "export"], &local, None, tmp.path())
        .await
        .failure();
    assert!(
        ran.stderr.contains("local CA") && ran.stderr.contains("start the proxy once"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("QQMAIL_EMAIL"), "{}", ran.stderr);
}

#[tokio::test]
async fn serve_with_a_bad_config_exits_non_zero_naming_the_key() {
    let ca = TestCa::new("cli config error CA");
    let base = || {
        ConfigBuilder::new(&ca)
            .account(Account::new("main").smtp("127.0.0.1:4650"))
            .smtp("optional")
    };
    let cases: Vec<(&str, ConfigBuilder, &[&str])> = vec![
        (
            "user of an unknown account",
            base().user("printer", "Pr1nter-Pa55", "nope"),
            &["[[user]] #1 account", "\"nope\" not found"],
        ),
        (
            "unknown key",
            base().section_line("smtp", "listen_on = [\"127.0.0.1:25\"]"),
            &["unknown field `listen_on`"],
        ),
        (
            "open relay",
            base().allow_unauthenticated(&["0.0.0.0/0"], "main"),
            &[
                "[smtp] allow_unauthenticated",
                "i_know_this_is_an_open_relay",
            ],
        ),
        (
            "bad duration",
            base().limit("idle_timeout", "\"forever\""),
            &["idle_timeout", "invalid duration"],
        ),
    ];
    for (what, b, needles) in cases {
        let env: Vec<(String, String)> = b.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, logs) = Proxy::start_expect_failure(&b.build(), &env).await;
        assert_eq!(status.code(), Some(1), "{what}: {logs}");
        for needle in needles.iter() {
            assert!(
                logs.contains(needle),
                "{what}: stderr lacks {needle:?}:\n{logs}"
            );
        }
        assert!(!logs.contains(DEFAULT_CODE), "{what}: the code leaked");
    }
}

/// Issue 19 item 9: a user whose password is one printed in the docs is warned about by
/// `check-config` and at start; others are not.
#[tokio::test]
async fn a_published_password_is_warned_about() {
    let ca = TestCa::new("cli published CA");
    let b = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp("127.0.0.1:4650"))
        .user("printer", "local-password", "main")
        .user("app", "Pr1nter-Pa55", "main")
        .smtp("optional");
    let ran = check_config(&b).await;
    let warned: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.contains("printed in qqmail-proxy's documentation"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", ran.stdout);
    assert!(warned[0].contains("\"printer\""), "{}", warned[0]);

    let proxy = Proxy::start_built(&b, &[]).await;
    proxy
        .wait_for_log(
            "printed in qqmail-proxy's documentation",
            std::time::Duration::from_secs(30),
        )
        .await;
}
