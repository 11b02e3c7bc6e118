//! `delivery = "queue"` through the SMTP session: a local login and a local
//! transaction give `250 2.0.0 Ok: queued as ID` even while the upstream is down; the
//! deliverer hands the message over once the upstream is back, byte for byte, once; and
//! a queue over `max_size` answers 452 4.3.1, never 250.

use crate::smtp::{dot_stuff, recorded_form, sample_message, Client, PASSWORD, RCPT, USER, WAIT};
use crate::support::ca::TestCa;
use crate::support::config::{toml_str, Account, ConfigBuilder};
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_USER};

/// `[queue]` in `dir` with a short first retry, plus `extra` lines.
pub(super) fn queue_section(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "\n[queue]\ndir = {}\nretry_min = \"1s\"\n{extra}",
        toml_str(&dir.display().to_string())
    )
}

/// The proxy in queue mode for user `printer`, its account's upstream at `server`.
pub(super) async fn start(ca: &TestCa, server: String, queue: &str) -> (Proxy, ConfigBuilder) {
    let builder = ConfigBuilder::new(ca)
        .account(Account::new("main").smtp(server))
        .user(USER, PASSWORD, "main")
        .smtp("optional")
        .section_line("smtp", "delivery = \"queue\"")
        .local_cert_from(ca)
        .limit("lockout_failures", "100")
        .extra(queue);
    let proxy = Proxy::start_built(&builder, &[]).await;
    (proxy, builder)
}

pub(super) async fn logged_in(proxy: &Proxy) -> Client {
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with("235 "), "AUTH: {r}");
    c
}

#[tokio::test]
async fn upstream_down_then_up_queued_then_delivered_once() {
    let ca = TestCa::new("it-queue CA");
    let spool = tempfile::tempdir().unwrap();
    // A port with nothing listening: the upstream is down.
    let addr = super::unused_port();
    let (proxy, _builder) = start(&ca, addr.to_string(), &queue_section(spool.path(), "")).await;
    // The login is local: it works with the upstream down.
    let mut c = logged_in(&proxy).await;
    let text = sample_message("scan while QQ is down");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    proxy
        .wait_for_log("queue: upstream login failed; deliveries deferred", WAIT)
        .await;
    // The upstream comes up on that port; the retry (retry_min = 1s) delivers.
    let fake = FakeSmtp::start_on(
        std::net::TcpListener::bind(addr).unwrap(),
        SmtpOptions::implicit(&ca),
    );
    let got = fake.wait_messages(1, WAIT).await;
    assert_eq!(
        got[0].mail_from, DEFAULT_USER,
        "sender rewritten as the relay does"
    );
    assert_eq!(got[0].rcpt_to, [RCPT]);
    assert!(
        got[0].data == recorded_form(&text),
        "byte-identical: {:?}",
        got[0]
    );
    proxy.wait_for_log("queue: delivered", WAIT).await;
    assert!(proxy.terminate().await.success());
    assert_eq!(fake.messages().len(), 1, "delivered once");
    proxy.assert_no_secret(&[crate::support::smtp::DEFAULT_CODE, PASSWORD]);
}

#[tokio::test]
async fn over_max_size_is_452_never_250() {
    let ca = TestCa::new("it-queue CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let spool = tempfile::tempdir().unwrap();
    let queue = queue_section(spool.path(), "max_size = 200\n");
    let (proxy, _builder) = start(&ca, fake.config_server(), &queue).await;
    let mut c = logged_in(&proxy).await;
    // SIZE= beyond the queue's room: refused at MAIL.
    let r = c.cmd("MAIL FROM:<scan@printer.local> SIZE=5000").await;
    assert!(r.starts_with("452 4.3.1 "), "{r}");
    // No SIZE=: refused at the end of data, once the body outgrew the room.
    let big = sample_message(&"x".repeat(400));
    let r = c.send_message(&[RCPT], &dot_stuff(&big)).await;
    assert!(r.starts_with("452 4.3.1 "), "{r}");
    proxy
        .wait_for_log("the queue could not store it", WAIT)
        .await;
    // The session goes on, and a message that fits is queued and delivered.
    let small = b"Subject: s\r\n\r\nok\r\n".to_vec();
    let r = c.send_message(&[RCPT], &dot_stuff(&small)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let got = fake.wait_messages(1, WAIT).await;
    assert!(got[0].data == recorded_form(&small), "{:?}", got[0]);
    assert_eq!(
        fake.messages().len(),
        1,
        "nothing of the refused message went upstream"
    );
}
