//! Warm upstream spares: during a burst of logins the next upstream connection is made
//! ahead of time (so a login costs only the upstream's LOGIN round trip); a proxy used
//! now and then opens no extra connection, and `warm_upstream_ttl = "0s"` turns it off.
//! The next spare is made only once the session that triggered it has ended or has been
//! logged in for a while, so its handshake does not slow that session down.

use super::{Gateway, PASSWORD, T, USER};

async fn login_and_logout(gw: &Gateway) {
    let mut c = gw.logged_in().await;
    c.send(b"z LOGOUT\r\n").await;
    let _ = c.tagged("z").await;
}

#[tokio::test]
async fn a_burst_of_logins_keeps_one_spare_ready() {
    let gw = Gateway::start(|o| o, |b| b).await;
    login_and_logout(&gw).await;
    gw.fake.wait_logins(1, T).await;
    // One login: no spare.
    assert_eq!(gw.fake.connections(), 1);
    login_and_logout(&gw).await;
    // The second login within the TTL makes a spare: a third connection, not logged in.
    assert_eq!(gw.fake.wait_connections(3, T).await, 3);
    assert_eq!(gw.fake.logins().len(), 2);
    login_and_logout(&gw).await;
    // The third login used the spare (and a new spare follows).
    gw.fake.wait_logins(3, T).await;
    assert_eq!(gw.fake.wait_connections(4, T).await, 4);
    assert_eq!(gw.fake.logins().len(), 3);
    gw.assert_clean();
}

/// The proxy's `upstream::pool::SETTLE`: how long a refill waits for a running session.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

#[tokio::test]
async fn the_next_spare_waits_while_the_session_that_took_a_spare_runs() {
    const READY: &str = "warm upstream spare ready";
    let gw = Gateway::start(|o| o, |b| b).await;
    login_and_logout(&gw).await;
    gw.fake.wait_logins(1, T).await;
    login_and_logout(&gw).await;
    gw.proxy.wait_for_log(READY, T).await;
    // The third login takes that spare (the third connection) and triggers the next
    // refill. Its session stays open, so the refill may start only SETTLE after that
    // login succeeded, which was after the login reached the fake.
    let mark = gw.proxy.log_mark();
    let held = gw.logged_in().await;
    gw.proxy.wait_for_log_since(mark, READY, T).await;
    let log = gw.fake.snapshot();
    assert_eq!((log.logins.len(), log.connections), (3, 4), "{log:?}");
    let waited = log.connected_at[3].saturating_duration_since(log.login_at[2]);
    assert!(
        waited >= SETTLE,
        "the next spare's connection came {waited:?} after the login it follows \
         (session still open)"
    );
    drop(held);
    gw.assert_clean();
}

#[tokio::test]
async fn a_rejected_login_makes_no_spare() {
    // The provider refuses the stored code: a burst of failing logins must not open
    // further connections (QQ counts connection frequency).
    let gw = Gateway::start(|o| o.code("not-the-stored-code"), |b| b).await;
    for n in 1..=3 {
        let mut c = gw.raw().await;
        c.send(format!("a LOGIN {USER} {PASSWORD}\r\n").as_bytes())
            .await;
        let reply = c.tagged("a").await;
        assert!(reply.starts_with("a NO "), "{reply}");
        let logins = gw.fake.wait_logins(n, T).await;
        assert!(logins.iter().all(|l| !l.accepted));
        assert_eq!(gw.fake.connections(), n, "login {n}");
    }
    gw.assert_clean();
}

#[tokio::test]
async fn zero_ttl_opens_exactly_one_connection_per_login() {
    let gw = Gateway::start(|o| o, |b| b.limit("warm_upstream_ttl", "\"0s\"")).await;
    for n in 1..=3 {
        login_and_logout(&gw).await;
        gw.fake.wait_logins(n, T).await;
    }
    assert_eq!(gw.fake.connections(), 3);
    gw.assert_clean();
}
