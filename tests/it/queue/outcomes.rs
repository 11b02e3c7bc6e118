//! What the deliverer does with the upstream's verdicts on a message queued through the
//! session: QQ's rate-limit 550 keeps it queued (never a bounce), a permanent 550 at RCPT
//! bounces to the account's own address, and a partial acceptance retries only the
//! recipient that was refused temporarily.

use std::path::Path;

use qqmail_proxy::queue::store::Store;

use crate::smtp::{dot_stuff, recorded_form, sample_message, Gateway, RCPT, WAIT};
use crate::support::config::{toml_str, ConfigBuilder};
use crate::support::smtp::{Fault, SmtpOptions, DEFAULT_USER};

/// Queue mode, the queue in `dir`, a one-second first retry.
fn queue_mode(dir: &Path) -> impl FnOnce(ConfigBuilder) -> ConfigBuilder {
    let section = format!(
        "\n[queue]\ndir = {}\nretry_min = \"1s\"\n",
        toml_str(&dir.display().to_string())
    );
    move |b| {
        b.section_line("smtp", "delivery = \"queue\"")
            .extra(&section)
    }
}

/// Sends one message to `rcpts` through the gateway; asserts it was queued.
async fn queue_message(gw: &Gateway, rcpts: &[&str], text: &[u8]) {
    let mut c = gw.logged_in().await;
    let r = c.send_message(rcpts, &dot_stuff(text)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
}

#[tokio::test]
async fn qq_rate_limit_550_keeps_the_message_queued() {
    let spool = tempfile::tempdir().unwrap();
    let fake = |ca: &_| {
        SmtpOptions::implicit(ca).fault(Fault::RejectData(550, "Ip frequency limited".into()))
    };
    let gw = Gateway::with(fake, queue_mode(spool.path())).await;
    queue_message(&gw, &[RCPT], &sample_message("rate limited")).await;
    let line = gw
        .proxy
        .wait_for_log("queue: delivery deferred", WAIT)
        .await;
    assert!(line.contains("ratelimited"), "{line}");
    assert!(!gw.proxy.logs().contains("bounce"), "{}", gw.proxy.logs());
    let left = Store::open_existing(spool.path()).unwrap().list().unwrap();
    assert_eq!(left.len(), 1, "still queued");
    assert!(left[0].pending().count() == 1, "{:?}", left[0].recipients);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn permanent_550_at_rcpt_bounces_to_the_account() {
    let spool = tempfile::tempdir().unwrap();
    let gone = "gone@example.com";
    let fake =
        move |ca: &_| SmtpOptions::implicit(ca).rcpt_replies(gone, &["550 Mailbox not found"]);
    let gw = Gateway::with(fake, queue_mode(spool.path())).await;
    queue_message(&gw, &[gone], &sample_message("to nobody")).await;
    // The only message the upstream takes is the bounce, to the account's own address.
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_eq!(got[0].rcpt_to, [DEFAULT_USER]);
    let dsn = String::from_utf8_lossy(&got[0].data);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains(gone), "{dsn}");
    assert!(dsn.contains("Mailbox not found"), "{dsn}");
    gw.proxy.wait_for_log("queue: bounce queued", WAIT).await;
}

#[tokio::test]
async fn partial_acceptance_retries_only_the_refused_recipient() {
    let spool = tempfile::tempdir().unwrap();
    let later = "later@example.com";
    let fake =
        move |ca: &_| SmtpOptions::implicit(ca).rcpt_replies(later, &["450 4.2.1 Mailbox busy"]);
    let gw = Gateway::with(fake, queue_mode(spool.path())).await;
    let text = sample_message("two recipients");
    queue_message(&gw, &[RCPT, later], &text).await;
    let got = gw.fake.wait_messages(2, WAIT).await;
    assert_eq!(
        got[0].rcpt_to,
        [RCPT],
        "first attempt: the accepted one only"
    );
    assert_eq!(got[1].rcpt_to, [later], "the retry: the refused one only");
    for m in &got {
        assert!(m.data == recorded_form(&text), "byte-identical: {m:?}");
    }
    gw.proxy.wait_for_log("queue: delivered", WAIT).await;
    assert!(gw.proxy.terminate().await.success());
    assert_eq!(gw.fake.messages().len(), 2, "nobody got it twice");
    let left = Store::open_existing(spool.path()).unwrap().list().unwrap();
    assert!(left.is_empty(), "{left:?}");
}
