//! Self-tests of the fake's closes on demand (a 421 to the next command of a verb, a 421 to
//! idle connections) and of its refusal in the middle of DATA (then closing, or stalling).

use super::*;

/// A raw TLS session to `fake`, past the greeting, EHLO and AUTH PLAIN.
async fn logged_in(fake: &FakeSmtp, ca: &TestCa) -> Raw {
    let mut c = Raw::tls(fake, ca).await;
    assert!(c.reply().await.starts_with(b"220 "));
    c.cmd("EHLO c").await;
    let blob = b64(format!("\0{DEFAULT_USER}\0{DEFAULT_CODE}").as_bytes());
    let r = c.cmd(&format!("AUTH PLAIN {blob}")).await;
    assert!(r.starts_with("235 "), "{r}");
    c
}

const MAIL: &str = "MAIL FROM:<12345@qq.com>";

#[tokio::test]
async fn close_next_answers_that_verb_with_421_and_closes() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mut c = logged_in(&fake, &ca).await;
    fake.close_next("mail", 1);
    // Other verbs are untouched.
    assert_eq!(c.cmd("NOOP").await, "250 OK\r\n");
    assert_eq!(c.cmd(MAIL).await, format!("{CLOSING_421}\r\n"));
    assert!(c.reply().await.is_empty(), "closed after the 421");
    assert_eq!(fake.closes_421(), 1);
    // Used up: the next connection's MAIL is answered as usual.
    let mut c = logged_in(&fake, &ca).await;
    assert_eq!(c.cmd(MAIL).await, "250 OK\r\n");
    assert_eq!(fake.closes_421(), 1);
}

#[tokio::test]
async fn close_idle_closes_the_waiting_connections_only() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mut a = logged_in(&fake, &ca).await;
    let mut b = Raw::tls(&fake, &ca).await;
    assert!(b.reply().await.starts_with(b"220 "));
    fake.close_idle(2, WAIT).await;
    for c in [&mut a, &mut b] {
        assert_eq!(c.reply().await, format!("{CLOSING_421}\r\n").into_bytes());
        assert!(c.reply().await.is_empty(), "closed after the 421");
    }
    // A connection opened after the close is served.
    let mut c = logged_in(&fake, &ca).await;
    assert_eq!(c.cmd(MAIL).await, "250 OK\r\n");
    assert_eq!(fake.closes_421(), 2);
}

#[tokio::test]
async fn refuse_mid_data_replies_before_the_end_then_closes_or_stalls() {
    let ca = TestCa::new("fakes-smtp CA");
    let text = "5.3.4 Message size exceeds fixed limit";
    for then in [
        AfterRefusal::Close,
        AfterRefusal::Stall,
        AfterRefusal::ReadOn,
    ] {
        let fault = Fault::RefuseMidData {
            after_bytes: 1000,
            code: 552,
            text: text.into(),
            then,
        };
        let fake = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(fault));
        let mut c = logged_in(&fake, &ca).await;
        c.cmd(MAIL).await;
        c.cmd("RCPT TO:<friend@example.com>").await;
        assert!(c.cmd("DATA").await.starts_with("354 "));
        // Past the limit, but no end of data: the reply comes anyway.
        let line = format!("{}\r\n", "x".repeat(98));
        c.send(line.repeat(20).as_bytes()).await;
        assert_eq!(
            c.reply().await,
            format!("552 {text}\r\n").into_bytes(),
            "{then:?}"
        );
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), c.io.read(&mut byte)).await;
        match then {
            AfterRefusal::Close => assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}"),
            AfterRefusal::Stall => assert!(read.is_err(), "held open: {read:?}"),
            // The rest of the lines were read as commands, and answered.
            AfterRefusal::ReadOn => assert!(matches!(read, Ok(Ok(1))), "{read:?}"),
        }
        assert!(fake.messages().is_empty());
    }
}
