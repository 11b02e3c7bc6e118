//! The upstream side of the login: unreachable, rejecting the code, untrusted certificate,
//! silent; NetEase's ID-before-SELECT quirk; and `starttls://` upstreams (issue #4), which
//! must upgrade before any credential is sent.

use super::{account_for, config, fake_opts, server_of, Gateway, CODE, EMAIL, PASSWORD, T, USER};
use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::config::ConfigBuilder;
use crate::support::imap::{FakeImap, ImapOpts};
use crate::support::proxy::Proxy;
use crate::support::upstream::{Fault, LoginMethod, TlsMode, QQ_LOGIN_FAIL};

/// Logs in through the proxy on a fresh raw connection and returns the tagged reply.
async fn login_reply(proxy: &Proxy) -> String {
    let mut c = super::Raw::connect(proxy.imap_addr()).await;
    assert!(c.text().await.starts_with("* OK "));
    c.send(format!("a LOGIN {USER} {PASSWORD}\r\n").as_bytes())
        .await;
    c.tagged("a").await
}

#[tokio::test]
async fn upstream_down_is_unavailable() {
    let ca = TestCa::new("imap gateway CA");
    // A port that was just free: nothing listens there any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let server = format!("127.0.0.1:{port}");
    let cfg = config(&ca, account_for("main", server.clone()));
    let proxy = Proxy::start_built(&cfg, &[]).await;
    let reply = login_reply(&proxy).await;
    let want = format!("a NO [UNAVAILABLE] upstream unavailable: cannot reach {server}");
    assert!(reply.starts_with(&want), "{reply}");
    proxy.wait_for_log("upstream login failed", T).await;
    super::assert_clean(&proxy);
}

#[tokio::test]
async fn upstream_rejecting_the_code_is_reported_with_its_text() {
    let gw = Gateway::start(|o| o.fault(Fault::RejectLogin), |c| c).await;
    let mut c = gw.raw().await;
    c.send(format!("a LOGIN {USER} {PASSWORD}\r\n").as_bytes())
        .await;
    assert_eq!(
        c.tagged("a").await,
        "a NO [AUTHENTICATIONFAILED] upstream rejected the stored authorization code"
    );
    let logins = gw.fake.wait_logins(1, T).await;
    assert_eq!(
        (logins[0].user.as_str(), logins[0].password.as_str()),
        (EMAIL, CODE)
    );
    assert!(!logins[0].accepted);
    // The operator learns what QQ said; the client only that the stored code failed.
    let line = gw.proxy.wait_for_log(QQ_LOGIN_FAIL, T).await;
    assert!(line.contains("upstream login failed"), "{line}");
    // The session is still in the login phase: it may try again.
    c.send(b"b NOOP\r\n").await;
    assert_eq!(c.tagged("b").await, "b OK NOOP completed");
    gw.assert_clean();
}

#[tokio::test]
async fn untrusted_upstream_certificate_fails_closed() {
    let ca = TestCa::new("imap gateway CA");
    let rogue = TestCa::new("rogue CA");
    let fake =
        FakeImap::start(fake_opts(&ca).tls(TlsMode::Implicit(rogue.server_config(UPSTREAM_NAMES))))
            .await;
    let cfg = config(&ca, account_for("main", server_of(&fake)));
    let proxy = Proxy::start_built(&cfg, &[]).await;
    let reply = login_reply(&proxy).await;
    assert!(reply.starts_with("a NO [UNAVAILABLE] "), "{reply}");
    assert!(reply.contains("certificate is not trusted"), "{reply}");
    proxy
        .wait_for_log("TLS failed: certificate is not trusted", T)
        .await;
    assert_eq!(fake.wait_tls_failures(1, T).await, 1);
    assert!(
        fake.logins().is_empty(),
        "no credential to an untrusted server"
    );
    super::assert_clean(&proxy);
}

#[tokio::test]
async fn upstream_without_greeting_times_out_as_unavailable() {
    let gw = Gateway::start(
        |o| o.fault(Fault::NoGreeting),
        |c| c.limit("upstream_timeout", "\"1s\""),
    )
    .await;
    let reply = login_reply(&gw.proxy).await;
    assert!(reply.starts_with("a NO [UNAVAILABLE] "), "{reply}");
    assert!(
        reply.contains("did not answer (greeting) within 1 s"),
        "{reply}"
    );
    assert!(gw.fake.logins().is_empty());
    gw.assert_clean();
}

