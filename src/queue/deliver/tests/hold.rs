//! A second `535` to the stored code holds the account: no delivery attempt, not even a
//! login, until the probe after `retry_max` or the operator's `queue retry`; `/healthz`
//! (`held_accounts`) and the metrics show it meanwhile; a login that works resumes.

use super::*;

fn logins(log: &Arc<Mutex<Vec<u8>>>) -> usize {
    count(&log.lock().unwrap(), LOGIN)
}

/// Held after two refusals (the second one after the short pause).
async fn held(store: &Store) -> (Deliverer, Arc<AccountStatus>, Arc<Mutex<Vec<u8>>>) {
    put(store, &["b@x.cn"], t0(), BODY);
    let (d, status, log) = start(
        store,
        vec![Err(refused_code()), Err(refused_code())],
        settings(),
    );
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    assert_eq!(logins(&log), 2, "the first 535 is retried once");
    assert!(status
        .failing()
        .is_some_and(|h| h.contains("authorization code")));
    (d, status, log)
}

#[tokio::test(start_paused = true)]
async fn a_second_535_holds_the_account_until_a_login_works() {
    let (_dir, store) = store();
    let (d, status, log) = held(&store).await;
    // A new message and its wake-up do not bring a login while the account is held.
    put(&store, &["c@x.cn"], t0() + Duration::from_secs(300), BODY);
    d.wake(ACCOUNT);
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    assert_eq!(logins(&log), 2, "no attempt while held");
    assert_eq!(store.list().unwrap().len(), 2, "still queued while held");
    assert_eq!(status.delivered.load(Ordering::Relaxed), 0);
    // /healthz names the account (on loopback) and the metrics mark it held.
    let held = crate::queue::metrics::held_accounts(&d.intake());
    assert!(
        held.len() == 1
            && held[0].starts_with("queue account ")
            && held[0].contains("authorization code"),
        "{held:?}"
    );
    let text = crate::queue::metrics::render(&d.intake(), std::time::SystemTime::now()).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("qqmail_proxy_queue_account_held{") && l.ends_with("} 1")),
        "{text}"
    );
    assert!(text.contains("qqmail_proxy_queue_messages 2"), "{text}");
    // The probe after retry_max (1 h) logs in; it works, and everything goes.
    let took = drained(&store, Duration::from_secs(2 * 3600)).await;
    assert!(took >= Duration::from_secs(5 * 60), "{took:?}");
    assert_eq!(status.failing(), None, "resumed after a login worked");
    assert!(crate::queue::metrics::held_accounts(&d.intake()).is_empty());
    d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(count(&log.lock().unwrap(), BODY), 2);
}

/// The hint tells the owner to renew the code, then `queue retry --all`: that retry
/// probes the held account at once instead of after `retry_max`.
#[tokio::test(start_paused = true)]
async fn a_retry_probes_a_held_account_at_once() {
    let (_dir, store) = store();
    let (d, status, log) = held(&store).await;
    store.request(&Request::RetryAll).unwrap();
    drained(&store, Duration::from_secs(60)).await;
    assert_eq!(logins(&log), 3, "one probe login, which worked");
    assert_eq!(status.failing(), None);
    d.shutdown(Duration::from_secs(5)).await;
}
