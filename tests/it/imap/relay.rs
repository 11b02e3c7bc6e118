//! The relay after login ending badly or on purpose: the upstream dropping mid-FETCH or
//! during IDLE, the client going away, and the idle timeout. Each ends the session
//! cleanly: the other side sees the end, the proxy logs `session end`, nothing panics,
//! and the proxy goes on serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{account_for, big_message, config, End, Gateway, T};
use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::proxy::Proxy;
use crate::support::upstream::Fault;

/// Bytes of the literal the fake writes before resetting.
const CUT: usize = 1000;

/// A new session still logs in and selects: the failure stayed in its own session.
async fn still_serving(gw: &Gateway) {
    let mut c = gw.logged_in().await;
    c.send(b"z SELECT INBOX\r\n").await;
    let reply = c.tagged("z").await;
    assert!(reply.starts_with("z OK"), "{reply}");
}

#[tokio::test]
async fn upstream_reset_mid_fetch_ends_the_client_connection() {
    let message = big_message(256 * 1024);
    let gw = Gateway::start(
        |o| {
            o.message("INBOX", message.clone())
                .fault(Fault::DropMidFetch { after_bytes: CUT })
        },
        |c| c,
    )
    .await;
    let mut c = gw.logged_in().await;
    c.send(b"b SELECT INBOX\r\n").await;
    assert!(c.tagged("b").await.starts_with("b OK"));
    let mark = gw.proxy.log_mark();
    c.send(b"c FETCH 1 BODY.PEEK[]\r\n").await;
    let head = c.text().await;
    assert_eq!(head, format!("* 1 FETCH (BODY[] {{{}}}", message.len()));
    let (end, rest) = c.end().await;
    assert!(
        matches!(
            end,
            End::Eof | End::Error(std::io::ErrorKind::ConnectionReset)
        ),
        "{end:?}"
    );
    assert!(rest.len() <= CUT, "{} bytes after the cut", rest.len());
    assert_eq!(rest, message[..rest.len()], "what came is a prefix");
    assert_eq!(gw.wait_session_end(mark).await, "error");
    still_serving(&gw).await;
    gw.assert_clean();
}

#[tokio::test]
async fn upstream_reset_during_idle_ends_the_client_connection() {
    let gw = Gateway::start(|o| o.fault(Fault::DropDuringIdle), |c| c).await;
    let mut c = gw.logged_in().await;
    c.send(b"b SELECT INBOX\r\nc IDLE\r\n").await;
    assert!(c.tagged("b").await.starts_with("b OK"));
    assert_eq!(c.text().await, "+ idling");
    let mark = gw.proxy.log_mark();
    gw.fake.add_message("INBOX", &b"Subject: wake\r\n\r\n"[..]);
    let (end, rest) = c.end().await;
    assert!(
        matches!(
            end,
            End::Eof | End::Error(std::io::ErrorKind::ConnectionReset)
        ),
        "{end:?}"
    );
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert_eq!(gw.wait_session_end(mark).await, "error");
    still_serving(&gw).await;
    gw.assert_clean();
}

/// A one-connection TLS IMAP upstream that accepts any LOGIN and, when its peer closes,
/// sends everything it received after the login: `FakeImap` does not record when a
/// connection ends, and this is what the test is about.
async fn observer(ca: &TestCa) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(UPSTREAM_NAMES));
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("TLS handshake");
        tls.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] observer ready\r\n")
            .await
            .expect("greeting");
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        let login_end = loop {
            if let Some(pos) = seen.windows(2).position(|w| w == b"\r\n") {
                break pos + 2;
            }
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        };
        let tag: Vec<u8> = seen.iter().take_while(|b| **b != b' ').copied().collect();
        let mut ok = tag;
        ok.extend_from_slice(b" OK [CAPABILITY IMAP4rev1 IDLE] LOGIN completed\r\n");
        tls.write_all(&ok).await.expect("login reply");
        let mut after = seen.split_off(login_end);
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => after.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(after);
        // Close politely (close_notify), as a server does at the end of a session.
        let _ = tls.shutdown().await;
    });
    (addr, rx)
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream() {
    let ca = TestCa::new("imap gateway CA");
    let (addr, ended) = observer(&ca).await;
    let cfg = config(&ca, account_for("main", addr.to_string()));
    let proxy = Proxy::start_built(&cfg, &[]).await;
    let mut c = super::Raw::connect(proxy.imap_addr()).await;
    c.text().await;
    c.send(format!("a LOGIN {} {}\r\n", super::USER, super::PASSWORD).as_bytes())
        .await;
    assert!(c.tagged("a").await.starts_with("a OK "));
    let mark = proxy.log_mark();
    c.send(b"b NOOP\r\n").await;
    drop(c);
    let after = tokio::time::timeout(T, ended)
        .await
        .expect("the upstream connection ends when the client leaves")
        .expect("observer report");
    assert_eq!(after, b"b NOOP\r\n", "relayed, then closed");
    assert_eq!(super::wait_session_end(&proxy, mark).await, "ok");
    super::assert_clean(&proxy);
}

#[tokio::test]
async fn idle_timeout_closes_a_silent_relayed_session() {
    let gw = Gateway::start(|o| o, |c| c.limit("idle_timeout", "\"1s\"")).await;
    let mut c = gw.logged_in().await;
    let mark = gw.proxy.log_mark();
    c.send(b"b SELECT INBOX\r\n").await;
    assert!(c.tagged("b").await.starts_with("b OK"));
    let quiet_since = Instant::now();
    let (end, rest) = c.end().await;
    let quiet = quiet_since.elapsed();
    assert_eq!(end, End::Eof);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        quiet >= Duration::from_millis(900) && quiet < T,
        "closed after {quiet:?} of silence"
    );
    assert_eq!(gw.wait_session_end(mark).await, "timeout");
    still_serving(&gw).await;
    gw.assert_clean();
}
