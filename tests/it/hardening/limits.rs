//! Session limits: `max_sessions` and `max_sessions_per_ip` refuse the next connection
//! with each protocol's "Too many connections" reply (and a reload changes them for new
//! connections), and `max_auth_failures` closes a session after that many failed logins,
//! in SMTP, IMAP and POP3.

use std::net::Ipv4Addr;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

/// What each protocol answers a connection over a limit (src/server.rs `busy_reply`).
const BUSY: [(&str, &str); 3] = [
    (
        "smtp",
        "421 4.7.0 Too many connections, try again later\r\n",
    ),
    ("imap", "* BYE Too many connections, try again later\r\n"),
    (
        "pop3",
        "-ERR [SYS/TEMP] Too many connections, try again later\r\n",
    ),
];

fn addr_of(proxy: &Proxy, protocol: &str) -> SocketAddr {
    match protocol {
        "smtp" => proxy.smtp_addr(),
        "imap" => proxy.imap_addr(),
        _ => proxy.pop3_addr(),
    }
}

/// A config with all three listeners (IMAP and POP3 never reach their upstream here).
fn all_listeners(ca: &TestCa, smtp: &FakeSmtp) -> crate::support::config::ConfigBuilder {
    smtp_builder(ca, smtp).imap("off").pop3("off")
}

/// Connects and returns the client with its first line.
async fn open(addr: SocketAddr, source: Option<IpAddr>) -> (Client, String) {
    let mut c = Client::connect(addr, source).await.expect("connect");
    let first = c.line().await.expect("a first line");
    (c, first)
}

/// Asserts that a new connection to each protocol is refused with its busy reply and
/// then closed.
async fn assert_refused_everywhere(proxy: &Proxy, source: Option<IpAddr>) {
    for (protocol, busy) in BUSY {
        let (mut c, first) = open(addr_of(proxy, protocol), source).await;
        assert_eq!(first, busy, "{protocol}");
        let (rest, eof) = c.read_to_eof(REPLY_WAIT).await;
        assert!(eof && rest.is_empty(), "{protocol}: {rest:?}");
    }
}

