//! The queue against real failures: the store through the library API (the process
//! killed with SIGKILL mid-write, a filesystem that runs out of space), and the real
//! binary end to end (killed while clients send and the upstream flaps; a full disk and
//! `max_size` under a session).

pub(crate) mod commands;
mod crash;
mod disk_full;
mod e2e_crash;
mod fallback;
mod outcomes;
mod requests;
mod serve;
mod session;

use qqmail_proxy::queue::store::{Envelope, NewMessage, Store};
use sha2::Digest;

/// A loopback port with nothing listening on it (the upstream is down until a fake is
/// started there).
pub(crate) fn unused_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Polls until `done` holds, failing the test after `limit`: for state the proxy
/// writes to its queue directory just after the log line a test could wait on.
async fn until(limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A proxy config in `queue` mode for the test user, its upstream at `upstream` (a port
/// with nothing listening: down), its queue in `spool`, the default `retry_min` (after a
/// failed attempt only `queue retry` brings a message back within a test's waits).
pub(crate) fn queue_mode_builder(
    ca: &crate::support::ca::TestCa,
    upstream: std::net::SocketAddr,
    spool: &std::path::Path,
) -> crate::support::config::ConfigBuilder {
    use crate::support::config::{toml_str, Account, ConfigBuilder};
    ConfigBuilder::new(ca)
        .account(Account::new("main").smtp(upstream.to_string()))
        .user(crate::smtp::USER, crate::smtp::PASSWORD, "main")
        .smtp("optional")
        .section_line("smtp", "delivery = \"queue\"")
        .local_cert_from(ca)
        .extra(&format!(
            "\n[queue]\ndir = {}\n",
            toml_str(&spool.display().to_string())
        ))
}

/// Lower-case hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A message from the printer's account to one recipient.
fn new_message() -> NewMessage {
    NewMessage {
        account: "printer@qq.com".into(),
        sender: "printer@qq.com".into(),
        null_sender: false,
        recipients: vec!["bob@example.com".into(), "carol@example.com".into()],
    }
}

/// The stored body, checked against its envelope's length and checksum.
fn read_body(store: &Store, env: &Envelope) -> Vec<u8> {
    let mut r = store.open_body(env).expect("open body");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).expect("read body");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    r.finish().expect("body matches its envelope");
    out
}
