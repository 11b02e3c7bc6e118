//! Session behaviour through the proxy, driven by a raw client: HELO then AUTH, several
//! transactions and PIPELINING in one session, RSET, VRFY/NOOP/HELP, the three
//! `rewrite_sender` modes, what EHLO advertises, and `starttls = "required"`.

use super::*;
use crate::support::smtp::{QQ_501_SENDER, QQ_SIZE};

#[tokio::test]
async fn helo_client_can_auth_and_send() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    let r = c.cmd("HELO old-printer").await;
    assert_eq!(r, "250 localhost\r\n");
    let r = c.auth_login(USER, PASSWORD).await;
    assert_eq!(r, "235 2.7.0 Authentication successful\r\n");
    let text = sample_message("helo");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    gw.assert_upstream_auth(1);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn several_transactions_in_one_session_use_one_upstream_login() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    for i in 0..3 {
        let text = sample_message(&format!("transaction {i}"));
        let r = c
            .send_message(&[RCPT, "second@example.com"], &dot_stuff(&text))
            .await;
        assert!(r.starts_with("250 "), "message {i}: {r}");
        let got = gw.fake.wait_messages(i + 1, WAIT).await;
        assert_relayed(
            &got[i],
            &[RCPT, "second@example.com"],
            &recorded_form(&text),
        );
    }
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    assert_eq!(gw.fake.connections(), 1, "one upstream connection");
    gw.assert_upstream_auth(1);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn pipelined_transaction_replies_in_order() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    // RFC 2920 §3.1: MAIL, RCPT, RCPT and DATA in one write.
    c.send(
        format!("MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            .as_bytes(),
    )
    .await;
    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(c.reply().await);
    }
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "354"], "{replies:?}");
    // The message and the next command in one write, too.
    let text = sample_message("pipelined");
    let mut wire = dot_stuff(&text);
    wire.extend_from_slice(b".\r\nNOOP\r\n");
    c.send(&wire).await;
    let r = c.reply().await;
    assert!(r.starts_with("250 OK: queued"), "{r}");
    assert_eq!(c.reply().await, "250 2.0.0 Ok\r\n");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(
        &got[0],
        &["a@example.com", "b@example.com"],
        &recorded_form(&text),
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn rset_abandons_the_transaction() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .await
        .starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<dropped@example.com>")
        .await
        .starts_with("250"));
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok\r\n");
    // After RSET, DATA has no transaction and a new MAIL is not nested.
    assert_eq!(
        c.cmd("DATA").await,
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    let text = sample_message("after rset");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    assert!(
        gw.fake.commands().iter().any(|c| c == "RSET"),
        "RSET relayed"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn vrfy_noop_help_before_and_after_auth() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    for _ in 0..2 {
        c.ehlo().await;
        assert_eq!(
            c.cmd("VRFY root").await,
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
        );
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
        assert!(c.cmd("HELP").await.starts_with("214 "));
        if gw.fake.auth_attempts().is_empty() {
            assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
        }
    }
    assert!(
        !gw.fake.commands().iter().any(|c| c.starts_with("VRFY")),
        "VRFY is answered locally"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn rewrite_sender_off_passes_the_sender_and_qq_501_back() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.rewrite_sender("off")).await;
    let mut c = gw.logged_in().await;
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=100")).await;
    assert_eq!(r, format!("{QQ_501_SENDER}\r\n"), "QQ's reply, unchanged");
    assert!(
        gw.fake
            .commands()
            .contains(&format!("MAIL FROM:<{SENDER}> SIZE=100")),
        "{:#?}",
        gw.fake.commands()
    );
    // The account's own address passes.
    assert!(c
        .cmd(&format!("MAIL FROM:<{DEFAULT_USER}>"))
        .await
        .starts_with("250"));
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn rewrite_sender_header_rewrites_from_and_adds_reply_to() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.rewrite_sender("header")).await;
    let mut c = gw.logged_in().await;
    let sample = String::from_utf8(sample_message("header mode")).expect("UTF-8 sample");
    let rewritten = sample.replacen(
        &format!("From: \"Scanner\" <{SENDER}>\r\n"),
        &format!("From: \"Scanner\" <{DEFAULT_USER}>\r\nReply-To: \"Scanner\" <{SENDER}>\r\n"),
        1,
    );
    assert_ne!(rewritten, sample);
    // (sent, relayed): QQ rejects a missing From, so one is added; the account's own
    // From is left alone; a message that is all header is still rewritten.
    let cases = [
        (sample.clone(), rewritten),
        (
            "Subject: no from\r\n\r\nbody\r\n".to_owned(),
            format!("From: <{DEFAULT_USER}>\r\nSubject: no from\r\n\r\nbody\r\n"),
        ),
        (
            format!("From: Me <{DEFAULT_USER}>\r\n\r\nbody\r\n"),
            format!("From: Me <{DEFAULT_USER}>\r\n\r\nbody\r\n"),
        ),
        (
            format!("Subject: only headers\r\nFrom: {SENDER}\r\n"),
            format!("Subject: only headers\r\nFrom: <{DEFAULT_USER}>\r\nReply-To: {SENDER}\r\n"),
        ),
    ];
    for (i, (sent, relayed)) in cases.iter().enumerate() {
        let r = c.send_message(&[RCPT], &dot_stuff(sent.as_bytes())).await;
        assert!(r.starts_with("250 "), "{r}");
        let got = gw.fake.wait_messages(i + 1, WAIT).await;
        assert_relayed(&got[i], &[RCPT], &recorded_form(relayed.as_bytes()));
    }
    gw.assert_no_secret(&[]);
}

