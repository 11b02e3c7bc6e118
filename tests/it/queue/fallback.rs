//! `delivery = "fallback"`: relayed as today, with a copy that is queued only when the
//! upstream fails temporarily. A drop mid-DATA gives `250 queued`, and the message is
//! delivered once when the upstream works again; a message the upstream takes gets the
//! upstream's own 250 and leaves nothing in the queue.

use std::net::SocketAddr;
use std::time::Duration;

use qqmail_proxy::queue::store::Store;

use crate::smtp::{dot_stuff, recorded_form, sample_message, Client, PASSWORD, RCPT, USER, WAIT};
use crate::support::ca::TestCa;
use crate::support::config::{toml_str, Account, ConfigBuilder};
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, Fault, SmtpOptions};

/// Binds `addr` again once the previous fake's listener is gone (its task is aborted
/// on drop, and the socket closes when the runtime drops the task).
async fn rebind(addr: SocketAddr) -> std::net::TcpListener {
    for _ in 0..500 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} stayed bound");
}

/// Starts the upstream at `addr` again and waits until the queued `text` reached it,
/// byte-identical, and the proxy logged the delivery.
async fn delivered_when_up(proxy: &Proxy, ca: &TestCa, addr: SocketAddr, text: &[u8]) -> FakeSmtp {
    let fake = FakeSmtp::start_on(rebind(addr).await, SmtpOptions::implicit(ca));
    let got = fake.wait_messages(1, WAIT).await;
    assert!(
        got[0].data == recorded_form(text),
        "byte-identical: {:?}",
        got[0]
    );
    proxy.wait_for_log("queue: delivered", WAIT).await;
    fake
}

async fn send(proxy: &Proxy, text: &[u8]) -> String {
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with("235 "), "AUTH: {r}");
    let r = c.send_message(&[RCPT], &dot_stuff(text)).await;
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    r
}

#[tokio::test]
async fn a_drop_mid_data_is_queued_and_delivered_once() {
    let ca = TestCa::new("it-fallback CA");
    let spool = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropping = SmtpOptions::implicit(&ca).fault(Fault::DropMidData { after_bytes: 64 });
    let flaky = FakeSmtp::start_on(listener, dropping);
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp(addr.to_string()))
        .user(USER, PASSWORD, "main")
        .smtp("optional")
        .section_line("smtp", "delivery = \"fallback\"")
        .local_cert_from(&ca)
        .limit("lockout_failures", "100")
        .extra(&format!(
            "\n[queue]\ndir = {}\nretry_min = \"1s\"\n",
            toml_str(&spool.path().display().to_string())
        ));
    let proxy = Proxy::start_built(&builder, &[]).await;
    let text = sample_message("the upstream drops this one");
    let r = send(&proxy, &text).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    proxy
        .wait_for_log("fallback queues the message", WAIT)
        .await;
    drop(flaky);
    let fake = delivered_when_up(&proxy, &ca, addr, &text).await;
    // The upstream works: its own 250 reaches the client, and no copy is kept.
    let other = sample_message("relayed at once");
    let r = send(&proxy, &other).await;
    assert!(
        r.starts_with("250 OK") && !r.starts_with("250 2.0.0 Ok: queued"),
        "{r}"
    );
    let got = fake.wait_messages(2, WAIT).await;
    assert!(got[1].data == recorded_form(&other));
    assert!(proxy.terminate().await.success());
    assert_eq!(fake.messages().len(), 2, "each delivered once");
    let left = Store::open_existing(spool.path()).unwrap().list().unwrap();
    assert!(left.is_empty(), "{left:?}");
    proxy.assert_no_secret(&[crate::support::smtp::DEFAULT_CODE, PASSWORD]);
}

/// An allow-listed device in `fallback` mode whose upstream cannot be reached when it
/// says MAIL: a temporary failure, so the message is queued (`250 queued`) instead of
/// refused with 451, and delivered once the upstream is back.
#[tokio::test]
async fn upstream_down_at_mail_is_queued_and_delivered_once() {
    let ca = TestCa::new("it-fallback-down CA");
    let spool = tempfile::tempdir().unwrap();
    // A port with nothing behind it until the fake starts there.
    let addr = super::unused_port();
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp(addr.to_string()))
        .user(USER, PASSWORD, "main")
        .smtp("off")
        .allow_unauthenticated(&["127.0.0.1/32"], "main")
        .section_line("smtp", "delivery = \"fallback\"")
        .extra(&format!(
            "\n[queue]\ndir = {}\nretry_min = \"1s\"\n",
            toml_str(&spool.path().display().to_string())
        ));
    let proxy = Proxy::start_built(&builder, &[]).await;
    let text = sample_message("scanned while QQ was down");
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    proxy
        .wait_for_log("fallback queues this session's mail", WAIT)
        .await;
    let fake = delivered_when_up(&proxy, &ca, addr, &text).await;
    assert!(proxy.terminate().await.success());
    assert_eq!(fake.messages().len(), 1, "delivered once");
    proxy.assert_no_secret(&[crate::support::smtp::DEFAULT_CODE, PASSWORD]);
}

