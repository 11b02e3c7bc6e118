//! Log forgery and terminal escapes: a user name carrying CR, LF, ESC, a C1 control and a
//! bidi override (through AUTH PLAIN, whose base64 carries any byte) must not end a log
//! line, forge another (`result="ok"`) or reach the terminal raw, in the JSON format and
//! in the text format alike.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::*;
use crate::support::proxy::Proxy;

/// What the attacker sends as the user name: a forged line with an erase-line escape.
const FORGED_USER: &str =
    "x\r\n2026-12-06T00:00:00Z  INFO session end result=\"ok\" user=admin\x1b[2K\u{9b}2J\u{202e}";

/// Whether `c` may not appear raw in a log line (the proxy's rule, restated).
fn raw_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

async fn forged_login(addr: SocketAddr) {
    let (_c, got) = smtp_login(addr, None, FORGED_USER, "wrong").await;
    let reply = got.text();
    assert!(reply.starts_with("535 "), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_escapes_control_characters_in_client_text() {
    let ca = TestCa::new("log forgery CA");
    let smtp = FakeSmtp::start(crate::support::smtp::SmtpOptions::implicit(&ca));
    let proxy = Proxy::start_built(&smtp_builder(&ca, &smtp), &[]).await;
    forged_login(proxy.smtp_addr()).await;
    proxy.wait_for_log("local login failed", REPLY_WAIT).await;
    let logs = proxy.logs();
    for line in logs.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "a line that is not one JSON event (forged?): {line:?}"
        );
        let bad: Vec<char> = line.chars().filter(|&c| raw_control(c)).collect();
        assert!(bad.is_empty(), "raw {bad:?} in {line:?}");
    }
    assert!(
        logs.contains("\\u001b[2K"),
        "the escape is shown, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_escapes_control_characters_in_client_text() {
    let ca = TestCa::new("log forgery text CA");
    let smtp = FakeSmtp::start(crate::support::smtp::SmtpOptions::implicit(&ca));
    let builder = smtp_builder(&ca, &smtp);
    let config = builder.dir().join("config.toml");
    std::fs::write(&config, builder.build()).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qqmail-proxy"))
        .args(["--log-format", "text", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .envs(builder.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qqmail-proxy");
    let _kill = KillOnDrop(child.id());
    // Raw bytes, split at LF only: a forged line shows up as a line of its own.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stderr);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let wait_for = |needle: &str, lines: &mut Vec<Vec<u8>>| -> String {
        loop {
            let line = rx
                .recv_timeout(REPLY_WAIT)
                .unwrap_or_else(|_| panic!("no log line with {needle:?} in {lines:?}"));
            let text = String::from_utf8_lossy(&line).into_owned();
            lines.push(line);
            if text.contains(needle) {
                return text;
            }
        }
    };
    let listening = wait_for("listening", &mut lines);
    let addr: SocketAddr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {listening:?}"));
    forged_login(addr).await;
    wait_for("local login failed", &mut lines);
    let _ = child.kill();
    let _ = child.wait();
    for line in &lines {
        let text = std::str::from_utf8(line).expect("log lines are UTF-8");
        let body = text.strip_suffix('\n').expect("whole lines");
        assert!(
            body.split_whitespace()
                .next()
                .is_some_and(|t| t.starts_with("20")),
            "a line that does not start with a timestamp (forged?): {body:?}"
        );
        let bad: Vec<char> = body.chars().filter(|&c| raw_control(c)).collect();
        assert!(bad.is_empty(), "raw {bad:?} in {body:?}");
    }
    let all: String = lines.iter().map(|l| String::from_utf8_lossy(l)).collect();
    assert!(all.contains("x\\r\\n2026-12-06"), "shown escaped: {all}");
    assert!(all.contains("\\x1b[2K"), "shown escaped: {all}");
}

/// Kills the child by pid when the test ends, however it ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}
