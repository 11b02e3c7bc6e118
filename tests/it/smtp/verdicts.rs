//! Issue 19, wall 1: every message and every upstream refusal leaves one info line with
//! the client, user, account, envelope, the upstream's reply and a plain-language hint;
//! a refused session does not end as `result="ok"`.

use super::*;
use crate::support::proxy::LogEvent;

/// INFO events whose `reply` field contains `needle`.
fn verdict_lines(gw: &Gateway, needle: &str) -> Vec<LogEvent> {
    gw.proxy
        .events()
        .into_iter()
        .filter(|e| e.level.as_deref() == Some("INFO"))
        .filter(|e| e.field("reply").is_some_and(|r| r.contains(needle)))
        .collect()
}

/// Quits and waits for the session's end line, so every line of it has been logged.
async fn quit(gw: &Gateway, mut c: Client) {
    c.cmd("QUIT").await;
    gw.proxy.wait_for_log("session end", WAIT).await;
}

fn assert_identity(e: &LogEvent) {
    assert_eq!(e.field("user"), Some(USER), "{e:?}");
    assert_eq!(e.field("account"), Some("main"), "{e:?}");
}

#[tokio::test]
async fn a_sender_refused_at_mail_is_logged_with_reply_and_hint() {
    let refusal = "553 5.7.1 <qq@qq.com>: Sender address rejected: not owned by user";
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).mail_replies(&[refusal]),
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(r.starts_with("553 "), "MAIL: {r}");
    quit(&gw, c).await;
    let lines = verdict_lines(&gw, "Sender address rejected");
    assert_eq!(lines.len(), 1, "{}", gw.proxy.logs());
    let e = &lines[0];
    assert_identity(e);
    assert_eq!(
        e.field("sender"),
        Some(DEFAULT_USER),
        "rewritten sender: {e:?}"
    );
    assert!(e.field("hint").is_some_and(|h| !h.is_empty()), "{e:?}");
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn an_unknown_recipient_is_logged_with_reply_and_hint() {
    let refusal = "550 5.1.1 <friend@example.com>: Recipient address rejected: User unknown";
    let gw = Gateway::with(
        |ca| SmtpOptions::implicit(ca).rcpt_replies(RCPT, &[refusal]),
        |b| b,
    )
    .await;
    let mut c = gw.logged_in().await;
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .await
        .starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{RCPT}>")).await;
    assert!(r.starts_with("550 "), "RCPT: {r}");
    quit(&gw, c).await;
    let lines = verdict_lines(&gw, "User unknown");
    assert_eq!(lines.len(), 1, "{}", gw.proxy.logs());
    let e = &lines[0];
    assert_identity(e);
    assert_eq!(e.field("recipient"), Some(RCPT), "{e:?}");
    let hint = e.field("hint").unwrap_or_default();
    assert!(hint.contains("recipient"), "{e:?}");
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn a_delivered_message_is_one_line_with_its_envelope_and_250() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    let text = sample_message("logged");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    quit(&gw, c).await;
    let lines: Vec<_> = verdict_lines(&gw, "250")
        .into_iter()
        .filter(|e| e.field("size").is_some())
        .collect();
    assert_eq!(lines.len(), 1, "{}", gw.proxy.logs());
    let e = &lines[0];
    assert_identity(e);
    assert_eq!(e.field("sender"), Some(DEFAULT_USER), "{e:?}");
    assert_eq!(e.field("recipients"), Some(RCPT), "{e:?}");
    assert!(
        e.field("reply").is_some_and(|r| r.starts_with("250")),
        "{e:?}"
    );
}

/// The `result` of the one `session end` line.
async fn session_result(gw: &Gateway) -> String {
    gw.proxy.wait_for_log("session end", WAIT).await;
    let ends: Vec<_> = gw
        .proxy
        .events()
        .into_iter()
        .filter(|e| e.message() == Some("session end"))
        .collect();
    assert_eq!(ends.len(), 1, "{}", gw.proxy.logs());
    ends[0].field("result").unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_session_refused_with_530_does_not_end_ok() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(r.starts_with("530 "), "{r}");
    c.cmd("QUIT").await;
    let result = session_result(&gw).await;
    assert_eq!(result, "refused");
}

#[tokio::test]
async fn a_session_refused_with_535_does_not_end_ok() {
    let gw = Gateway::start().await;
    let mut c = gw.client().await;
    c.ehlo().await;
    let r = c.auth_plain(USER, WRONG).await;
    assert!(r.starts_with("535 "), "{r}");
    c.cmd("QUIT").await;
    let result = session_result(&gw).await;
    assert_eq!(result, "auth_failed");
    gw.assert_no_secret(&[WRONG]);
}

#[tokio::test]
async fn a_queued_message_is_one_line_with_its_envelope() {
    let spool = tempfile::tempdir().expect("spool");
    let queue = format!(
        "\n[queue]\ndir = {}\n",
        crate::support::config::toml_str(&spool.path().display().to_string())
    );
    let gw = Gateway::with(SmtpOptions::implicit, |b| {
        b.section_line("smtp", "delivery = \"queue\"").extra(&queue)
    })
    .await;
    let mut c = gw.logged_in().await;
    let text = sample_message("queued");
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    quit(&gw, c).await;
    let lines: Vec<_> = verdict_lines(&gw, "queued as")
        .into_iter()
        .filter(|e| e.message() == Some("message queued"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", gw.proxy.logs());
    let e = &lines[0];
    assert_identity(e);
    assert_eq!(e.field("sender"), Some(DEFAULT_USER), "{e:?}");
    assert_eq!(e.field("recipients"), Some(RCPT), "{e:?}");
}

/// A message the proxy itself refuses (an SMTP-smuggling look-alike, `554 5.6.11`) leaves
/// one WARN `message not sent` line naming who sent what to whom and the reply the client
/// got, like the upstream's verdicts above.
#[tokio::test]
async fn a_message_the_proxy_refuses_is_one_warn_line_with_its_envelope() {
    let gw = Gateway::start().await;
    let mut c = gw.logged_in().await;
    let wire = b"Subject: smuggle\r\n\r\nbody\n.\nMAIL FROM:<evil@example.com>\r\n";
    assert!(c
        .send_message(&[RCPT], wire)
        .await
        .starts_with("554 5.6.11"));
    quit(&gw, c).await;
    let lines: Vec<LogEvent> = gw
        .proxy
        .events()
        .into_iter()
        .filter(|e| e.level.as_deref() == Some("WARN"))
        .filter(|e| e.message().is_some_and(|m| m.contains("message not sent")))
        .collect();
    assert_eq!(lines.len(), 1, "{}", gw.proxy.logs());
    let e = &lines[0];
    assert_identity(e);
    assert_eq!(e.field("recipients"), Some(RCPT), "{e:?}");
    assert!(
        e.field("reply")
            .is_some_and(|r| r.starts_with("554 5.6.11")),
        "{e:?}"
    );
    assert!(e.field("reason").is_some_and(|r| !r.is_empty()), "{e:?}");
}