/// The keywords of an EHLO reply, without the `250-`/`250 ` prefixes.
fn keywords(reply: &str) -> Vec<String> {
    reply
        .lines()
        .skip(1)
        .map(|l| l.get(4..).unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn ehlo_advertises_size_8bitmime_auth_and_learns_upstream_size() {
    let gw = Gateway::with(|ca| SmtpOptions::implicit(ca).size(10_485_760), |b| b).await;
    let mut c = gw.client().await;
    let before = keywords(&c.ehlo().await);
    for want in [
        format!("SIZE {QQ_SIZE}"),
        "8BITMIME".into(),
        "AUTH PLAIN LOGIN".into(),
        "STARTTLS".into(),
        "PIPELINING".into(),
    ] {
        assert!(before.contains(&want), "{want} in {before:?}");
    }
    assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
    // After the upstream login the proxy knows the upstream's own limit.
    let after = keywords(&c.ehlo().await);
    assert!(after.contains(&"SIZE 10485760".to_owned()), "{after:?}");
    assert!(!after.contains(&"STARTTLS".to_owned()), "{after:?}");
    let mut fresh = gw.client().await;
    let next = keywords(&fresh.ehlo().await);
    assert!(next.contains(&"SIZE 10485760".to_owned()), "{next:?}");
    // A declared size over the upstream's limit gets the upstream's 552, unchanged.
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=10485761")).await;
    assert_eq!(r, "552 5.3.4 Message size exceeds fixed limit\r\n");
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}> SIZE=10485760"))
        .await
        .starts_with("250"));
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn starttls_required_refuses_auth_before_tls() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.smtp("required")).await;
    let mut c = gw.client().await;
    let ehlo = keywords(&c.ehlo().await);
    assert!(ehlo.contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    assert!(!ehlo.iter().any(|k| k.starts_with("AUTH")), "{ehlo:?}");
    assert_eq!(
        c.auth_plain(USER, PASSWORD).await,
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{SENDER}>")).await,
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(gw.fake.connections(), 0, "nothing reached the upstream");
    c.starttls(&gw.ca).await;
    let ehlo = keywords(&c.ehlo().await);
    assert!(ehlo.contains(&"AUTH PLAIN LOGIN".to_owned()), "{ehlo:?}");
    assert!(!ehlo.contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    assert!(c.auth_login(USER, PASSWORD).await.starts_with("235 "));
    let text = sample_message("required");
    assert!(c
        .send_message(&[RCPT], &dot_stuff(&text))
        .await
        .starts_with("250 "));
    gw.fake.wait_messages(1, WAIT).await;
    gw.assert_upstream_auth(1);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let mark = gw.proxy.log_mark();
    // CVE-2011-0411: a NOOP injected behind STARTTLS must not be answered at all.
    c.send(b"STARTTLS\r\nNOOP\r\n").await;
    let r = c.reply().await;
    assert_eq!(r, "220 2.0.0 Ready to start TLS\r\n");
    // `upgrade` asserts nothing followed the 220 in plaintext; a plaintext 250 sent later
    // would break the handshake.
    c.upgrade(&gw.ca).await;
    gw.proxy
        .wait_for_log_since(mark, "discarding plaintext sent after STARTTLS", WAIT)
        .await;
    // The first reply inside TLS is EHLO's, not a delayed answer to the NOOP.
    let ehlo = c.ehlo().await;
    assert!(
        ehlo.starts_with("250-localhost Hello client.test"),
        "{ehlo}"
    );
    assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn every_auth_form_reaches_the_upstream_with_the_code() {
    let gw = Gateway::start().await;
    let plain = b64(format!("\0{USER}\0{PASSWORD}").as_bytes());
    let authzid = b64(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes());
    let user = b64(USER.as_bytes());
    let password = b64(PASSWORD.as_bytes());
    // (lines sent one at a time, the reply expected to each); RFC 4954 §4 and RFC 4616.
    let cases: Vec<Vec<(String, &str)>> = vec![
        vec![(format!("AUTH PLAIN {plain}"), "235 ")],
        vec![(format!("auth plain {authzid}"), "235 ")],
        vec![("AUTH PLAIN".into(), "334 "), (plain.clone(), "235 ")],
        vec![
            (format!("AUTH LOGIN {user}"), "334 UGFzc3dvcmQ6"),
            (password.clone(), "235 "),
        ],
        vec![
            ("AUTH LOGIN".into(), "334 VXNlcm5hbWU6"),
            ("*".into(), "501 5.7.0 Authentication cancelled"),
            (format!("AUTH PLAIN {plain}"), "235 "),
        ],
        vec![
            ("AUTH CRAM-MD5".into(), "504 5.5.4 "),
            ("AUTH PLAIN !!!".into(), "501 5.5.2 Invalid base64 data"),
            (format!("AUTH PLAIN {plain}"), "235 "),
        ],
    ];
    for (i, steps) in cases.iter().enumerate() {
        let mut c = gw.client().await;
        c.ehlo().await;
        for (line, want) in steps {
            let r = c.cmd(line).await;
            assert!(
                r.starts_with(want),
                "case {i}: {want:?} after {line:?}, got {r:?}"
            );
        }
        assert_eq!(
            c.cmd("AUTH PLAIN x").await,
            "503 5.5.1 Error: already authenticated\r\n"
        );
    }
    gw.assert_upstream_auth(cases.len());
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn auth_with_initial_response_may_be_pipelined_with_mail() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    c.ehlo().await;
    // RFC 4954 §4: a one-round-trip AUTH with an initial response may lead a pipelined group.
    let plain = b64(format!("\0{USER}\0{PASSWORD}").as_bytes());
    c.send(
        format!("AUTH PLAIN {plain}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n")
            .as_bytes(),
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.reply().await[..3].to_owned());
    }
    assert_eq!(codes, ["235", "250", "250", "354"]);
    let text = sample_message("pipelined auth");
    c.send(&dot_stuff(&text)).await;
    c.send(b".\r\n").await;
    assert!(c.reply().await.starts_with("250 "));
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn starttls_off_is_neither_offered_nor_accepted() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.smtp("off")).await;
    let mut c = gw.client().await;
    let ehlo = keywords(&c.ehlo().await);
    assert!(!ehlo.contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    assert!(ehlo.contains(&"AUTH PLAIN LOGIN".to_owned()), "{ehlo:?}");
    assert_eq!(
        c.cmd("STARTTLS").await,
        "502 5.5.1 Error: STARTTLS not available\r\n"
    );
    assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235 "));
    gw.assert_no_secret(&[]);
}
