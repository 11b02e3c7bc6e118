//! What a POP3 client sees when something goes wrong: a wrong local password, commands
//! before login, an upstream that is down, untrusted, rejects the code, or drops mid-RETR,
//! and `starttls://` upstreams that do or do not offer STLS.

use super::{builder, qq_opts, secrets, server_of, start, Raw, PASSWORD, USER, WAIT};
use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::pop3::FakePop3;
use crate::support::proxy::Proxy;
use crate::support::upstream::{Fault, TlsMode, QQ_LOGIN_FAIL};

/// Logs in with USER/PASS and returns the reply to PASS.
async fn try_login(raw: &mut Raw, password: &str) -> String {
    assert_eq!(raw.cmd(&format!("USER {USER}")).await, "+OK Send PASS\r\n");
    raw.cmd(&format!("PASS {password}")).await
}

#[tokio::test]
async fn wrong_local_password_is_auth_error_and_never_reaches_upstream() {
    let ca = TestCa::new("pop3 wrong password CA");
    let (fake, _b, proxy) = start(&ca, qq_opts(&ca)).await;
    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    assert_eq!(
        try_login(&mut raw, "Wr0ng-Pa55").await,
        "-ERR [AUTH] Invalid credentials\r\n"
    );
    assert_eq!(
        raw.cmd("USER nobody").await,
        "+OK Send PASS\r\n",
        "USER must not reveal whether a name exists"
    );
    assert_eq!(
        raw.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR [AUTH] Invalid credentials\r\n"
    );
    assert_eq!(
        fake.connections(),
        0,
        "no upstream connection for a bad login"
    );
    // The session goes on (RFC 1939 §7): the right password still works.
    assert_eq!(try_login(&mut raw, PASSWORD).await, "+OK Logged in\r\n");
    assert!(raw.cmd("STAT").await.starts_with("+OK 0 0"));
    proxy.wait_for_log("local login failed", WAIT).await;
    proxy.assert_no_secret(&[secrets()[0], secrets()[1], "Wr0ng-Pa55"]);
}

#[tokio::test]
async fn commands_before_login_are_refused_locally() {
    let ca = TestCa::new("pop3 pre-login CA");
    let (fake, _b, proxy) = start(&ca, qq_opts(&ca).message(&b"x\r\n"[..])).await;
    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    for cmd in [
        "STAT", "LIST", "RETR 1", "TOP 1 0", "UIDL", "DELE 1", "RSET", "NOOP",
    ] {
        assert_eq!(
            raw.cmd(cmd).await,
            "-ERR Command not valid before login\r\n",
            "{cmd}"
        );
    }
    assert_eq!(
        raw.cmd(&format!("PASS {PASSWORD}")).await,
        "-ERR USER first\r\n"
    );
    assert_eq!(raw.cmd("XYZZY1 what").await, "-ERR Invalid command\r\n");
    assert_eq!(
        raw.cmd("APOP printer 0123").await,
        "-ERR APOP not supported\r\n"
    );
    assert_eq!(raw.cmd("QUIT").await, "+OK qqmail-proxy signing off\r\n");
    let (rest, clean) = raw.until_closed().await;
    assert!(rest.is_empty() && clean, "{rest:?}");
    assert_eq!(
        fake.connections(),
        0,
        "nothing may reach the upstream before login"
    );
    proxy.assert_no_secret(&secrets());
}

/// Logs in through `proxy` expecting `-ERR [SYS/TEMP] ...`; returns that line.
async fn login_sys_temp(proxy: &Proxy) -> String {
    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    let reply = try_login(&mut raw, PASSWORD).await;
    assert!(
        reply.starts_with("-ERR [SYS/TEMP] ") && reply.ends_with("\r\n"),
        "{reply:?}"
    );
    // The session is still usable: the client may retry (RFC 3206 §4).
    assert_eq!(raw.cmd("QUIT").await, "+OK qqmail-proxy signing off\r\n");
    reply
}

