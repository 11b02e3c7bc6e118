//! End-to-end smoke tests: one message, one IMAP login and one POP3 login through the
//! proxy, each against its fake upstream.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::imap::{FakeImap, ImapOpts};
use crate::support::pop3::{FakePop3, Pop3Opts};
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE, DEFAULT_USER};
use crate::support::upstream::TlsMode;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn smtp_imap_pop3_end_to_end() {
    let ca = TestCa::new("smoke CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let tls = TlsMode::Implicit(ca.server_config(crate::support::ca::UPSTREAM_NAMES));
    let imap = FakeImap::start(
        ImapOpts::default()
            .tls(tls.clone())
            .user(DEFAULT_USER)
            .code(DEFAULT_CODE)
            .message("INBOX", &b"Subject: hi\r\n\r\nhello\r\n"[..]),
    )
    .await;
    let pop3 = FakePop3::start(
        Pop3Opts::default()
            .tls(tls)
            .user(DEFAULT_USER)
            .code(DEFAULT_CODE)
            .message(&b"Subject: pop\r\n\r\n.dot line\r\n"[..]),
    )
    .await;
    let builder = ConfigBuilder::new(&ca)
        .account(
            Account::new("main")
                .smtp_fake(&smtp)
                .imap(format!("127.0.0.1:{}", imap.addr().port()))
                .pop3(format!("127.0.0.1:{}", pop3.addr().port())),
        )
        .user("printer", "Pr1nter-Pa55", "main")
        .smtp("optional")
        .imap("optional")
        .pop3("optional");
    let proxy = Proxy::start_built(&builder, &[]).await;

    // SMTP with lettre, plaintext, AUTH PLAIN.
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(proxy.smtp_addr().port())
        .credentials(Credentials::new("printer".into(), "Pr1nter-Pa55".into()))
        .timeout(Some(WAIT))
        .build();
    let message = lettre::Message::builder()
        .from("scanner@printer.local".parse().unwrap())
        .to("friend@example.com".parse().unwrap())
        .subject("scan")
        .body("page 1\n.leading dot\n".to_string())
        .unwrap();
    mailer.send(message).await.expect("send through proxy");
    let got = smtp.wait_messages(1, WAIT).await;
    assert_eq!(got[0].mail_from, DEFAULT_USER, "envelope sender rewritten");
    assert_eq!(got[0].auth_password, DEFAULT_CODE, "code injected");
    assert!(String::from_utf8_lossy(&got[0].data).contains("..leading dot"));

    // IMAP with async-imap, plaintext.
    let tcp = tokio::net::TcpStream::connect(proxy.imap_addr())
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().expect("greeting");
    let mut session = client
        .login("printer", "Pr1nter-Pa55")
        .await
        .map_err(|e| e.0)
        .unwrap();
    let mailbox = session.select("INBOX").await.unwrap();
    assert_eq!(mailbox.exists, 1);
    session.logout().await.unwrap();

    // POP3, raw.
    let tcp = tokio::net::TcpStream::connect(proxy.pop3_addr())
        .await
        .unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("+OK"), "{line}");
    w.write_all(b"USER printer\r\nPASS Pr1nter-Pa55\r\nSTAT\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut all = String::new();
    for _ in 0..4 {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        all.push_str(&line);
    }
    assert!(
        all.contains("+OK Logged in") && all.contains("+OK 1 "),
        "{all}"
    );
    proxy.assert_no_secret(&[DEFAULT_CODE, "Pr1nter-Pa55"]);
}
