//! Issue 17 item 2, `[smtp] add_missing_headers` (default on): a message without `Date`,
//! `Message-ID` or `From` arrives with each exactly once (`From` = the account); one that
//! has them arrives byte for byte; two messages get different Message-IDs; it works with
//! `rewrite_sender = "header"` and the queued copy carries the added fields.

use super::*;
use crate::support::config::toml_str;

/// A message without Date, Message-ID or From.
const BARE: &[u8] = b"To: <friend@example.com>\r\nSubject: scan\r\n\r\npage 1\r\n";

/// The header block of a recorded message (up to its blank line) and the rest.
fn split(data: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(data).into_owned();
    let end = text.find("\r\n\r\n").expect("a header block") + 2;
    (text[..end].to_string(), data[end..].to_vec())
}

/// The values of the field `name` in a header block.
fn values(block: &str, name: &str) -> Vec<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    block
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .collect()
}

/// Asserts the three fields are there exactly once and what the client sent is kept.
fn assert_completed(data: &[u8], sent_fields: &[&str]) -> String {
    let (block, body) = split(data);
    assert_eq!(
        values(&block, "From"),
        [format!("<{DEFAULT_USER}>")],
        "{block}"
    );
    let date = values(&block, "Date");
    assert_eq!(date.len(), 1, "{block}");
    // `Mon, 7 Dec 2026 08:00:00 +0800`: weekday, day, month, year, time, offset.
    let parts: Vec<&str> = date[0].split(' ').collect();
    assert_eq!(parts.len(), 6, "{date:?}");
    assert!(
        parts[5].len() == 5 && matches!(&parts[5][..1], "+" | "-"),
        "{date:?}"
    );
    let ids = values(&block, "Message-ID");
    assert_eq!(ids.len(), 1, "{block}");
    assert!(ids[0].starts_with('<') && ids[0].ends_with('>') && ids[0].contains('@'));
    for field in sent_fields {
        assert!(block.contains(field), "{field:?} kept in {block}");
    }
    assert_eq!(body, b"\r\npage 1", "body untouched");
    ids[0].clone()
}

#[tokio::test]
async fn missing_fields_added_once_present_ones_untouched() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| b.add_missing_headers(None)).await;
    let mut c = gw.logged_in().await;
    for _ in 0..2 {
        let r = c.send_message(&[RCPT], BARE).await;
        assert!(r.starts_with("250 "), "{r}");
    }
    // A complete header block, unusual spellings included, passes byte for byte.
    let full =
        b"from: \"Scanner\" <scan@printer.local>\r\nDATE : Sun, 6 Dec 2026 01:00:00 +0000\r\n\
        Message-id: <abc@printer.local>\r\nSubject: x\r\n\r\npage 1\r\n";
    let r = c.send_message(&[RCPT], full).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(3, WAIT).await;
    let sent = ["To: <friend@example.com>\r\n", "Subject: scan\r\n"];
    let first = assert_completed(&got[0].data, &sent);
    let second = assert_completed(&got[1].data, &sent);
    assert_ne!(first, second, "two messages, two Message-IDs");
    assert_relayed(&got[2], &[RCPT], &recorded_form(full));
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn off_adds_nothing() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.add_missing_headers(Some(false))
    })
    .await;
    let mut c = gw.logged_in().await;
    let r = c.send_message(&[RCPT], BARE).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_relayed(&got[0], &[RCPT], &recorded_form(BARE));
}

#[tokio::test]
async fn with_header_rewrite_each_field_once() {
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.add_missing_headers(Some(true)).rewrite_sender("header")
    })
    .await;
    let mut c = gw.logged_in().await;
    let r = c.send_message(&[RCPT], BARE).await;
    assert!(r.starts_with("250 "), "{r}");
    let with_from = b"From: <scan@printer.local>\r\nSubject: scan\r\n\r\npage 1\r\n";
    let r = c.send_message(&[RCPT], with_from).await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(2, WAIT).await;
    assert_completed(&got[0].data, &["Subject: scan\r\n"]);
    assert_completed(&got[1].data, &["Reply-To: <scan@printer.local>\r\n"]);
}

#[tokio::test]
async fn the_queued_copy_carries_the_added_fields() {
    let spool = tempfile::tempdir().expect("spool");
    let queue = format!(
        "\n[queue]\ndir = {}\nretry_min = \"1s\"\n",
        toml_str(&spool.path().display().to_string())
    );
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.add_missing_headers(None)
            .section_line("smtp", "delivery = \"queue\"")
            .extra(&queue)
    })
    .await;
    let mut c = gw.logged_in().await;
    let r = c.send_message(&[RCPT], BARE).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_completed(&got[0].data, &["Subject: scan\r\n"]);
}