/// A proxy in `fallback` mode over the upstream at `addr`.
async fn fallback_proxy(ca: &TestCa, spool: &std::path::Path, addr: SocketAddr) -> Proxy {
    let builder = ConfigBuilder::new(ca)
        .account(Account::new("main").smtp(addr.to_string()))
        .user(USER, PASSWORD, "main")
        .smtp("optional")
        .section_line("smtp", "delivery = \"fallback\"")
        .local_cert_from(ca)
        .extra(&format!(
            "\n[queue]\ndir = {}\nretry_min = \"1s\"\n",
            toml_str(&spool.display().to_string())
        ));
    Proxy::start_built(&builder, &[]).await
}

/// A `451` to MAIL is only "not now": the client gets its MAIL accepted locally and
/// `250 queued` at the end, and the message reaches the upstream once it takes MAILs.
#[tokio::test]
async fn a_temporary_refusal_at_mail_is_queued_and_delivered_once() {
    let ca = TestCa::new("it-fallback-mail CA");
    let spool = tempfile::tempdir().unwrap();
    let opts = SmtpOptions::implicit(&ca).mail_replies(&["451 4.3.0 Try again later"]);
    let fake = FakeSmtp::start(opts);
    let proxy = fallback_proxy(&ca, spool.path(), fake.addr()).await;
    let text = sample_message("MAIL deferred by the upstream");
    let r = send(&proxy, &text).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let got = fake.wait_messages(1, WAIT).await;
    assert!(got[0].data == recorded_form(&text), "{:?}", got[0]);
    proxy.wait_for_log("queue: delivered", WAIT).await;
    assert!(proxy.terminate().await.success());
    assert_eq!(fake.messages().len(), 1, "delivered once");
}

/// In one transaction: a recipient the upstream accepts, one it refuses for good (its
/// `550` reaches the client unchanged), and one it rate-limits (QQ's "frequency
/// limited" 550, temporary in effect): the client gets 250 for that one, and the whole
/// message is queued for the two recipients it was told 250, then delivered once to
/// both, byte-identical.
#[tokio::test]
async fn a_rate_limit_at_rcpt_queues_the_message_for_every_accepted_recipient() {
    const GONE: &str = "gone@example.com";
    const LIMITED: &str = "limited@example.com";
    let ca = TestCa::new("it-fallback-rcpt CA");
    let spool = tempfile::tempdir().unwrap();
    let opts = SmtpOptions::implicit(&ca)
        .rcpt_replies(GONE, &["550 Mailbox not found"])
        .rcpt_replies(LIMITED, &["550 Ip frequency limited"]);
    let fake = FakeSmtp::start(opts);
    let proxy = fallback_proxy(&ca, spool.path(), fake.addr()).await;
    let text = sample_message("RCPT rate-limited by the upstream");
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with("235 "), "AUTH: {r}");
    let r = c.cmd(&format!("MAIL FROM:<{}>", crate::smtp::SENDER)).await;
    assert!(r.starts_with("250"), "MAIL: {r}");
    assert_eq!(c.cmd(&format!("RCPT TO:<{RCPT}>")).await, "250 OK\r\n");
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{GONE}>")).await,
        "550 Mailbox not found\r\n",
        "a permanent refusal is passed on"
    );
    let r = c.cmd(&format!("RCPT TO:<{LIMITED}>")).await;
    assert!(r.starts_with("250 "), "RCPT after a rate limit: {r}");
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354"), "DATA: {r}");
    c.send(&dot_stuff(&text)).await;
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    let got = fake.wait_messages(1, WAIT).await;
    assert!(got[0].data == recorded_form(&text), "{:?}", got[0]);
    assert_eq!(got[0].rcpt_to, vec![RCPT.to_string(), LIMITED.to_string()]);
    proxy.wait_for_log("queue: delivered", WAIT).await;
    assert!(proxy.terminate().await.success());
    assert_eq!(fake.messages().len(), 1, "delivered once");
    let left = Store::open_existing(spool.path()).unwrap().list().unwrap();
    assert!(left.is_empty(), "{left:?}");
}
