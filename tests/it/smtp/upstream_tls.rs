//! The upstream's TLS forms (issue #4): `starttls://host:port` against a STARTTLS server,
//! the refusal to send any credential to a server that offers no STARTTLS, and the explicit
//! `tls://host:port` form of implicit TLS.

use super::*;

/// Sends one message through `gw` and checks it arrived with the code, over TLS.
async fn relays_one(gw: &Gateway) {
    let mut c = gw.logged_in().await;
    let text = sample_message("upstream tls form");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    gw.assert_upstream_auth(1);
    assert!(gw.fake.auth_attempts()[0].tls, "AUTH only inside TLS");
}

#[tokio::test]
async fn starttls_upstream_works() {
    let gw = Gateway::with(SmtpOptions::starttls, |b| b).await;
    assert!(gw.fake.config_server().starts_with("starttls://127.0.0.1:"));
    relays_one(&gw).await;
    let commands = gw.fake.commands();
    let starttls = commands.iter().position(|c| c == "STARTTLS");
    let auth = commands.iter().position(|c| c.starts_with("AUTH "));
    assert!(
        matches!((starttls, auth), (Some(s), Some(a)) if s < a),
        "{commands:#?}"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn starttls_upstream_without_starttls_gets_no_credential() {
    let gw = Gateway::with(|_| SmtpOptions::plain(), |b| b).await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let r = c.auth_plain(USER, PASSWORD).await;
    assert!(
        r.starts_with("454 4.7.0 ") && r.contains("does not offer STARTTLS"),
        "{r}"
    );
    // The proxy looked (EHLO) and left: no AUTH line, no attempt, no code on the wire.
    gw.fake.wait_command(WAIT, |c| c == "QUIT").await;
    let commands = gw.fake.commands();
    assert!(gw.fake.auth_attempts().is_empty(), "{commands:#?}");
    assert!(
        !commands
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("AUTH") || c.contains(DEFAULT_CODE)),
        "{commands:#?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("EHLO")),
        "{commands:#?}"
    );
    let line = gw.proxy.wait_for_log("upstream login failed", WAIT).await;
    assert!(line.contains("does not offer STARTTLS"), "{line}");
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn explicit_tls_scheme_works() {
    let ca = TestCa::new("it-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let account = Account::new("main").smtp(format!("tls://{}", fake.addr()));
    let gw = Gateway::assemble(ca, fake, account, |b| b).await;
    relays_one(&gw).await;
    gw.assert_no_secret(&[]);
}
