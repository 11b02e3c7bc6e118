//! The admin endpoint: `/healthz` answers while listeners are up and names an upstream
//! whose last login failed; `/metrics` counts sessions, auth failures, upstream errors,
//! bytes and login latency in Prometheus text format. `flood`: a flood of the admin port
//! leaves the mail listeners serving; `host`: the `Host` rule against DNS rebinding;
//! `view`: what a client off loopback may see.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE};

mod browser;
mod flood;
mod host;
mod login;
mod page;
mod view;

const PASSWORD: &str = "Adm1n-Test-Pw";

/// `GET path` with `Host: <addr>`; returns the response head and body.
pub(crate) async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    get_as(addr, path, &addr.to_string()).await
}

/// `GET path` with the given `Host`; returns the response head and body (both empty
/// when the connection closed without an answer).
async fn get_as(addr: std::net::SocketAddr, path: &str, host: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut text))
        .await
        .expect("admin answered")
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

/// Runs one SMTP AUTH against the proxy, returning the reply line.
async fn auth(addr: std::net::SocketAddr, user: &str, password: &str) -> String {
    use base64::Engine as _;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    w.write_all(format!("EHLO t\r\nAUTH PLAIN {blob}\r\nQUIT\r\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return String::new();
        }
        if line.starts_with("235") || line.starts_with("535") || line.starts_with("454") {
            return line;
        }
    }
}

#[tokio::test]
async fn healthz_and_metrics() {
    let ca = TestCa::new("admin CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp_fake(&smtp))
        .account(
            Account::new("broken")
                .email("other@qq.com")
                .smtp("127.0.0.1:1"),
        )
        .user("printer", PASSWORD, "main")
        .user("other", PASSWORD, "broken")
        .smtp("off")
        .limit("lockout_failures", "100")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let admin = proxy.admin_addr();

    let (head, body) = get(admin, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok\n");

    assert!(auth(proxy.smtp_addr(), "printer", PASSWORD)
        .await
        .starts_with("235"));
    assert!(auth(proxy.smtp_addr(), "printer", "wrong")
        .await
        .starts_with("535"));
    assert!(auth(proxy.smtp_addr(), "other", PASSWORD)
        .await
        .starts_with("454"));
    // Sessions are counted when they end: wait for three "session end" lines.
    loop {
        let mark = proxy.log_mark();
        if proxy.logs().matches("session end").count() >= 3 {
            break;
        }
        proxy
            .wait_for_log_since(mark, "session end", Duration::from_secs(10))
            .await;
    }

    let (head, metrics) = get(admin, "/metrics").await;
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for needle in [
        "qqmail_proxy_sessions_total{protocol=\"smtp\",result=\"ok\"}",
        "qqmail_proxy_auth_failures_total{protocol=\"smtp\"} 1",
        "qqmail_proxy_upstream_errors_total{protocol=\"smtp\",kind=\"connect\"} 1",
        "qqmail_proxy_login_seconds_count 1",
        "qqmail_proxy_active_sessions{protocol=\"smtp\"} 0",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    let (_, body) = get(admin, "/healthz").await;
    assert!(
        body.contains("last login failed for: smtp 127.0.0.1:1"),
        "{body}"
    );
    let (head, _) = get(admin, "/nope").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD]);
}
