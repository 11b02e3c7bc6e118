//! Cross-protocol attack (issue 16, item 1): a web page makes a browser POST to the
//! gateway's SMTP port from an allow-listed address, with pipelined SMTP as the request
//! body. The session must be answered once and closed at the request line, the body
//! never read as commands, nothing sent upstream, and the attempt logged with the
//! client's address and counted in `/metrics`. Same on IMAP and POP3, and on SMTP after
//! MAIL (the relay reads commands too).

use tokio::net::TcpStream;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

/// What `fetch("http://127.0.0.1:2525/", {method: "POST", mode: "no-cors", body})` sends.
const BROWSER_POST: &str = "POST / HTTP/1.1\r\nHost: 127.0.0.1:2525\r\nConnection: keep-alive\r\n\
Content-Length: 140\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nContent-Type: text/plain;charset=UTF-8\r\n\
Origin: http://evil.example\r\nAccept: */*\r\n\r\n\
EHLO x\r\nMAIL FROM:<ceo@company.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n\
Subject: wire the money\r\n\r\nnow\r\n.\r\nQUIT\r\n";

const SMTP_REFUSED: &str =
    "221 2.7.0 Error: HTTP request refused; this is an SMTP server, closing connection\r\n";
const LOG_NEEDLE: &str = "cross-protocol attack";

/// Sends `request` in one write on a connection whose greeting was read, and returns
/// everything the proxy sent back until it closed (panics if it did not close).
async fn attack(c: &mut Client, request: &str) -> String {
    assert!(c.send(request.as_bytes()).await, "send the request");
    let (text, closed) = c.read_to_eof(REPLY_WAIT).await;
    assert!(
        closed,
        "the proxy kept the connection open; it sent {text:?}"
    );
    text
}

/// `GET /metrics` on the admin listener.
async fn metrics(proxy: &Proxy) -> String {
    let addr = proxy.admin_addr();
    let mut tcp = TcpStream::connect(addr).await.expect("connect admin");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut text = String::new();
    tokio::time::timeout(REPLY_WAIT, tcp.read_to_string(&mut text))
        .await
        .expect("admin answered")
        .expect("read");
    text
}

/// Waits until the `n`th cross-protocol warning is logged; returns the warnings.
async fn warnings(proxy: &Proxy, n: usize) -> Vec<String> {
    loop {
        let mark = proxy.log_mark();
        let lines: Vec<String> = proxy
            .logs()
            .lines()
            .filter(|l| l.contains(LOG_NEEDLE))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        proxy.wait_for_log_since(mark, LOG_NEEDLE, REPLY_WAIT).await;
    }
}

#[tokio::test]
async fn browser_post_to_the_smtp_port_sends_nothing_upstream() {
    let ca = TestCa::new("cross-protocol CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = smtp_builder(&ca, &smtp)
        .allow_unauthenticated(&["127.0.0.1/32"], "main")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"");
    let proxy = Proxy::start_built(&builder, &[]).await;

    // Before login: the request line ends the session.
    let mut c = Client::connect(proxy.smtp_addr(), None)
        .await
        .expect("connect");
    assert!(c.smtp_reply().await.text().starts_with("220 "));
    assert_eq!(attack(&mut c, BROWSER_POST).await, SMTP_REFUSED);

    // After MAIL from the allow-listed address, in the relay: the same.
    let mut c = Client::connect(proxy.smtp_addr(), None)
        .await
        .expect("connect");
    assert!(c.smtp_reply().await.text().starts_with("220 "));
    assert!(c.cmd("EHLO printer").await.text().starts_with("250"));
    let mail = c.cmd("MAIL FROM:<scanner@printer.local>").await.text();
    assert!(mail.starts_with("250 "), "{mail}");
    assert_eq!(attack(&mut c, BROWSER_POST).await, SMTP_REFUSED);

    let lines = warnings(&proxy, 2).await;
    assert!(
        lines[0].contains("127.0.0.1"),
        "the warning names the client: {lines:?}"
    );
    let text = metrics(&proxy).await;
    assert!(
        text.contains("qqmail_proxy_cross_protocol_total{protocol=\"smtp\"} 2"),
        "{text}"
    );
    // Only the real MAIL of the second session ever reached the upstream.
    assert!(smtp.messages().is_empty(), "{:?}", smtp.messages());
    let commands = smtp.commands();
    assert!(
        !commands
            .iter()
            .any(|c| c.contains("victim") || c.contains("ceo@") || c.starts_with("DATA")),
        "{commands:?}"
    );
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn browser_post_to_the_imap_and_pop3_ports_is_refused() {
    let ca = TestCa::new("cross-protocol CA");
    let (_smtp, imap, pop3, builder) = three_upstreams(&ca).await;
    let builder = builder.extra("\n[admin]\nlisten = \"127.0.0.1:0\"");
    let proxy = Proxy::start_built(&builder, &[]).await;

    let mut c = Client::connect(proxy.imap_addr(), None)
        .await
        .expect("connect");
    assert!(c.line().await.expect("greeting").starts_with("* OK"));
    // The body logs in, as a page that guessed the password would make it.
    let login = format!("a LOGIN {USER} {PASSWORD}\r\n");
    let request = BROWSER_POST.replace("EHLO x\r\n", &login);
    assert_eq!(
        attack(&mut c, &request).await,
        "* BYE HTTP request refused; this is an IMAP server\r\n"
    );

    let mut c = Client::connect(proxy.pop3_addr(), None)
        .await
        .expect("connect");
    assert!(c.line().await.expect("greeting").starts_with("+OK"));
    let login = format!("USER {USER}\r\nPASS {PASSWORD}\r\n");
    let request = BROWSER_POST.replace("EHLO x\r\n", &login);
    assert_eq!(
        attack(&mut c, &request).await,
        "-ERR HTTP request refused; this is a POP3 server\r\n"
    );

    warnings(&proxy, 2).await;
    let text = metrics(&proxy).await;
    for protocol in ["imap", "pop3"] {
        let needle = format!("qqmail_proxy_cross_protocol_total{{protocol=\"{protocol}\"}} 1");
        assert!(text.contains(&needle), "{needle} in {text}");
    }
    assert_eq!(imap.connections(), 0, "no upstream IMAP login");
    assert_eq!(pop3.connections(), 0, "no upstream POP3 login");
    proxy.assert_no_secret(&secrets());
}
