//! The admin endpoint's `Host` rule (DNS rebinding): a web page whose name was re-pointed
//! at 127.0.0.1 sends its own name in `Host` and is refused with 421; the listener's
//! address and `localhost` are served.

use super::*;

#[tokio::test]
async fn foreign_host_is_refused_local_names_are_served() {
    let ca = TestCa::new("admin host CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp_fake(&smtp))
        .user("printer", PASSWORD, "main")
        .smtp("off")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let admin = proxy.admin_addr();
    let port = admin.port();
    let cases = [
        // (Host, path, expected status line start)
        ("evil.example".to_string(), "/healthz", "HTTP/1.1 421"),
        (format!("evil.example:{port}"), "/healthz", "HTTP/1.1 421"),
        (format!("evil.example:{port}"), "/metrics", "HTTP/1.1 421"),
        (
            format!("localhost.evil.example:{port}"),
            "/metrics",
            "HTTP/1.1 421",
        ),
        (format!("127.0.0.1:{port}"), "/healthz", "HTTP/1.1 200"),
        ("127.0.0.1".to_string(), "/healthz", "HTTP/1.1 200"),
        (format!("localhost:{port}"), "/healthz", "HTTP/1.1 200"),
        (format!("localhost:{port}"), "/metrics", "HTTP/1.1 200"),
        (format!("[::1]:{port}"), "/healthz", "HTTP/1.1 200"),
    ];
    for (host, path, want) in cases {
        let (head, body) = get_as(admin, path, &host).await;
        assert!(head.starts_with(want), "Host {host} {path}: {head}\n{body}");
        if want.ends_with("421") {
            assert!(
                !body.contains("ok") && !body.contains("qqmail_proxy_"),
                "{body}"
            );
        }
    }
}
