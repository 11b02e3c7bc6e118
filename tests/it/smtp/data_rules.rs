//! Issue 16 item 6, as an attack against the real binary with a recording upstream: a dot
//! line behind a bare CR (`\r\n.\r`, `\r.\r\n`, `\r.\r`) is refused like the bare-LF
//! forms and nothing of it reaches the upstream.

use super::*;

const SMUGGLING_554: &str =
    "554 5.6.11 Error: bare CR or LF before a dot line (SMTP smuggling); message rejected\r\n";

/// MAIL, RCPT, DATA; asserts each is accepted.
async fn begin(c: &mut Client) {
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(r.starts_with("250"), "MAIL: {r}");
    let r = c.cmd(&format!("RCPT TO:<{RCPT}>")).await;
    assert!(r.starts_with("250"), "RCPT: {r}");
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354"), "DATA: {r}");
}

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
        begin(&mut c).await;
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