#[tokio::test]
async fn max_sessions_counts_all_protocols() {
    let ca = TestCa::new("limits CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = all_listeners(&ca, &smtp).limit("max_sessions", "3");
    let proxy = Proxy::start_built(&builder, &[]).await;
    // Three logged-in sessions fill the limit: every listener refuses the next one.
    let mut held = Vec::new();
    for _ in 0..3 {
        let (c, auth) = smtp_login(proxy.smtp_addr(), None, USER, PASSWORD).await;
        assert!(auth.text().starts_with("235 "));
        held.push(c);
    }
    assert_refused_everywhere(&proxy, None).await;
    // Even from another address: the limit is global.
    assert_refused_everywhere(&proxy, Some(OTHER_IP)).await;
    // A session that ends frees its slot, for any protocol.
    let mark = proxy.log_mark();
    assert_eq!(held[0].cmd("QUIT").await.text(), "221 2.0.0 Bye\r\n");
    proxy
        .wait_for_log_since(mark, "session end", REPLY_WAIT)
        .await;
    let (mut c, first) = open(proxy.imap_addr(), None).await;
    assert!(first.starts_with("* OK"), "{first}");
    assert!(c.send(b"a LOGOUT\r\n").await, "the IMAP session is usable");
    let (rest, eof) = c.read_to_eof(REPLY_WAIT).await;
    assert!(eof && rest.contains("a OK"), "{rest}");
    proxy.assert_no_secret(&secrets());
}

/// Issue 16 item 8: idle sockets that never log in, from a few addresses each at its
/// `max_sessions_per_ip`, used to hold every slot of every protocol. Now they get a
/// quarter of `max_sessions`; beyond it the one idle longest is shed (with the busy
/// reply), so a new device still gets in, logs in and sends, and a user who logged in
/// before the flood keeps working.
#[tokio::test]
async fn idle_pre_login_sockets_cannot_hold_every_slot() {
    let ca = TestCa::new("slot exhaustion CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = all_listeners(&ca, &smtp)
        .limit("max_sessions", "16")
        .limit("max_sessions_per_ip", "2");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let (mut user, auth) = smtp_login(proxy.smtp_addr(), None, USER, PASSWORD).await;
    assert!(auth.text().starts_with("235 "));
    // Eight addresses, two idle sockets each, spread over the three protocols.
    let protocols = ["smtp", "imap", "pop3"];
    let mut idle = Vec::new();
    for i in 0..16u8 {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + i / 2));
        let protocol = protocols[usize::from(i) % 3];
        let (c, first) = open(addr_of(&proxy, protocol), Some(source)).await;
        idle.push((protocol, c, first));
    }
    // A new device: greeted, logs in, sends.
    let device = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    let (mut printer, auth) = smtp_login(proxy.smtp_addr(), Some(device), USER, PASSWORD).await;
    assert!(auth.text().starts_with("235 "));
    let sent = send_message(&mut printer, b"Subject: scan\r\n\r\nscan\r\n").await;
    assert!(sent.text().starts_with("250 "));
    // The user from before the flood was never shed.
    assert!(user.cmd("NOOP").await.text().starts_with("250 "));
    let sent = send_message(&mut user, b"Subject: still here\r\n\r\nyes\r\n").await;
    assert!(sent.text().starts_with("250 "));
    // The idle sockets shed were told why, then closed; at most the share (4) is left.
    let mut shed = 0;
    let mut left = 0;
    for (protocol, mut c, first) in idle {
        let busy = BUSY
            .iter()
            .find(|(p, _)| *p == protocol)
            .expect("protocol")
            .1;
        if first == busy {
            shed += 1; // refused at once: also fine, it never held a slot
            continue;
        }
        let (rest, eof) = c.read_to_eof(Duration::from_millis(300)).await;
        if eof {
            assert_eq!(rest, busy, "{protocol}: {first}{rest}");
            shed += 1;
        } else {
            left += 1;
        }
    }
    assert!(left <= 4, "{left} idle pre-login sessions still held");
    assert!(shed >= 12, "only {shed} shed");
    assert!(proxy
        .logs()
        .contains("closing the pre-login session idle longest"));
    assert!(proxy.logs().contains("\"result\":\"shed\""));
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn max_sessions_per_ip_spares_other_addresses() {
    let ca = TestCa::new("per-ip CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = all_listeners(&ca, &smtp).limit("max_sessions_per_ip", "2");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let (_smtp_client, first) = open(proxy.smtp_addr(), None).await;
    assert!(first.starts_with("220 "), "{first}");
    let (_imap_client, first) = open(proxy.imap_addr(), None).await;
    assert!(first.starts_with("* OK"), "{first}");
    assert_refused_everywhere(&proxy, None).await;
    // 127.0.0.2 has its own two sessions, and can mail.
    let (_pop3_other, first) = open(proxy.pop3_addr(), Some(OTHER_IP)).await;
    assert!(first.starts_with("+OK"), "{first}");
    let (mut other, auth) = smtp_login(proxy.smtp_addr(), Some(OTHER_IP), USER, PASSWORD).await;
    assert!(auth.text().starts_with("235 "));
    let sent = send_message(&mut other, b"Subject: x\r\n\r\ny\r\n").await;
    assert!(sent.text().starts_with("250 "));
    assert_refused_everywhere(&proxy, Some(OTHER_IP)).await;
    proxy.assert_no_secret(&secrets());
}

/// Opens an SMTP connection from `source`: true if greeted (and then logged in, so that
/// it holds its slot for good: an idle pre-login session could be shed), false if
/// refused as busy.
async fn greeted(proxy: &Proxy, source: Option<IpAddr>) -> (Client, bool) {
    let (mut c, first) = open(proxy.smtp_addr(), source).await;
    match first.as_str() {
        f if f.starts_with("220 ") => {
            assert!(c.cmd("EHLO limits.test").await.text().starts_with("250"));
            let auth = c
                .cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
                .await;
            assert!(auth.text().starts_with("235 "));
            (c, true)
        }
        f if f == BUSY[0].1 => (c, false),
        f => panic!("neither a greeting nor busy: {f}"),
    }
}

/// Ends a held SMTP session and waits until the proxy has counted it out.
async fn quit(proxy: &Proxy, mut c: Client) {
    let mark = proxy.log_mark();
    assert_eq!(c.cmd("QUIT").await.text(), "221 2.0.0 Bye\r\n");
    proxy
        .wait_for_log_since(mark, "session end", REPLY_WAIT)
        .await;
}

#[tokio::test]
async fn a_reload_changes_session_limits_for_new_connections() {
    let ca = TestCa::new("reload limits CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = smtp_builder(&ca, &smtp)
        .limit("max_sessions", "1")
        .limit("max_sessions_per_ip", "8");
    let config = |max: usize, per_ip: usize| {
        builder
            .build()
            .replace("max_sessions = 1\n", &format!("max_sessions = {max}\n"))
            .replace(
                "max_sessions_per_ip = 8\n",
                &format!("max_sessions_per_ip = {per_ip}\n"),
            )
    };
    let reloadable = Reloadable::start(&builder, &config(1, 8)).await;
    let proxy = &reloadable.proxy;
    let (first, ok) = greeted(proxy, None).await;
    assert!(ok);
    assert!(!greeted(proxy, None).await.1, "max_sessions = 1");

    reloadable.reload(&config(2, 8)).await;
    let (mut second, ok) = greeted(proxy, None).await;
    assert!(ok, "max_sessions raised to 2 by the reload");
    assert!(!greeted(proxy, None).await.1, "max_sessions = 2");

    // Lowered below the two running: they keep running, new connections wait for room.
    reloadable.reload(&config(1, 8)).await;
    assert!(
        !greeted(proxy, Some(OTHER_IP)).await.1,
        "max_sessions = 1 again"
    );
    assert!(second.cmd("NOOP").await.text().starts_with("250 "));
    quit(proxy, first).await;
    assert!(!greeted(proxy, None).await.1, "one running, limit 1");
    quit(proxy, second).await;
    let (held, ok) = greeted(proxy, None).await;
    assert!(ok, "room again");

    // The per-address limit follows reloads too.
    reloadable.reload(&config(10, 1)).await;
    assert!(!greeted(proxy, None).await.1, "max_sessions_per_ip = 1");
    assert!(greeted(proxy, Some(OTHER_IP)).await.1);
    drop(held);
    assert!(proxy
        .logs()
        .contains("session limits changed: new connections get them"));

    // A new listen address cannot be applied by a reload: it says so, and the running
    // listener stays.
    let moved = config(10, 8).replace("\"127.0.0.1:0\"", "\"127.0.0.2:0\"");
    assert_ne!(moved, config(10, 8));
    let warning = "listen addresses changed: they take effect only after a restart";
    assert!(
        !proxy.logs().contains(warning),
        "no earlier reload moved a listener"
    );
    reloadable.reload(&moved).await;
    assert!(proxy.logs().contains(warning));
    assert!(greeted(proxy, None).await.1);
    proxy.assert_no_secret(&secrets());
}

/// Sends `attempt(n)` for n = 1, 2 and returns every line the server sent until EOF.
async fn fail_twice(addr: SocketAddr, source: IpAddr, attempts: [&str; 2]) -> String {
    let (mut c, first) = open(addr, Some(source)).await;
    let mut all = first;
    for a in attempts {
        assert!(c.send(a.as_bytes()).await);
    }
    let (rest, eof) = c.read_to_eof(REPLY_WAIT).await;
    assert!(eof, "the session was not closed: {all}{rest}");
    all.push_str(&rest);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_auth_failures_closes_the_session() {
    let ca = TestCa::new("auth failures CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = all_listeners(&ca, &smtp)
        .limit("max_auth_failures", "2")
        .limit("lockout_failures", "100");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let wrong = plain(USER, "Wr0ng-Pa55");
    let smtp_auth = format!("EHLO x\r\nAUTH PLAIN {wrong}\r\n");
    let smtp_again = format!("AUTH PLAIN {wrong}\r\n");
    // Each protocol from its own address, so that the per-address delays do not add up.
    let ip = |n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
    let (s, i, p) = tokio::join!(
        fail_twice(proxy.smtp_addr(), ip(11), [&smtp_auth, &smtp_again]),
        fail_twice(
            proxy.imap_addr(),
            ip(12),
            [
                "a LOGIN printer Wr0ng-Pa55\r\n",
                "b LOGIN printer Wr0ng-Pa55\r\n"
            ]
        ),
        fail_twice(
            proxy.pop3_addr(),
            ip(13),
            [
                "USER printer\r\nPASS Wr0ng-Pa55\r\n",
                "USER printer\r\nPASS Wr0ng-Pa55\r\n"
            ]
        ),
    );
    assert!(
        s.contains("535 5.7.8 Error: authentication failed\r\n")
            && s.ends_with("421 4.7.0 Error: too many failed authentications\r\n"),
        "{s}"
    );
    assert!(
        i.contains("a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
            && i.ends_with(
                "b NO [AUTHENTICATIONFAILED] Too many failures\r\n\
                 * BYE Too many authentication failures\r\n"
            ),
        "{i}"
    );
    assert!(
        p.contains("-ERR [AUTH] Invalid credentials\r\n")
            && p.ends_with("-ERR [AUTH] Too many authentication failures\r\n"),
        "{p}"
    );
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD, "Wr0ng-Pa55"]);
}
