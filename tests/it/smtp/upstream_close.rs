//! The upstream ending a connection under the relay: a 421 to a kept-open connection
//! between messages (a fresh login, both messages sent), a 421 from a fresh connection
//! (passed on, then the client session closed as RFC 5321 §3.8 says; no reconnect loop), and a refusal in the middle of DATA, which must reach
//! the client as the upstream's own 5xx, after the rest of the message was read, and never
//! as a 250 or the proxy's generic 451.

use super::*;
use crate::support::smtp::{AfterRefusal, Fault, CLOSING_421};
use crate::support::tools::python;

/// How the test makes the upstream drop the kept-open connection.
#[derive(Debug, Clone, Copy)]
enum Drop421 {
    /// The next MAIL gets the 421 and the connection closes.
    NextMail,
    /// The idle connection gets an unsolicited 421 and closes before the client goes on.
    Idle,
}

#[tokio::test]
async fn kept_open_upstream_closing_with_421_between_messages_reconnects_once() {
    for how in [Drop421::NextMail, Drop421::Idle] {
        let gw = Gateway::start().await;
        let mut c = gw.logged_in().await;
        let first = sample_message("before the 421");
        let r = c.send_message(&[RCPT], &dot_stuff(&first)).await;
        assert!(r.starts_with("250 "), "{how:?}: {r}");
        match how {
            Drop421::NextMail => gw.fake.close_next("MAIL", 1),
            Drop421::Idle => gw.fake.close_idle(1, WAIT).await,
        }
        let second = sample_message("after the 421");
        let r = c.send_message(&[RCPT], &dot_stuff(&second)).await;
        assert!(r.starts_with("250 "), "{how:?}: {r}");
        let got = gw.fake.wait_messages(2, WAIT).await;
        assert_relayed(&got[0], &[RCPT], &recorded_form(&first));
        assert_relayed(&got[1], &[RCPT], &recorded_form(&second));
        assert_eq!(gw.fake.closes_421(), 1, "{how:?}");
        assert_eq!(gw.fake.connections(), 2, "{how:?}: one fresh connection");
        gw.assert_upstream_auth(2);
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
        gw.assert_no_secret(&[]);
    }
}

#[tokio::test]
async fn upstream_421_on_a_fresh_connection_reaches_the_client_without_a_loop() {
    // (allow-listed client, 421s armed, upstream connections expected). An authenticated
    // client's connection is kept open from AUTH: its 421 is retried once on a fresh one.
    // An allow-listed client's first MAIL opens a fresh connection: nothing to retry.
    let cases = [(false, 2, 2), (true, 1, 1)];
    for (allow_listed, armed, connections) in cases {
        let gw = Gateway::with(SmtpOptions::implicit, |b| {
            if allow_listed {
                b.allow_unauthenticated(&["127.0.0.1/32"], "main")
            } else {
                b
            }
        })
        .await;
        let mut c = if allow_listed {
            let mut c = gw.client().await;
            c.ehlo().await;
            c
        } else {
            gw.logged_in().await
        };
        gw.fake.close_next("MAIL", armed);
        let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
        assert_eq!(
            r,
            format!("{CLOSING_421}\r\n"),
            "allow-listed {allow_listed}"
        );
        // 421 closes the channel (RFC 5321 §3.8): the proxy ends the client session too.
        assert_eq!(c.eof().await, b"", "allow-listed {allow_listed}");
        assert_eq!(gw.fake.closes_421(), armed);
        assert_eq!(gw.fake.connections(), connections, "no reconnect loop");
        gw.assert_upstream_auth(connections);
        assert!(gw.fake.messages().is_empty());
        gw.assert_no_secret(&[]);
    }
}

const REFUSAL: &str = "552 5.3.4 Message size exceeds fixed limit";

/// An upstream that refuses at 64 KiB of DATA and then closes or stalls.
fn refusing(ca: &TestCa, then: AfterRefusal) -> SmtpOptions {
    SmtpOptions::implicit(ca).fault(Fault::RefuseMidData {
        after_bytes: 64 * 1024,
        code: 552,
        text: REFUSAL[4..].to_owned(),
        then,
    })
}

/// A message of about `mib` MiB in 100-byte lines.
fn big_message(mib: usize) -> Vec<u8> {
    let line = format!("{}\r\n", "0123456789".repeat(9) + "abcdefgh");
    let mut text = b"Subject: too big\r\n\r\n".to_vec();
    text.extend_from_slice(line.repeat(mib * 1024 * 1024 / line.len()).as_bytes());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusal_mid_data_reaches_the_client_as_its_5xx() {
    // Stalled, the upstream reads nothing more: 16 MiB is far beyond what the socket
    // buffers hold, so a relay that kept writing would block until its timeout.
    for then in [AfterRefusal::Close, AfterRefusal::Stall] {
        let gw = Gateway::with(|ca| refusing(ca, then), |b| b).await;
        let mut c = gw.logged_in().await;
        let r = c.send_message(&[RCPT], &big_message(16)).await;
        assert_eq!(r, format!("{REFUSAL}\r\n"), "{then:?}");
        gw.proxy
            .wait_for_log("message refused by upstream during DATA", WAIT)
            .await;
        // In step: the next transaction goes through, on a fresh upstream connection.
        let text = sample_message("small after the refusal");
        let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
        assert!(r.starts_with("250 "), "{then:?}: {r}");
        let got = gw.fake.wait_messages(1, WAIT).await;
        assert_eq!(got.len(), 1, "only the small message was accepted");
        assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
        assert_eq!(gw.fake.connections(), 2, "{then:?}");
        assert!(
            !gw.proxy.logs().contains("message not sent"),
            "{then:?}: a refusal is not a lost connection"
        );
        gw.assert_no_secret(&[]);
    }
}

/// After the upstream refused mid-message, the proxy reads the rest only up to the
/// provider's SIZE and some slack: a client that keeps sending is answered and closed
/// rather than read for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_on_past_a_refusal_is_closed() {
    let gw = Gateway::with(
        |ca| refusing(ca, AfterRefusal::Close).size(1024 * 1024),
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    begin_data(&mut c).await;
    // 1 MiB SIZE + 8 MiB slack: the proxy stops reading after about 9 MiB.
    let chunk = format!("{}\r\n", "x".repeat(1022)).repeat(1024);
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        let io = c.io();
        match tokio::time::timeout(WAIT, io.write_all(chunk.as_bytes())).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!("the proxy neither read nor closed after {sent} bytes"),
        }
    }
    assert!(sent < 32 * 1024 * 1024, "still reading after {sent} bytes");
    gw.proxy
        .wait_for_log("client kept sending a message the upstream refused", WAIT)
        .await;
    assert!(gw.fake.messages().is_empty());
    gw.assert_no_secret(&[]);
}

