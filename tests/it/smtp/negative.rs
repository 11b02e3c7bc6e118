//! Client-side failures: wrong password, unknown user, repeated failures, an over-long line,
//! garbage input, unauthenticated clients from allowed and disallowed addresses, and the
//! pre-auth timeout. None of them may reach the upstream with the code, or leak a secret.

use std::time::Instant;

use super::*;

#[tokio::test]
async fn wrong_password_and_unknown_user_get_535() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let cases = [
        (USER, WRONG, "PLAIN"),
        ("nobody", PASSWORD, "PLAIN"),
        (USER, WRONG, "LOGIN"),
    ];
    let mut c2 = gw.client().await;
    c2.ehlo().await;
    for (i, (user, password, mech)) in cases.into_iter().enumerate() {
        // Each session allows max_auth_failures (3) failures: spread them over two.
        let client = if i < 2 { &mut c } else { &mut c2 };
        let r = match mech {
            "PLAIN" => client.auth_plain(user, password).await,
            _ => client.auth_login(user, password).await,
        };
        assert_eq!(
            r, "535 5.7.8 Error: authentication failed\r\n",
            "{user} {mech}"
        );
    }
    // The session survives a failure: the right password still works.
    assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
    assert_eq!(
        gw.fake.auth_attempts().len(),
        1,
        "only the good login went upstream"
    );
    gw.proxy.wait_for_log("local login failed", WAIT).await;
    gw.assert_no_secret(&[WRONG]);
}

#[tokio::test]
async fn repeated_failures_close_the_session_with_421() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.limit("max_auth_failures", "2")).await;
    let mut c = gw.client().await;
    c.ehlo().await;
    assert_eq!(
        c.auth_plain(USER, WRONG).await,
        "535 5.7.8 Error: authentication failed\r\n"
    );
    assert_eq!(
        c.auth_login(USER, WRONG).await,
        "421 4.7.0 Error: too many failed authentications\r\n"
    );
    assert!(c.eof().await.is_empty(), "closed after the 421");
    assert_eq!(gw.fake.connections(), 0);
    gw.assert_no_secret(&[WRONG]);
}

#[tokio::test]
async fn a_megabyte_line_gets_500_and_the_session_survives() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let long = vec![b'x'; 1024 * 1024];
    // Before login (login phase) and after it (transaction relay).
    for phase in ["before AUTH", "after AUTH"] {
        c.send(&long).await;
        assert_eq!(
            c.reply().await,
            "500 5.5.6 Error: line too long\r\n",
            "{phase}"
        );
        c.send(b"\r\nNOOP\r\n").await;
        assert_eq!(c.reply().await, "250 2.0.0 Ok\r\n", "{phase}");
        if phase == "before AUTH" {
            assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
        }
    }
    let text = sample_message("after a long line");
    assert!(c
        .send_message(&[RCPT], &dot_stuff(&text))
        .await
        .starts_with("250 "));
    gw.fake.wait_messages(1, WAIT).await;
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn garbage_gets_501s_then_421_after_20_errors() {
    let gw = Gateway::start().await;
    for logged_in in [false, true] {
        let mut c = if logged_in {
            gw.logged_in().await
        } else {
            gw.client().await
        };
        // Binary lines (no LF inside; NUL, DEL and a C0 byte at the end, so each is
        // refused as holding control bytes), more than the limit, in one write.
        let mut garbage = Vec::new();
        for i in 0..25u8 {
            let line: Vec<u8> = (0..40u8)
                .map(|j| i.wrapping_mul(31).wrapping_add(j.wrapping_mul(7)) | 0x80)
                .collect();
            garbage.extend_from_slice(&line);
            garbage.extend_from_slice(b"\x00\x01\x7f\r\n");
        }
        c.send(&garbage).await;
        for n in 1..20 {
            assert_eq!(
                c.reply().await,
                "501 5.5.2 Syntax error: control characters are not allowed\r\n",
                "error {n}, logged in: {logged_in}"
            );
        }
        assert_eq!(c.reply().await, "421 4.7.0 Error: too many errors\r\n");
        assert!(c.eof().await.is_empty(), "closed after the 421");
    }
    // The proxy is still serving.
    let mut c = gw.client().await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn allowed_address_may_send_without_auth_as_the_account() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.allow_unauthenticated(&["127.0.0.1/32"], "main")
    })
    .await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let text = sample_message("unauthenticated");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    gw.assert_upstream_auth(1);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn disallowed_address_must_auth() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.allow_unauthenticated(&["10.0.0.0/8"], "main")
    })
    .await;
    let mut c = gw.client().await;
    c.ehlo().await;
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{SENDER}>")).await,
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{RCPT}>")).await,
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(gw.fake.connections(), 0);
    // AUTH still works for it.
    assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn pre_auth_timeout_sends_421_and_closes() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.limit("pre_auth_timeout", "\"1s\"")
    })
    .await;
    let started = Instant::now();
    let mut c = gw.client().await;
    c.ehlo().await;
    let r = c.reply().await;
    let waited = started.elapsed();
    assert_eq!(r, "421 4.4.2 localhost Error: timeout exceeded\r\n");
    assert!(c.eof().await.is_empty());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    gw.assert_no_secret(&[]);
}
