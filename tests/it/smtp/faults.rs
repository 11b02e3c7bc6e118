//! Upstream failures as the client sees them: nothing listening, QQ's 535 for the stored
//! code, a 4xx to AUTH, drops mid-DATA and before the final reply, certificates that must
//! not be trusted (unknown CA, wrong name, expired), and GBK bytes from QQ.

use super::*;
use crate::support::ca::UPSTREAM_NAMES;
use crate::support::config::CaFile;
use crate::support::smtp::{Fault, TlsMode, GBK_LOGIN_FAILED};

/// Logs in and expects the AUTH reply to start with `prefix` and contain `text`.
async fn auth_fails(gw: &Gateway, prefix: &str, text: &str) -> String {
    let mut c = gw.client().await;
    c.ehlo().await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(r.starts_with(prefix) && r.contains(text), "AUTH: {r}");
    // A failed upstream login ends neither the session nor the proxy.
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    r
}

#[tokio::test]
async fn upstream_down_gets_454_with_a_clear_text() {
    let ca = TestCa::new("it-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let port = closed_port();
    let account = Account::new("main").smtp(format!("127.0.0.1:{port}"));
    let gw = Gateway::assemble(ca, fake, account, |b| b).await;
    let r = auth_fails(&gw, "454 4.7.0 ", &format!("cannot reach 127.0.0.1:{port}")).await;
    assert!(r.contains("upstream unavailable"), "{r}");
    gw.proxy.wait_for_log("upstream login failed", WAIT).await;
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_rejecting_the_code_gets_454_and_a_log_naming_everything() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::RejectAuth),
        |b| b,
    )
    .await;
    let r = auth_fails(
        &gw,
        "454 4.7.0 ",
        "upstream rejected the stored authorization code",
    )
    .await;
    assert_eq!(
        r,
        "454 4.7.0 upstream rejected the stored authorization code\r\n"
    );
    let line = gw.proxy.wait_for_log("upstream login failed", WAIT).await;
    let upstream = gw.fake.addr().to_string();
    for needle in [
        "\"main\"",
        DEFAULT_USER,
        &upstream,
        "535 Login Fail",
        "authorization code",
    ] {
        assert!(line.contains(needle), "{needle:?} in {line}");
    }
    // The fake saw the right code: it was told to refuse it.
    let attempts = gw.fake.wait_auth_attempts(1, WAIT).await;
    assert_eq!(attempts[0].password, DEFAULT_CODE);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_4xx_to_auth_is_temporary() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::TempFailAuth),
        |b| b,
    )
    .await;
    let r = auth_fails(&gw, "454 4.7.0 ", "temporarily refused the login").await;
    assert!(
        r.contains("454 4.7.0 Temporary authentication failure"),
        "{r}"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_drop_mid_data_gets_451_never_250() {
    let fault = Fault::DropMidData {
        after_bytes: 64 * 1024,
    };
    let gw = Gateway::with(|ca| SmtpOptions::implicit(ca).fault(fault), |b| b).await;
    let mut c = gw.logged_in().await;
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n";
    let body = format!("Subject: big\r\n\r\n{}", line.repeat(16 * 1024));
    let r = c.send_message(&[RCPT], body.as_bytes()).await;
    assert!(r.starts_with("451 4.4.2 "), "{r}");
    assert!(gw.fake.messages().is_empty());
    // The session goes on, on a new upstream connection, with a small message.
    let text = sample_message("small");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    assert_eq!(gw.fake.connections(), 2);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_drop_after_data_before_reply_gets_451() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::DropAfterDataBeforeReply),
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    let text = sample_message("lost reply");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert_eq!(
        r,
        "451 4.4.2 Error: connection to the upstream server was lost; message not sent, try again\r\n"
    );
    assert!(gw.fake.messages().is_empty());
    gw.proxy
        .wait_for_log("no verdict from the upstream after the data", WAIT)
        .await;
    gw.assert_no_secret(&[]);
}