#[tokio::test]
async fn netease_gets_id_after_login_and_qq_does_not() {
    let ca = TestCa::new("imap gateway CA");
    let netease = FakeImap::start(
        fake_opts(&ca)
            .user("user@163.com")
            .require_id_before_select(true),
    )
    .await;
    let qq = FakeImap::start(fake_opts(&ca).require_id_before_select(true)).await;
    let cfg = config(
        &ca,
        account_for("netease", server_of(&netease))
            .email("user@163.com")
            .provider(Some("163"))
            .code_file(),
    )
    .account(account_for("qq", server_of(&qq)).code_file())
    .user("scanner", PASSWORD, "qq");
    let proxy = Proxy::start_built(&cfg, &[]).await;

    let mut c = super::Raw::connect(proxy.imap_addr()).await;
    c.text().await;
    c.send(format!("a LOGIN {USER} {PASSWORD}\r\nb SELECT INBOX\r\n").as_bytes())
        .await;
    assert!(c.tagged("a").await.starts_with("a OK "));
    let select = c.tagged("b").await;
    assert_eq!(select, "b OK [READ-WRITE] SELECT complete");
    let ids = netease.ids();
    assert_eq!(ids.len(), 1, "one ID after login");
    let id = String::from_utf8_lossy(&ids[0]).into_owned();
    assert!(id.starts_with("(\"name\" \"qqmail-proxy\""), "{id}");
    let logins = netease.wait_logins(1, T).await;
    assert_eq!(logins[0].user, "user@163.com");

    // QQ needs no ID, so none is sent (a fake that demands one proves it).
    let mut c = super::Raw::connect(proxy.imap_addr()).await;
    c.text().await;
    c.send(format!("a LOGIN scanner {PASSWORD}\r\nb SELECT INBOX\r\n").as_bytes())
        .await;
    assert!(c.tagged("a").await.starts_with("a OK "));
    assert_eq!(
        c.tagged("b").await,
        "b NO SELECT Unsafe Login. Please contact kefu@188.com for help"
    );
    assert!(qq.ids().is_empty(), "{:?}", qq.ids());
    assert_eq!(qq.wait_logins(1, T).await[0].user, EMAIL);
    super::assert_clean(&proxy);
}

/// A fake speaking plaintext first (`mode`) and a proxy whose account points at it with
/// `starttls://`; the CA and config (whose tempdir holds the code and certificate) are
/// returned to be kept alive.
async fn starttls_setup(
    mode: impl FnOnce(&TestCa) -> TlsMode,
) -> (TestCa, ConfigBuilder, FakeImap, Proxy) {
    let ca = TestCa::new("imap gateway CA");
    let opts: ImapOpts = fake_opts(&ca).tls(mode(&ca));
    let fake = FakeImap::start(opts).await;
    let server = format!("starttls://{}", server_of(&fake));
    let cfg = config(&ca, account_for("main", server));
    let proxy = Proxy::start_built(&cfg, &[]).await;
    (ca, cfg, fake, proxy)
}

#[tokio::test]
async fn starttls_upstream_upgrades_before_login() {
    let (_ca, _cfg, fake, proxy) =
        starttls_setup(|ca| TlsMode::StartTls(ca.server_config(UPSTREAM_NAMES))).await;
    let reply = login_reply(&proxy).await;
    assert!(reply.starts_with("a OK [CAPABILITY "), "{reply}");
    let logins = fake.wait_logins(1, T).await;
    assert_eq!(logins.len(), 1);
    assert_eq!(
        (
            logins[0].method,
            logins[0].user.as_str(),
            logins[0].password.as_str()
        ),
        (LoginMethod::ImapLogin, EMAIL, CODE)
    );
    assert!(logins[0].over_tls && logins[0].accepted, "{:?}", logins[0]);
    assert!(
        fake.commands().iter().any(|c| c.ends_with(b" STARTTLS")),
        "{:?}",
        fake.commands()
    );
    super::assert_clean(&proxy);
}

#[tokio::test]
async fn starttls_upstream_without_the_offer_gets_no_credentials() {
    let (_ca, _cfg, fake, proxy) = starttls_setup(|_| TlsMode::PlainNoStartTls).await;
    let reply = login_reply(&proxy).await;
    assert!(reply.starts_with("a NO [UNAVAILABLE] "), "{reply}");
    assert!(reply.contains("does not offer STARTTLS"), "{reply}");
    proxy.wait_for_log("does not offer STARTTLS", T).await;
    assert_eq!(fake.connections(), 1, "the proxy did connect");
    assert!(fake.logins().is_empty(), "{:?}", fake.logins());
    assert!(
        !fake.commands().iter().any(|c| {
            let upper = c.to_ascii_uppercase();
            upper.windows(5).any(|w| w == b"LOGIN")
                || upper.windows(12).any(|w| w == b"AUTHENTICATE")
        }),
        "{:?}",
        fake.commands()
    );
    super::assert_clean(&proxy);
}