/// MAIL, RCPT and DATA, each answered as it should be (250, 250, 354).
async fn begin_data(c: &mut Client) {
    for (cmd, want) in [
        (format!("MAIL FROM:<{SENDER}>"), "250"),
        (format!("RCPT TO:<{RCPT}>"), "250"),
        ("DATA".to_owned(), "354"),
    ] {
        let r = c.cmd(&cmd).await;
        assert!(r.starts_with(want), "{cmd}: {r}");
    }
}

/// MAIL, RCPT, DATA, then the message and its terminator in one write, so that the
/// proxy forwards them in one piece and reads a refusal only as the end of data's reply.
async fn one_piece_transaction(c: &mut Client, message: &[u8]) -> String {
    begin_data(c).await;
    let mut wire = message.to_vec();
    wire.extend_from_slice(b".\r\n");
    c.send(&wire).await;
    c.reply().await
}

/// A broken upstream refuses a small message early and reads the rest of it as commands,
/// answering each line (a `NOOP` in the body gets a 250): the proxy passes the refusal on
/// and never uses that connection again, so no stale reply, a 250 least of all, answers
/// the client's next transaction.
#[tokio::test]
async fn an_early_refusal_of_a_small_message_leaves_no_stale_replies() {
    let gw = Gateway::with(
        |ca| {
            SmtpOptions::implicit(ca).fault(Fault::RefuseMidData {
                // At the body's first line: the rest ("NOOP", then the terminator) is
                // read as commands, after the proxy has already sent the whole message.
                after_bytes: 24,
                code: 554,
                text: "5.7.1 refused early".to_owned(),
                then: AfterRefusal::ReadOn,
            })
        },
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    let message = b"Subject: early\r\n\r\nbody\r\nNOOP\r\n";
    let r = one_piece_transaction(&mut c, message).await;
    assert_eq!(r, "554 5.7.1 refused early\r\n");
    // The fault fires again on any message: the next one must be refused too, by a
    // fresh connection, and never answered from the old one's queue (a 250 for MAIL,
    // then the 500 the terminator got for RCPT, ...).
    let r = one_piece_transaction(&mut c, message).await;
    assert_eq!(r, "554 5.7.1 refused early\r\n");
    assert_eq!(gw.fake.connections(), 2);
    assert!(gw.fake.messages().is_empty());
    gw.assert_no_secret(&[]);
}

/// Sends the big message (expecting an SMTP error), then a small one in the same session.
const SMTPLIB_REFUSED: &str = r#"
import smtplib, sys
port, user, password, sender, rcpt, big, small = sys.argv[1:8]
s = smtplib.SMTP("127.0.0.1", int(port), timeout=10)
s.ehlo("python.test")
s.login(user, password)
try:
    s.sendmail(sender, [rcpt], open(big, "rb").read())
    print("SENT big")
except smtplib.SMTPResponseException as e:
    print("REFUSED", e.smtp_code, e.smtp_error.decode())
print("SMALL", s.sendmail(sender, [rcpt], open(small, "rb").read()))
s.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_gets_the_upstream_5xx_for_a_message_refused_mid_data() {
    let gw = Gateway::with(|ca| refusing(ca, AfterRefusal::Close), |b| b).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.eml");
    let small = dir.path().join("small.eml");
    std::fs::write(&big, big_message(4)).expect("write");
    std::fs::write(&small, sample_message("smtplib after the refusal")).expect("write");
    let args: Vec<String> = [
        gw.port().to_string(),
        USER.into(),
        PASSWORD.into(),
        SENDER.into(),
        RCPT.into(),
        big.display().to_string(),
        small.display().to_string(),
    ]
    .into();
    let out = python(SMTPLIB_REFUSED, &args, WAIT * 3).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("REFUSED 552 {}\n", &REFUSAL[4..])),
        "{stdout}"
    );
    assert!(!stdout.contains("SENT big"), "{stdout}");
    assert!(stdout.contains("SMALL {}"), "{stdout}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_eq!(got.len(), 1, "only the small message was accepted");
    assert!(String::from_utf8_lossy(&got[0].data).contains("smtplib after the refusal"));
    gw.assert_no_secret(&[]);
}
