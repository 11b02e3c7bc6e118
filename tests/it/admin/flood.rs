//! Issue 16 item 4: flooding the admin port with idle connections must not take the mail
//! listeners down. The proxy runs under a low descriptor limit (`prlimit`, soft 128, hard
//! 256); it raises the soft limit to the hard one and says so, the flood gets at most
//! `qqmail_proxy::admin::MAX_CONNECTIONS` served at once (the rest 503 and closed), an SMTP client still
//! gets its greeting, and the admin port answers again once the flood ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::support::proxy::Launch;

/// Idle connections the flood keeps open, far more than the proxy's soft limit at start
/// (128): before the fix each held a descriptor, the admin loop took every one freed and
/// the mail listeners' accept failed with EMFILE.
const FLOOD: usize = 800;

/// One `GET /healthz`, tolerating a refusal: the status line, or "" when the connection
/// was closed or reset without one.
async fn try_healthz(addr: std::net::SocketAddr) -> String {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().next().unwrap_or("").to_string()
}

/// Opens idle connections to `admin` (about 1,000 a second), keeping the newest
/// [`FLOOD`] open, until `stop`; returns how many it opened.
async fn flood_until(
    admin: std::net::SocketAddr,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    count: Arc<AtomicUsize>,
) -> usize {
    let mut open = std::collections::VecDeque::with_capacity(FLOOD);
    let mut opened = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = &mut stop => return opened,
            _ = tick.tick() => {}
        }
        for _ in 0..10 {
            let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(admin));
            if let Ok(Ok(tcp)) = connect.await {
                opened += 1;
                count.store(opened, Ordering::Relaxed);
                open.push_back(tcp);
                if open.len() > FLOOD {
                    open.pop_front();
                }
            }
        }
    }
}

#[tokio::test]
async fn admin_flood_leaves_mail_served_and_raises_nofile() {
    // The flood's own descriptors must not hit the test process's limit.
    let own = qqmail_proxy::fdlimit::raise_nofile();
    assert!(
        own.now.is_none_or(|n| n > FLOOD as u64 + 200),
        "the test needs more than {} descriptors, its limit is {own:?}",
        FLOOD + 200
    );
    let ca = TestCa::new("admin flood CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp_fake(&smtp))
        .user("printer", PASSWORD, "main")
        .smtp("off")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"");
    let launch = Launch::from_builder(&builder).program(
        "prlimit",
        &["--nofile=128:256", "--", env!("CARGO_BIN_EXE_qqmail-proxy")],
    );
    let proxy = Proxy::launch(launch).await;
    let admin = proxy.admin_addr();

    // A sustained flood: new idle connections keep coming while the oldest are dropped,
    // so before the fix every descriptor the proxy freed went to the next one.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let count = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn(flood_until(admin, stopped, count.clone()));
    while count.load(Ordering::Relaxed) < FLOOD / 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Mail still works: a greeting, and a login (two more descriptors: client, upstream).
    let mut c = crate::hardening::Client::connect(proxy.smtp_addr(), None)
        .await
        .expect("connect to SMTP during the flood");
    let greeting = c.smtp_reply().await.text();
    assert!(greeting.starts_with("220 "), "{greeting}");
    drop(c);
    assert!(auth(proxy.smtp_addr(), "printer", PASSWORD)
        .await
        .starts_with("235"));
    let refused = proxy
        .wait_for_log("admin connection refused", Duration::from_secs(10))
        .await;
    assert!(refused.contains("connection limit reached"), "{refused}");

    // The flood ends: the admin port answers again (its slots free as the idle
    // connections close), within the proxy's 5 s request timeout at most.
    let _ = stop.send(());
    let opened = flood.await.expect("flood task");
    // More than the proxy's hard limit (256) came in before mail was tried.
    assert!(opened >= FLOOD / 2, "only {opened} flood connections");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        let status = try_healthz(admin).await;
        if status.starts_with("HTTP/1.1 200") {
            break;
        }
        // Anything but a 503 refusal (or a reset) would be a bug.
        assert!(
            status.is_empty() || status.starts_with("HTTP/1.1 503"),
            "{status}"
        );
        seen.push(status);
        assert!(
            Instant::now() < deadline,
            "the admin port did not recover after the flood: {seen:?}\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The limit was raised at start, and the log says from what to what.
    let raised = proxy
        .wait_for_log("raised the open file limit", Duration::from_secs(5))
        .await;
    for needle in ["\"was\":\"128\"", "\"soft\":\"256\"", "\"hard\":\"256\""] {
        assert!(raised.contains(needle), "{needle} missing in {raised}");
    }
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD]);
}
