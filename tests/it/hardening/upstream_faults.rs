//! Upstream faults: a slow upstream just inside `upstream_timeout` still works; nothing
//! listening gives a 454 naming the server; an upstream that accepts TCP but never
//! completes TLS is given up after `upstream_timeout`.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::{Fault, SmtpOptions};

/// A config whose account sends through `server` (implicit TLS), with `upstream_timeout`.
fn builder_for(ca: &TestCa, server: String, timeout: &str) -> ConfigBuilder {
    ConfigBuilder::new(ca)
        .account(Account::new("main").smtp(server))
        .user(USER, PASSWORD, "main")
        .smtp("off")
        .limit("upstream_timeout", &format!("\"{timeout}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_within_the_timeout_still_delivers() {
    let ca = TestCa::new("slow CA");
    let delay = Duration::from_millis(750);
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(Fault::SlowReply(delay)));
    let builder = builder_for(&ca, smtp.config_server(), "1s");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let t = Instant::now();
    let (mut c, auth) = smtp_login(proxy.smtp_addr(), None, USER, PASSWORD).await;
    assert!(auth.text().starts_with("235 "));
    let data = b"Subject: slow\r\n\r\npatience\r\n";
    let sent = send_message(&mut c, data).await.text();
    assert!(sent.starts_with("250 "), "{sent}");
    println!(
        "login and one message through a {delay:?}-per-reply upstream: {:?}",
        t.elapsed()
    );
    let got = smtp.wait_messages(1, REPLY_WAIT).await;
    assert_eq!(got[0].data, &data[..data.len() - 2]);
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn nothing_listening_gives_a_454_naming_the_server() {
    let ca = TestCa::new("refused CA");
    // A port that was free a moment ago: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let server = format!("127.0.0.1:{port}");
    let proxy = Proxy::start_built(&builder_for(&ca, server.clone(), "5s"), &[]).await;
    let (mut c, auth) = smtp_login(proxy.smtp_addr(), None, USER, PASSWORD).await;
    let auth = auth.text();
    assert!(
        auth.starts_with("454 4.7.0 upstream unavailable: cannot reach ")
            && auth.contains(&server)
            && auth.to_lowercase().contains("refused"),
        "{auth}"
    );
    // The session goes on: the client may try again or leave.
    assert_eq!(c.cmd("QUIT").await.text(), "221 2.0.0 Bye\r\n");
    proxy.assert_no_secret(&secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_never_finishes_tls_times_out() {
    let ca = TestCa::new("mute CA");
    // Accepts TCP connections and keeps them open without a byte.
    let mute = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = mute.local_addr().expect("addr").to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = mute.accept().await {
            held.push(tcp);
        }
    });
    let timeout = Duration::from_secs(2);
    let proxy = Proxy::start_built(&builder_for(&ca, server.clone(), "2s"), &[]).await;
    let mut c = Client::connect(proxy.smtp_addr(), None)
        .await
        .expect("connect");
    c.smtp_reply().await.text();
    c.cmd("EHLO x").await.text();
    let t = Instant::now();
    let auth = c
        .cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await
        .text();
    let took = t.elapsed();
    println!("mute upstream: AUTH answered after {took:?}: {auth}");
    assert!(
        auth.starts_with("454 4.7.0 upstream unavailable: ")
            && auth.contains(&server)
            && auth.contains("TLS handshake"),
        "{auth}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(1500),
        "gave up after {took:?}"
    );
    holder.abort();
    proxy.assert_no_secret(&secrets());
}
