//! `serve` runs the queue: with `[smtp] delivery = "queue"` it opens `[queue] dir`,
//! delivers what is queued there through the account's upstream (byte for byte, once),
//! counts it in `/metrics`, and on SIGTERM stops its deliverer within `shutdown_grace`
//! with nothing left behind.

use std::path::Path;
use std::time::SystemTime;

use qqmail_proxy::queue::store::{NewMessage, Store};

use crate::smtp::{dot_stuff, sample_message, Gateway, RCPT, WAIT};
use crate::support::config::toml_str;
use crate::support::smtp::{SmtpOptions, DEFAULT_USER};

/// Queues `body` (transmission form, without the final dot) for account `main`.
fn queue_one(dir: &Path, body: &[u8]) -> String {
    let (store, _) = Store::open(dir, None).expect("open queue");
    let msg = NewMessage {
        account: "main".into(),
        sender: DEFAULT_USER.into(),
        null_sender: false,
        recipients: vec![RCPT.into()],
    };
    let mut w = store.begin(msg, SystemTime::now(), None).expect("begin");
    w.write(body).expect("write");
    w.commit().expect("commit").id.to_string()
}

#[tokio::test]
async fn serve_delivers_what_was_queued_once_byte_identical() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().join("queue");
    let body = dot_stuff(&sample_message("queued before start"));
    let id = queue_one(&dir, &body);
    let queue_section = format!(
        "\n[queue]\ndir = {}\nretry_min = \"1s\"",
        toml_str(&dir.display().to_string())
    );
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.section_line("smtp", "delivery = \"queue\"")
            .extra(&queue_section)
            .extra("\n[admin]\nlisten = \"127.0.0.1:0\"")
    })
    .await;
    gw.proxy.wait_for_log("queue opened", WAIT).await;
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_eq!(
        (got[0].mail_from.as_str(), &got[0].rcpt_to[..]),
        (DEFAULT_USER, &[RCPT.to_string()][..])
    );
    // The fake records the bytes up to the final CRLF.CRLF; the store keeps the CRLF.
    let mut sent = got[0].data.clone();
    sent.extend_from_slice(b"\r\n");
    assert!(sent == body, "byte-identical: {:?}", got[0]);
    let line = gw.proxy.wait_for_log("queue: delivered", WAIT).await;
    assert!(line.contains(&id), "{line}");
    // The metrics count it (the store's removal follows the log line: wait on it).
    let delivered = "qqmail_proxy_queue_deliveries_total{account=\"main\",result=\"delivered\"} 1";
    let (_, metrics) = crate::admin::get(gw.proxy.admin_addr(), "/metrics").await;
    assert!(metrics.contains(delivered), "{metrics}");
    for line in [
        "qqmail_proxy_queue_account_held{account=\"main\"} 0",
        "qqmail_proxy_queue_readable 1",
        "qqmail_proxy_queue_deliveries_total{account=\"main\",result=\"bounced\"} 0",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    let (_, health) = crate::admin::get(gw.proxy.admin_addr(), "/healthz").await;
    assert_eq!(health, "ok\n");
    assert!(gw.proxy.terminate().await.success());
    assert!(gw.proxy.logs().contains("queue: deliveries stopped"));
    let left = Store::open_existing(&dir)
        .expect("queue")
        .list()
        .expect("list");
    assert!(left.is_empty(), "still queued: {left:?}");
    assert_eq!(gw.fake.messages().len(), 1, "delivered once");
    gw.assert_no_secret(&[]);
}