#[tokio::test]
async fn upstream_down_is_sys_temp_and_logged() {
    let ca = TestCa::new("pop3 down CA");
    // A port that was just free: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe port")
        .port();
    let b = builder(&ca, format!("127.0.0.1:{port}"));
    let proxy = Proxy::start_built(&b, &[]).await;
    let reply = login_sys_temp(&proxy).await;
    assert!(
        reply.contains(&format!("cannot reach 127.0.0.1:{port}")),
        "{reply:?}"
    );
    let log = proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(
        log.contains("cannot reach") && log.contains("check the server name"),
        "{log}"
    );
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn untrusted_upstream_certificate_is_sys_temp_and_no_code_sent() {
    let ca = TestCa::new("pop3 trusted CA");
    let rogue = TestCa::new("pop3 rogue CA");
    let fake =
        FakePop3::start(qq_opts(&ca).tls(TlsMode::Implicit(rogue.server_config(UPSTREAM_NAMES))))
            .await;
    let b = builder(&ca, server_of(&fake));
    let proxy = Proxy::start_built(&b, &[]).await;
    let reply = login_sys_temp(&proxy).await;
    assert!(reply.contains("certificate is not trusted"), "{reply:?}");
    fake.wait_tls_failures(1, WAIT).await;
    assert!(fake.logins().is_empty() && fake.commands().is_empty());
    let log = proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(log.contains("unknown issuer"), "{log}");
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn upstream_rejecting_the_code_is_sys_temp_with_the_reply_logged() {
    let ca = TestCa::new("pop3 reject CA");
    let (fake, _b, proxy) = start(&ca, qq_opts(&ca).fault(Fault::RejectLogin)).await;
    let reply = login_sys_temp(&proxy).await;
    assert_eq!(
        reply,
        "-ERR [SYS/TEMP] upstream rejected the stored authorization code\r\n"
    );
    assert_eq!(fake.logins().len(), 1);
    let log = proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(
        log.contains(QQ_LOGIN_FAIL),
        "the upstream's reply is logged: {log}"
    );
    assert!(
        log.contains("authorization code is wrong"),
        "with a hint: {log}"
    );
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn upstream_drop_mid_retr_closes_the_client_cleanly() {
    let ca = TestCa::new("pop3 drop CA");
    let message = super::big_message(256 * 1024);
    let opts = qq_opts(&ca)
        .message(message.clone())
        .fault(Fault::DropMidRetr { after_bytes: 4000 });
    let (_fake, _b, proxy) = start(&ca, opts).await;
    let mut raw = Raw::login(proxy.pop3_addr()).await;
    assert_eq!(
        raw.cmd("RETR 1").await,
        format!("+OK {} octets\r\n", message.len())
    );
    let (got, clean) = raw.until_closed().await;
    assert!(clean, "the client saw a reset, not a close");
    assert!(
        got.len() <= 4000,
        "more than the upstream sent: {}",
        got.len()
    );
    assert!(
        !got.ends_with(b"\r\n.\r\n"),
        "a terminator the upstream never sent"
    );
    proxy.wait_for_log("session end", WAIT).await;
    // The proxy itself is fine: the next client logs in.
    let mut next = Raw::login(proxy.pop3_addr()).await;
    assert!(next.cmd("STAT").await.starts_with("+OK 1 "));
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn starttls_upstream_upgrades_before_the_code() {
    let ca = TestCa::new("pop3 upstream stls CA");
    let fake = FakePop3::start(
        qq_opts(&ca)
            .tls(TlsMode::StartTls(ca.server_config(UPSTREAM_NAMES)))
            .message(&b"Subject: s\r\n\r\nbody\r\n"[..]),
    )
    .await;
    let b = builder(&ca, format!("starttls://{}", server_of(&fake)));
    let proxy = Proxy::start_built(&b, &[]).await;
    let mut raw = Raw::login(proxy.pop3_addr()).await;
    assert!(raw.cmd("STAT").await.starts_with("+OK 1 "));
    let logins = fake.logins();
    assert_eq!(logins.len(), 1);
    assert!(
        logins[0].over_tls,
        "the code crossed in the clear: {logins:?}"
    );
    let commands = fake.commands();
    assert_eq!(
        commands.get(..2),
        Some(&[b"CAPA".to_vec(), b"STLS".to_vec()][..]),
        "{commands:?}"
    );
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn starttls_upstream_without_stls_is_refused_and_no_login_sent() {
    let ca = TestCa::new("pop3 upstream no-stls CA");
    let fake = FakePop3::start(qq_opts(&ca).tls(TlsMode::PlainNoStartTls)).await;
    let b = builder(&ca, format!("starttls://{}", server_of(&fake)));
    let proxy = Proxy::start_built(&b, &[]).await;
    let reply = login_sys_temp(&proxy).await;
    assert!(reply.contains("does not offer STARTTLS"), "{reply:?}");
    assert!(fake.logins().is_empty(), "{:?}", fake.logins());
    assert_eq!(
        fake.commands(),
        vec![b"CAPA".to_vec()],
        "only CAPA, never USER"
    );
    let log = proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(log.contains("implicit-TLS port"), "{log}");
    proxy.assert_no_secret(&secrets());
}
