//! The global ceiling on password checks (issue 16, item 2): argon2 must not be a way to
//! burn the CPU. With `max_password_checks_per_second = 1` and the success cache off,
//! twenty logins at once (the right password, so neither the lockout nor the per-user
//! budget is involved) get their checks one a second for at most 10 s; the rest are
//! refused at once with a temporary failure, which clients retry, and counted.

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

const LOGINS: usize = 20;
/// Checks that can start within the 10 s a login may wait, at one a second.
const MAX_CHECKED: usize = 11;
const BUSY: &str = "454 4.7.0 too many logins at once, try again shortly\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_are_capped_per_second() {
    let ca = TestCa::new("check ceiling CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = smtp_builder(&ca, &smtp)
        .limit("max_password_checks_per_second", "1")
        .limit("auth_cache_ttl", "\"0s\"")
        .limit("max_sessions_per_ip", "64")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    let tasks: Vec<_> = (0..LOGINS)
        .map(|_| tokio::spawn(async move { smtp_login(addr, None, USER, PASSWORD).await.1 }))
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("login task").text());
    }
    let accepted = replies.iter().filter(|r| r.starts_with("235 ")).count();
    let busy = replies.iter().filter(|r| *r == BUSY).count();
    println!("{LOGINS} logins at once, 1 check/s: {accepted} checked and accepted, {busy} busy");
    assert_eq!(accepted + busy, LOGINS, "{replies:?}");
    assert!(
        (1..=MAX_CHECKED).contains(&accepted),
        "{accepted} checks ran: more than one a second for 10 s"
    );
    let (_, metrics) = crate::admin::get(proxy.admin_addr(), "/metrics").await;
    let counter = |name: &str| -> usize {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert_eq!(
        counter("qqmail_proxy_password_checks_refused_total"),
        busy,
        "every busy answer counted"
    );
    assert_eq!(counter("qqmail_proxy_password_checks_total"), accepted);
    assert!(proxy.logs().contains("too many password checks at once"));
    proxy.assert_no_secret(&secrets());
}
