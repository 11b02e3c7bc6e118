//! `qqmail-proxy queue list|show|retry|delete` run as the operator runs them, against a
//! proxy serving in `queue` mode whose upstream is down: the listing shows the queued
//! message with its recipient and last error, `show` its headers (the body only with
//! `--body`), `delete` removes one that is then never delivered, and `retry` delivers
//! the other as soon as the upstream is back.

use crate::cli::cli;
use crate::smtp::{dot_stuff, sample_message, Client, PASSWORD, RCPT, USER, WAIT};
use crate::support::ca::TestCa;
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, SmtpOptions};

/// Sends one message with `subject`; returns its queue ID from the 250 reply.
pub(crate) async fn queue_one(proxy: &Proxy, subject: &str) -> String {
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with("235 "), "AUTH: {r}");
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message(subject)))
        .await;
    let id = r
        .trim_end()
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not queued: {r}"))
        .to_string();
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    id
}

#[tokio::test]
async fn list_show_delete_and_retry_while_serving() {
    let ca = TestCa::new("it-queue-cli CA");
    let spool = tempfile::tempdir().unwrap();
    // A port with nothing listening: the upstream is down.
    let addr = super::unused_port();
    let b = super::queue_mode_builder(&ca, addr, spool.path());
    let proxy = Proxy::start_built(&b, &[]).await;
    let path = b.dir().join("config.toml");
    std::fs::write(&path, b.build()).expect("write config");
    let path = path.display().to_string();
    let env = b.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = |args: Vec<&'static str>, extra: Option<String>| {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.extend(extra);
        args.extend(["--config".to_string(), path.clone()]);
        let env = env.clone();
        let dir = b.dir().to_path_buf();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args, &env, None, &dir).await
        }
    };

    let keep = queue_one(&proxy, "keep me").await;
    proxy
        .wait_for_log("queue: upstream login failed; deliveries deferred", WAIT)
        .await;
    // The log line comes just before the envelope's new state is written: ask again
    // until the listing shows the failed attempt (bounded).
    let mut list = String::new();
    for _ in 0..50 {
        list = run(vec!["queue", "list"], None).await.success().stdout;
        if list.contains("last error") {
            break;
        }
    }
    for want in [
        keep.as_str(),
        RCPT,
        "(pending)",
        "last error (temporary)",
        "hint: ",
        "-- 1 message",
    ] {
        assert!(list.contains(want), "{want:?} in\n{list}");
    }

    // The same listing for scripts: one JSON array.
    let json = run(vec!["queue", "list", "--json"], None)
        .await
        .success()
        .stdout;
    let all: serde_json::Value = serde_json::from_str(&json).expect("queue list --json");
    let m = &all[0];
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(m["id"], keep.as_str(), "{json}");
    assert_eq!(m["account"], "main", "{json}");
    assert_eq!(m["recipients"][0]["address"], RCPT, "{json}");
    assert_eq!(m["recipients"][0]["state"], "pending", "{json}");
    assert!(m["attempts"].as_u64() >= Some(1), "{json}");
    assert!(
        m["age_seconds"].is_u64() && m["size"].as_u64() > Some(0),
        "{json}"
    );
    assert_eq!(m["last_error"]["class"], "temporary", "{json}");
    assert!(m["hint"].as_str().is_some_and(|h| !h.is_empty()), "{json}");
    let help = run(vec!["queue", "list", "--help"], None)
        .await
        .success()
        .stdout;
    assert!(
        help.contains("--json") && help.contains("JSON array"),
        "{help}"
    );

    let show = run(vec!["queue", "show"], Some(keep.clone()))
        .await
        .success()
        .stdout;
    assert!(show.contains("Subject: keep me"), "{show}");
    assert!(
        !show.contains("page 1"),
        "body shown without --body:\n{show}"
    );
    let full = run(vec!["queue", "show", "--body"], Some(keep.clone()))
        .await
        .success()
        .stdout;
    assert!(full.contains("Subject: keep me"), "{full}");
    // Dot-unstuffed for display: the lines read as the client wrote them.
    assert!(
        full.contains("page 1\n.leading dot\n.\n..two dots\n"),
        "{full}"
    );

    let drop = queue_one(&proxy, "delete me").await;
    let del = run(vec!["queue", "delete"], Some(drop.clone()))
        .await
        .success()
        .stdout;
    assert_eq!(del, "done\n");
    let list = run(vec!["queue", "list"], None).await.success().stdout;
    assert!(list.contains(&keep) && !list.contains(&drop), "{list}");
    let gone = run(vec!["queue", "delete"], Some(drop.clone()))
        .await
        .failure()
        .stderr;
    assert!(
        gone.contains(&drop) && gone.contains("queue list"),
        "{gone}"
    );
    let bad = run(vec!["queue", "show", "nonsense"], None)
        .await
        .failure()
        .stderr;
    assert!(bad.contains("not a queue ID"), "{bad}");

    // The upstream comes up; `retry` makes the deliverer try now, not after retry_min.
    let fake = FakeSmtp::start_on(
        std::net::TcpListener::bind(addr).unwrap(),
        SmtpOptions::implicit(&ca),
    );
    let retried = run(vec!["queue", "retry"], Some(keep.clone()))
        .await
        .success()
        .stdout;
    assert_eq!(retried, "done\n");
    let got = fake.wait_messages(1, WAIT).await;
    assert!(
        String::from_utf8_lossy(&got[0].data).contains("Subject: keep me"),
        "{:?}",
        got[0]
    );
    proxy.wait_for_log("queue: delivered", WAIT).await;
    let list = run(vec!["queue", "list"], None).await.success().stdout;
    assert_eq!(list, "Mail queue is empty\n");
    let json = run(vec!["queue", "list", "--json"], None)
        .await
        .success()
        .stdout;
    assert_eq!(json, "[]\n");
    assert!(proxy.terminate().await.success());
    assert_eq!(
        fake.messages().len(),
        1,
        "the deleted message never went out"
    );
}