/// An upstream whose certificate the proxy must refuse: AUTH gets 454 naming the problem,
/// the log says the same, and the code never leaves the proxy.
async fn refuses_certificate(
    tls: std::sync::Arc<rustls::ServerConfig>,
    ca_file: Option<&TestCa>,
    ca: TestCa,
    reason: &str,
) {
    let fake = FakeSmtp::start(SmtpOptions::new(TlsMode::Implicit(tls)));
    let mut account = Account::new("main").smtp_fake(&fake);
    if let Some(other) = ca_file {
        account = account.ca_file(CaFile::Path(other.pem_path().to_owned()));
    }
    let gw = Gateway::assemble(ca, fake, account, |b| b).await;
    auth_fails(&gw, "454 4.7.0 ", reason).await;
    let line = gw.proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(line.contains(reason), "{line}");
    assert!(
        gw.fake.auth_attempts().is_empty(),
        "no AUTH over a refused TLS"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_certificate_from_an_untrusted_ca_fails_closed() {
    let ca = TestCa::new("it-smtp CA");
    let other = TestCa::new("some other CA");
    let tls = ca.server_config(UPSTREAM_NAMES);
    refuses_certificate(tls, Some(&other), ca, "certificate is not trusted").await;
}

#[tokio::test]
async fn upstream_certificate_for_another_name_fails_closed() {
    let ca = TestCa::new("it-smtp CA");
    let tls = ca.server_config(&["smtp.example.net"]);
    refuses_certificate(tls, None, ca, "certificate is not valid for this host name").await;
}

#[tokio::test]
async fn expired_upstream_certificate_fails_closed() {
    let ca = TestCa::new("it-smtp CA");
    let tls = ca.expired_server_config(UPSTREAM_NAMES);
    refuses_certificate(tls, None, ca, "certificate has expired").await;
}

#[tokio::test]
async fn gbk_greeting_passes_as_bytes() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::GbkGreeting),
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    let text = sample_message("gbk greeting");
    assert!(c
        .send_message(&[RCPT], &dot_stuff(&text))
        .await
        .starts_with("250 "));
    gw.fake.wait_messages(1, WAIT).await;
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn gbk_535_passes_as_bytes_without_crashing() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::RejectAuthGbk),
        |b| b,
    )
    .await;
    auth_fails(
        &gw,
        "454 4.7.0 ",
        "upstream rejected the stored authorization code",
    )
    .await;
    let line = gw.proxy.wait_for_log("upstream login failed", WAIT).await;
    // The GBK text is logged escaped, byte for byte.
    let escaped = GBK_LOGIN_FAILED.escape_ascii().to_string();
    let escaped_json = escaped.replace('\\', "\\\\");
    assert!(line.contains(&escaped_json), "{escaped_json} in {line}");
    assert!(
        gw.proxy.exit_status().is_none(),
        "the proxy is still running"
    );
    let mut c = gw.client().await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn silent_upstream_times_out_with_454() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::NoGreeting),
        |b| b.limit("upstream_timeout", "\"1s\""),
    )
    .await;
    auth_fails(&gw, "454 4.7.0 ", "did not answer (greeting) within 1 s").await;
    assert!(gw.fake.auth_attempts().is_empty());
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn qq_rate_limit_is_temporary_and_logged_with_a_hint() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::RateLimitAuth),
        |b| b,
    )
    .await;
    auth_fails(&gw, "454 4.7.0 ", "Connection frequency limited").await;
    let line = gw.proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(line.contains("rate-limiting"), "{line}");
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_refusal_of_data_reaches_the_client_unchanged() {
    let text = "The \"From\" header is missing or invalid";
    let fault = Fault::RejectData(550, text.into());
    let gw = Gateway::with(|ca| SmtpOptions::implicit(ca).fault(fault), |b| b).await;
    let mut c = gw.logged_in().await;
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message("refused")))
        .await;
    assert_eq!(r, format!("550 {text}\r\n"));
    assert_eq!(gw.fake.connections(), 1);
    // The session goes on; the next transaction uses a fresh upstream connection, since
    // a refusal may have come early from a server still reading the message as commands.
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .await
        .starts_with("250"));
    assert_eq!(gw.fake.connections(), 2);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn upstream_reset_on_quit_still_gives_221() {
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).fault(Fault::ResetOnQuit),
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    let text = sample_message("reset on quit");
    assert!(c
        .send_message(&[RCPT], &dot_stuff(&text))
        .await
        .starts_with("250 "));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    assert!(c.eof().await.is_empty());
    gw.fake.wait_command(WAIT, |c| c == "QUIT").await;
    assert_eq!(gw.fake.wait_messages(1, WAIT).await.len(), 1);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn client_leaving_mid_data_sends_nothing() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    c.begin_data(&[RCPT]).await;
    c.send(b"Subject: half\r\n\r\nthe first half, then the client dies\r\n")
        .await;
    drop(c);
    gw.proxy.wait_for_log("session end", WAIT).await;
    // The upstream connection was dropped without the final dot: no message.
    assert!(gw.fake.messages().is_empty());
    assert!(
        !gw.fake.commands().iter().any(|c| c == "."),
        "{:#?}",
        gw.fake.commands()
    );
    gw.assert_no_secret(&[]);
}
