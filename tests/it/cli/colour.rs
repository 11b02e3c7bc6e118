//! Terminal colours in the text log (issue 17 item 4): a log written to a file or a pipe
//! (what `docker logs` and journald keep) holds no escape byte; a log on a terminal is
//! coloured unless `NO_COLOR` is set (https://no-color.org). The terminal is a real
//! pseudo-terminal made by `script(1)` (util-linux, Essential in Debian).
//!
//! Each run is a `serve` that logs its start-up lines at INFO, then fails to bind the
//! SMTP port the test holds and exits 1 on its own: no process to stop, no readiness to
//! wait for.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::BIN;

/// The env of a zero-config start whose SMTP listener cannot bind (`port` is held).
fn env(state: &Path, port: u16) -> Vec<(String, String)> {
    [
        ("QQMAIL_EMAIL", "device@qq.com".to_string()),
        ("QQMAIL_AUTH_CODE", "abcdefghijklmnop".to_string()),
        ("QQMAIL_STATE_DIR", state.display().to_string()),
        ("QQMAIL_SMTP_LISTEN", format!("127.0.0.1:{port}")),
        ("QQMAIL_IMAP_LISTEN", "127.0.0.1:0".to_string()),
        ("QQMAIL_POP3_LISTEN", "127.0.0.1:0".to_string()),
        ("RUST_LOG", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A command with the env of [`env`], no inherited `QQMAIL_*`, and `NO_COLOR` as given.
fn command(program: &str, args: &[&str], env: &[(String, String)], no_color: bool) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("QQMAIL_") || k == "NO_COLOR" || k == "TERM" {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.env("TERM", "xterm");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    cmd
}

/// Runs `serve` with stderr going to `path` (a plain file); returns what it wrote.
fn run_to_file(env: &[(String, String)], path: &Path) -> Vec<u8> {
    let file = std::fs::File::create(path).expect("log file");
    let out = command(BIN, &["--log-format", "text", "serve"], env, false)
        .stdout(Stdio::null())
        .stderr(file)
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "serve must fail to bind");
    std::fs::read(path).expect("read log file")
}

/// Runs `serve` on a pseudo-terminal (stdin, stdout and stderr all on it); returns what
/// the terminal showed.
fn run_on_pty(env: &[(String, String)], no_color: bool) -> Vec<u8> {
    let inner = format!("exec '{BIN}' --log-format text serve");
    // -q: no banner; -e: the child's exit status; -c: the command; /dev/null: no typescript.
    let out: Output = command("script", &["-qec", &inner, "/dev/null"], env, no_color)
        .env("SHELL", "/bin/sh")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run script(1) (util-linux)");
    assert!(!out.status.success(), "serve must fail to bind");
    out.stdout
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

#[test]
fn text_log_is_coloured_only_on_a_terminal_without_no_color() {
    let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = held.local_addr().expect("addr").port();
    let state = tempfile::tempdir().expect("state dir");
    let env = env(state.path(), port);

    let file = run_to_file(&env, &state.path().join("stderr.log"));
    let text = String::from_utf8_lossy(&file);
    assert!(text.contains("local users loaded"), "{text}");
    assert!(!has_escape(&file), "escape bytes in a log file:\n{text:?}");

    let tty = run_on_pty(&env, false);
    let text = String::from_utf8_lossy(&tty);
    assert!(text.contains("local users loaded"), "{text}");
    assert!(has_escape(&tty), "no colours on a terminal:\n{text:?}");

    let plain = run_on_pty(&env, true);
    let text = String::from_utf8_lossy(&plain);
    assert!(text.contains("local users loaded"), "{text}");
    assert!(
        !has_escape(&plain),
        "colours on a terminal with NO_COLOR set:\n{text:?}"
    );
}
