//! Message transfer through the proxy: SMTP smuggling (a bare-LF dot line) is refused
//! without the upstream ever seeing the smuggled command, and a 50 MB message streams
//! through byte-identically while the proxy's memory stays small.

use super::*;

#[tokio::test]
async fn bare_lf_dot_line_is_refused_and_never_reaches_upstream() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    let smuggle_forms: [&[u8]; 3] = [
        b"a\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n",
        b"a\r\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n",
        b"a\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n",
    ];
    for form in smuggle_forms {
        c.begin_data(&[RCPT]).await;
        let mut wire = b"Subject: smuggle\r\n\r\n".to_vec();
        wire.extend_from_slice(form);
        wire.extend_from_slice(b".\r\n");
        c.send(&wire).await;
        assert_eq!(
            c.reply().await,
            "554 5.6.11 Error: bare CR or LF next to a dot line (SMTP smuggling); message rejected\r\n"
        );
    }
    // The session goes on: an honest message is relayed (on a fresh upstream connection).
    let text = sample_message("after smuggling");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_eq!(got.len(), 1, "only the honest message: {got:#?}");
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    let commands = gw.fake.commands();
    assert!(
        !commands
            .iter()
            .any(|c| c.contains("evil@") || c.contains("victim@") || c.contains("smuggled")),
        "a smuggled command reached the upstream: {commands:#?}"
    );
    gw.assert_no_secret(&[]);
}

/// The peak resident set of a process (`VmHWM`, kB), if /proc is readable.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// About `size` bytes of CRLF lines, every 100th starting with a dot.
fn big_message(size: usize) -> Vec<u8> {
    let mut text = b"From: <scan@printer.local>\r\nSubject: big\r\n\r\n".to_vec();
    let mut n = 0u64;
    while text.len() < size {
        let dot = if n.is_multiple_of(100) { "." } else { "" };
        text.extend_from_slice(
            format!("{dot}{n:010} the quick brown fox jumps over the lazy dog 0123456789\r\n")
                .as_bytes(),
        );
        n += 1;
    }
    text
}

#[tokio::test]
async fn fifty_megabytes_stream_through_byte_identically() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    let before = peak_rss_kb(gw.proxy.pid());
    let text = big_message(50 * 1024 * 1024);
    let wire = dot_stuff(&text);
    let started = std::time::Instant::now();
    let r = c.send_message(&[RCPT], &wire).await;
    assert!(r.starts_with("250 "), "{r}");
    let elapsed = started.elapsed();
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(&text));
    // The proxy streams in 64 KiB chunks: its peak RSS must not grow with the message.
    // (A debug build's baseline is about 30 MB, so bound the growth, not the total.)
    if let (Some(before), Some(after)) = (before, peak_rss_kb(gw.proxy.pid())) {
        eprintln!(
            "50 MB message: {:.1} s, proxy VmHWM {before} kB before, {after} kB after",
            elapsed.as_secs_f64()
        );
        assert!(
            after.saturating_sub(before) < 16 * 1024,
            "proxy peak RSS grew from {before} kB to {after} kB for a 50 MB message: is it buffering?"
        );
    }
    gw.assert_no_secret(&[]);
}
