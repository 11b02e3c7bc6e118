//! Off loopback the admin endpoint has no login yet, so it must not tell a LAN neighbour
//! which upstream hosts or accounts the proxy serves (issue 16): `/healthz` says only
//! `degraded`, while the operator on loopback sees which upstream failed. The test needs a
//! client address that is not loopback, so it runs the proxy in a network namespace of
//! its own (root and iproute2; without them it fails saying so).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use tokio::net::TcpSocket;

use super::*;
use crate::hardening::netns::Netns;
use crate::hardening::{plain, Client};
use crate::support::proxy::Launch;

/// The account's upstream: nothing listens there, so its login fails.
const DEAD_UPSTREAM: &str = "127.0.0.1:9";

/// `GET /healthz` over `socket` (from `source`, if given) to `admin`: the whole response.
async fn healthz_from(socket: TcpSocket, source: Option<IpAddr>, admin: SocketAddr) -> String {
    let mut c = Client::connect_with(socket, admin, source)
        .await
        .expect("connect to admin inside the namespace");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\n\r\n");
    assert!(c.send(request.as_bytes()).await);
    let (text, eof) = c.read_to_eof(Duration::from_secs(5)).await;
    assert!(eof, "admin closed after answering: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_healthz_names_no_upstream_host() {
    let ns = Netns::create(1);
    let ca = TestCa::new("admin view CA");
    let proxy_ip = Netns::proxy_ip();
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp(format!("tls://{DEAD_UPSTREAM}")))
        .user("printer", PASSWORD, "main")
        .smtp("off")
        .listen("smtp", &[&format!("[{proxy_ip}]:0")])
        .extra(&crate::support::config::admin_off_loopback(
            "[::]:0", "admin-pw",
        ));
    let mut words = ns.exec_prefix().to_vec();
    words.push(env!("CARGO_BIN_EXE_qqmail-proxy"));
    let proxy = Proxy::launch(Launch::from_builder(&builder).program("ip", &words)).await;
    let client = Netns::client_ip(0);
    let mut sockets = ns.sockets(4);

    // A login whose upstream cannot be reached: the failure is recorded.
    let mut c = Client::connect_with(
        sockets.pop().expect("socket"),
        proxy.smtp_addr(),
        Some(client),
    )
    .await
    .expect("connect");
    c.smtp_reply().await.text();
    c.cmd("EHLO view.test").await.text();
    let auth = c
        .cmd(&format!("AUTH PLAIN {}", plain("printer", PASSWORD)))
        .await
        .text();
    assert!(auth.starts_with("454 "), "upstream unreachable: {auth}");

    let port = proxy.admin_addr().port();
    // The LAN neighbour: degraded, no host name, no account.
    let lan = SocketAddr::new(proxy_ip, port);
    let seen = healthz_from(sockets.pop().expect("socket"), Some(client), lan).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("degraded"), "{seen}");
    for leak in [DEAD_UPSTREAM, "127.0.0.1", "@"] {
        assert!(!seen.contains(leak), "{leak:?} shown off loopback: {seen}");
    }
    // The operator on loopback sees which upstream failed.
    let local = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    let seen = healthz_from(sockets.pop().expect("socket"), None, local).await;
    assert!(
        seen.contains(DEAD_UPSTREAM),
        "loopback gets the details: {seen}"
    );
}
