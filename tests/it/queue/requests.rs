//! `queue retry --all` and the `queue` commands with no server running, through the
//! real binary: with the proxy stopped, `delete` says plainly that nothing changed yet
//! and that the request waits for `serve`; the next start applies it before any
//! delivery (the deleted message never goes out); `retry --all` then makes the running
//! server try every waiting message at once instead of after `retry_min`.

use std::path::Path;

use qqmail_proxy::queue::store::Store;

use super::commands::queue_one;
use super::until;
use crate::cli::{cli, Ran};
use crate::smtp::WAIT;
use crate::support::ca::TestCa;
use crate::support::config::ConfigBuilder;
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, SmtpOptions};

/// Runs `qqmail-proxy queue ARGS --config ...` as the operator would.
async fn queue_cmd(b: &ConfigBuilder, config: &Path, args: &[&str]) -> Ran {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    let config = config.display().to_string();
    all.extend(["--config", &config]);
    let env = b.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    cli(&all, &env, None, b.dir()).await
}

#[tokio::test]
async fn requests_without_a_server_wait_for_it_and_retry_all_sends_everything() {
    let ca = TestCa::new("it-queue-requests CA");
    let spool = tempfile::tempdir().unwrap();
    let addr = super::unused_port();
    let b = super::queue_mode_builder(&ca, addr, spool.path());
    let config = b.dir().join("config.toml");
    std::fs::write(&config, b.build()).expect("write config");

    let proxy = Proxy::start_built(&b, &[]).await;
    let dropped = queue_one(&proxy, "deleted while stopped").await;
    let first = queue_one(&proxy, "first").await;
    let second = queue_one(&proxy, "second").await;
    // `retry --all` while serving: every message gets an attempt now (the upstream is
    // down, so each then waits about retry_min).
    let retried = queue_cmd(&b, &config, &["retry", "--all"])
        .await
        .success()
        .stdout;
    assert_eq!(retried, "done\n");
    let store = Store::open_existing(spool.path()).unwrap();
    until(WAIT, || {
        store.list().unwrap().iter().all(|e| e.attempts > 0)
    })
    .await;
    assert!(proxy.terminate().await.success());

    // No server: the command says that nothing happened yet, and why.
    let del = queue_cmd(&b, &config, &["delete", &dropped])
        .await
        .success()
        .stdout;
    assert!(
        del.contains("no running qqmail-proxy serve")
            && del.contains("nothing was changed")
            && del.contains("applied when serve runs"),
        "{del}"
    );
    let list = queue_cmd(&b, &config, &["list"]).await.success().stdout;
    assert!(
        list.contains(&dropped),
        "not applied by the command itself: {list}"
    );

    // The upstream is back and the proxy starts: the delete is applied first.
    let fake = FakeSmtp::start_on(
        std::net::TcpListener::bind(addr).unwrap(),
        SmtpOptions::implicit(&ca),
    );
    let proxy = Proxy::start_built(&b, &[]).await;
    proxy
        .wait_for_log(
            "applied an operator's request made while the proxy was stopped",
            WAIT,
        )
        .await;
    let list = queue_cmd(&b, &config, &["list"]).await.success().stdout;
    assert!(!list.contains(&dropped), "{list}");
    assert!(list.contains(&first) && list.contains(&second), "{list}");

    // Both wait for retry_min; `retry --all` sends them now.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(30);
    for e in store.list().unwrap() {
        assert!(e.next_attempt > later, "{} is not waiting: {e:?}", e.id);
    }
    let retried = queue_cmd(&b, &config, &["retry", "--all"])
        .await
        .success()
        .stdout;
    assert_eq!(retried, "done\n");
    let got = fake.wait_messages(2, WAIT).await;
    let subjects: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    assert!(
        subjects.iter().any(|s| s.contains("Subject: first"))
            && subjects.iter().any(|s| s.contains("Subject: second")),
        "{subjects:?}"
    );
    until(WAIT, || store.list().unwrap().is_empty()).await;
    assert!(proxy.terminate().await.success());
    assert_eq!(
        fake.messages().len(),
        2,
        "the deleted message never went out"
    );
}
