//! Issue 16 items 6 and 10, as attacks against the real binary with a recording upstream:
//! a dot line behind a bare CR (`\r\n.\r`, `\r.\r\n`, `\r.\r`) is refused like the bare-LF
//! forms and nothing of it reaches the upstream; in `rewrite_sender = "header"` mode a
//! header block over 256 KiB is refused rather than relayed with its From unchecked, and
//! a `Sender` field is dropped.

use super::*;

const SMUGGLING_554: &str =
    "554 5.6.11 Error: bare CR or LF next to a dot line (SMTP smuggling); message rejected\r\n";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn bare_cr_dot_line_is_refused_and_never_reaches_upstream() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    let smuggled =
        b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n";
    let look_alikes: [&[u8]; 3] = [b"a\r\n.\r", b"a\r.\r\n", b"a\r.\r"];
    for (i, look_alike) in look_alikes.into_iter().enumerate() {
        c.begin_data(&[RCPT]).await;
        // The start of the body on its own (likely its own read, forwarded before the
        // look-alike arrives): what the upstream got of it is what a cut-off DATA records.
        c.send(b"Subject: smuggle\r\n\r\nfirst line\r\n").await;
        let mut wire = look_alike.to_vec();
        wire.extend_from_slice(smuggled);
        wire.extend_from_slice(b".\r\n");
        c.send(&wire).await;
        assert_eq!(c.reply().await, SMUGGLING_554, "{look_alike:?}");
        // Nothing after the look-alike was read as a command: the next reply is NOOP's.
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n", "{look_alike:?}");
        let cut = gw.fake.wait_cut_off_data(i + 1, WAIT).await;
        assert!(
            !contains(&cut[i], b".\r") && !contains(&cut[i], b"smuggled"),
            "the look-alike reached the upstream: {:?}",
            String::from_utf8_lossy(&cut[i])
        );
    }
    assert!(gw.fake.messages().is_empty(), "{:#?}", gw.fake.messages());
    // A bare CR inside a line is ordinary text and passes byte for byte.
    let text = b"Subject: cr\r\n\r\nabc\rdef\r\n.\rnot a dot line\r\nend\r\n";
    let r = c.send_message(&[RCPT], &dot_stuff(text)).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(text));
    let commands = gw.fake.commands();
    assert!(
        !commands
            .iter()
            .any(|c| c.contains("evil@") || c.contains("victim@") || c.contains("smuggled")),
        "a smuggled command reached the upstream: {commands:#?}"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn header_mode_refuses_an_oversized_header_block() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.rewrite_sender("header")).await;
    let mut c = gw.logged_in().await;
    // 300 KiB of header lines, then a foreign From past the 256 KiB limit.
    let mut wire = b"Subject: big header\r\n".to_vec();
    let mut n = 0;
    while wire.len() < 300 * 1024 {
        wire.extend_from_slice(format!("X-Pad-{n}: {}\r\n", "p".repeat(70)).as_bytes());
        n += 1;
    }
    wire.extend_from_slice(b"From: \"Boss\" <boss@evil.example>\r\n\r\nPay the invoice.\r\n");
    c.begin_data(&[RCPT]).await;
    c.send(&wire).await;
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.3.4 "), "{r}");
    assert!(
        r.contains("header") && r.contains("256 KiB"),
        "says why: {r}"
    );
    // Nothing reached the upstream's DATA, and no message was relayed.
    let cut = gw.fake.wait_cut_off_data(1, WAIT).await;
    assert_eq!(cut, vec![Vec::<u8>::new()], "bytes sent upstream");
    assert!(gw.fake.messages().is_empty(), "{:#?}", gw.fake.messages());
    // A bare CR inside the header block (a second From to a reader that breaks lines at
    // CR) is refused too, and nothing of it is sent.
    c.begin_data(&[RCPT]).await;
    c.send(b"Subject: hi\rFrom: \"Boss\" <boss@evil.example>\r\n\r\nPay.\r\n.\r\n")
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("554 5.6.0 ") && r.contains("bare CR"), "{r}");
    let cut = gw.fake.wait_cut_off_data(2, WAIT).await;
    assert_eq!(cut[1], Vec::<u8>::new(), "bytes sent upstream");
    assert!(gw.fake.messages().is_empty(), "{:#?}", gw.fake.messages());
    // The session goes on; a Sender (folded here) is dropped with the From rewritten.
    let text = format!(
        "From: \"Scanner\" <{SENDER}>\r\nSender: \"Boss\"\r\n <boss@evil.example>\r\n\
         Subject: s\r\n\r\nbody\r\n"
    );
    let want = format!(
        "From: \"Scanner\" <{DEFAULT_USER}>\r\nReply-To: \"Scanner\" <{SENDER}>\r\n\
         Subject: s\r\n\r\nbody\r\n"
    );
    let r = c.send_message(&[RCPT], text.as_bytes()).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(want.as_bytes()));
    gw.assert_no_secret(&[]);
}
