//! Pre-login deadline (issue 16, item 9): a client that always has a command waiting
//! (NOOP or CAPA pipelined faster than they are answered) is still closed soon after
//! `pre_auth_timeout`, on IMAP and POP3 alike; and invalid commands before login are
//! capped as on SMTP. Nothing reaches the upstream.

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use super::*;
use crate::support::imap::FakeImap;
use crate::support::pop3::FakePop3;
use crate::support::proxy::Proxy;

const PRE_AUTH: Duration = Duration::from_secs(1);
/// How long the test lets a session run before calling it unbounded.
const GIVE_UP: Duration = Duration::from_secs(15);

async fn proxy_with_imap_pop3(pre_auth: &str) -> (TestCa, FakeImap, FakePop3, Proxy) {
    let ca = TestCa::new("deadline CA");
    let (_smtp, imap, pop3, builder) = three_upstreams(&ca).await;
    let builder = builder.limit("pre_auth_timeout", pre_auth);
    let proxy = Proxy::start_built(&builder, &[]).await;
    (ca, imap, pop3, proxy)
}

/// Writes `command` over and over, as fast as the socket takes it, while reading the
/// replies, until the proxy closes; returns how long that took and how many reply bytes
/// came. The proxy thus always finds a command already waiting when it reads. Panics
/// after [`GIVE_UP`].
async fn flood(addr: SocketAddr, command: &str) -> (Duration, usize) {
    let started = Instant::now();
    let Client {
        mut reader,
        mut writer,
    } = Client::connect(addr, None).await.expect("connect");
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.expect("greeting");
    let batch = command.repeat(64);
    // Ends when a write fails, i.e. once the proxy has closed.
    let pump =
        tokio::spawn(async move { while writer.write_all(batch.as_bytes()).await.is_ok() {} });
    let mut received = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            // EOF or a reset (unread commands are left when the proxy closes): closed.
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    };
    let closed = tokio::time::timeout(GIVE_UP, read_all).await.is_ok();
    pump.abort();
    assert!(
        closed,
        "still open after {GIVE_UP:?} ({received} reply bytes)"
    );
    (started.elapsed(), received)
}

fn assert_closed_in_time(what: &str, took: Duration, received: usize) {
    assert!(
        took >= PRE_AUTH - Duration::from_millis(100) && took < PRE_AUTH + Duration::from_secs(4),
        "{what}: closed after {took:?}"
    );
    println!("{what}: closed after {took:?}, {received} reply bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_noop_and_capa_do_not_outlive_the_pre_auth_deadline() {
    let (_ca, imap, pop3, proxy) = proxy_with_imap_pop3("\"1s\"").await;

    let (took, received) = flood(proxy.imap_addr(), "a NOOP\r\n").await;
    assert_closed_in_time("IMAP NOOP", took, received);
    let (took, received) = flood(proxy.pop3_addr(), "CAPA\r\n").await;
    assert_closed_in_time("POP3 CAPA", took, received);

    // Both ended as timeouts (the reply itself may be lost to the reset that closing
    // with unread commands causes, so the log is the witness).
    loop {
        let mark = proxy.log_mark();
        let logs = proxy.logs();
        let ends: Vec<&str> = logs.lines().filter(|l| l.contains("session end")).collect();
        if ends.len() >= 2 {
            assert!(ends.iter().all(|l| l.contains("timeout")), "{ends:?}");
            break;
        }
        proxy
            .wait_for_log_since(mark, "session end", REPLY_WAIT)
            .await;
    }
    assert_eq!(imap.connections() + pop3.connections(), 0);
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn invalid_commands_before_login_are_capped() {
    // A long deadline: only the error cap may close these sessions.
    let (_ca, imap, pop3, proxy) = proxy_with_imap_pop3("\"60s\"").await;
    // 20, as SMTP's smtpd_hard_error_limit; one at a time, so every reply is read.
    let mut c = Client::connect(proxy.imap_addr(), None)
        .await
        .expect("connect");
    c.line().await.expect("greeting");
    for n in 1..20 {
        c.send(b"a SELECT INBOX\r\n").await;
        let line = c.line().await;
        assert_eq!(
            line.as_deref(),
            Some("a BAD Command not valid before login\r\n"),
            "error {n}"
        );
    }
    c.send(b"a SELECT INBOX\r\n").await;
    let (text, closed) = c.read_to_eof(REPLY_WAIT).await;
    assert!(closed);
    assert_eq!(
        text,
        "a BAD Command not valid before login\r\n* BYE Too many invalid commands\r\n"
    );

    let mut c = Client::connect(proxy.pop3_addr(), None)
        .await
        .expect("connect");
    c.line().await.expect("greeting");
    for n in 1..20 {
        c.send(b"STAT\r\n").await;
        let line = c.line().await;
        assert_eq!(
            line.as_deref(),
            Some("-ERR Command not valid before login\r\n"),
            "error {n}"
        );
    }
    c.send(b"STAT\r\n").await;
    let (text, closed) = c.read_to_eof(REPLY_WAIT).await;
    assert!(closed);
    assert_eq!(text, "-ERR Too many invalid commands\r\n");
    assert_eq!(imap.connections() + pop3.connections(), 0);
}
