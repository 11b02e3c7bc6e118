//! Issue 17 item 3, `[[account]] save_sent`: after the upstream accepted a message, the
//! same bytes are APPENDed, flagged `\Seen`, to the Sent folder of the account's IMAP
//! server (a fake over implicit TLS, beside the fake SMTP). The client's 250 never
//! depends on it: a missing folder or a refused APPEND is only logged; `off` opens no
//! IMAP connection at all.

use super::*;
use crate::support::ca::UPSTREAM_NAMES;
use crate::support::sent_imap::{SentImap, SentOpts};

/// A gateway whose account has `imap_server` at a fake Sent IMAP made from `opts`, with
/// `save_sent` set to `save_sent` (no key when `None`) and a `state_dir` of its own.
async fn gateway(
    save_sent: Option<&str>,
    opts: SentOpts,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Gateway, SentImap, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("state dir");
    gateway_in(state, save_sent, opts, configure).await
}

/// [`gateway`] over a `state_dir` the test prepared.
async fn gateway_in(
    state: tempfile::TempDir,
    save_sent: Option<&str>,
    opts: SentOpts,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Gateway, SentImap, tempfile::TempDir) {
    let ca = TestCa::new("it-sent CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let imap = SentImap::start(ca.server_config(UPSTREAM_NAMES), opts).await;
    let mut account = Account::new("main")
        .smtp_fake(&fake)
        .imap(imap.config_server());
    if let Some(v) = save_sent {
        account = account.line(&format!("save_sent = \"{v}\""));
    }
    let state_dir = state.path().to_path_buf();
    let gw = Gateway::assemble(ca, fake, account, |b| {
        configure(b.state_dir(Some(state_dir)))
    })
    .await;
    (gw, imap, state)
}

/// The message as the upstream received it: its recorded DATA (stuffed, without the
/// terminator's CRLF) with the transparency undone.
fn as_received(recorded: &[u8]) -> Vec<u8> {
    let mut text = recorded.to_vec();
    text.extend_from_slice(b"\r\n");
    let mut out = Vec::with_capacity(text.len());
    let mut at_line_start = true;
    for (i, &b) in text.iter().enumerate() {
        let dropped = at_line_start && b == b'.';
        if !dropped {
            out.push(b);
        }
        at_line_start = b == b'\n' && i > 0 && text[i - 1] == b'\r';
    }
    out
}

#[tokio::test]
async fn on_appends_the_exact_bytes_seen_to_the_special_use_folder() {
    // add_missing_headers at its default (on): the copy must carry the added fields.
    let (gw, imap, _state) = gateway(Some("on"), SentOpts::default(), |b| {
        b.add_missing_headers(None)
    })
    .await;
    let mut c = gw.logged_in().await;
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message("saved")))
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    let appended = imap.wait_appended(1, WAIT).await;
    assert_eq!(appended.len(), 1, "{}", gw.proxy.logs());
    let a = &appended[0];
    // SPECIAL-USE wins over the preset's "Sent Messages", which this server also lists.
    assert_eq!(a.mailbox, "\"Sent\"");
    assert_eq!(a.flags, "(\\Seen)");
    let want = as_received(&got[0].data);
    assert!(
        a.data == want,
        "APPEND differs from what the upstream got:\n{}\n---\n{}",
        String::from_utf8_lossy(&a.data),
        String::from_utf8_lossy(&want)
    );
    // The header editor's work is in the copy: it is what was sent, not what the client wrote.
    let text = String::from_utf8_lossy(&a.data).to_ascii_lowercase();
    assert!(text.contains("\r\nmessage-id: <"), "{text}");
    let lone_dot = b"\r\n.\r\n..two dots";
    assert!(a.data.windows(lone_dot.len()).any(|w| w == lone_dot));
    assert!(a.data.ends_with(b"end\r\n"));
    gw.proxy
        .wait_for_log("copy saved in the Sent folder", WAIT)
        .await;
    let login = imap.snapshot().commands;
    assert!(
        login.iter().any(|l| l.starts_with(b"a1 LOGIN")),
        "logged in with the injected code"
    );
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn qq_like_server_xlist_and_a_queued_message() {
    // QQ: no SPECIAL-USE, XLIST after login; the queue's deliverer makes the copy.
    let opts = SentOpts {
        caps: "IMAP4 IMAP4rev1 XLIST MOVE IDLE NAMESPACE CHILDREN ID UIDPLUS".into(),
        list: vec![
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"".into(),
            "* LIST (\\HasNoChildren) \"/\" \"Sent Messages\"".into(),
        ],
        xlist: vec!["* XLIST (\\HasNoChildren \\Sent) \"/\" \"Sent Messages\"".into()],
        ..SentOpts::default()
    };
    let (gw, imap, _state) = gateway(Some("on"), opts, |b| {
        b.section_line("smtp", "delivery = \"queue\"")
    })
    .await;
    let mut c = gw.logged_in().await;
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message("queued")))
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    let appended = imap.wait_appended(1, WAIT).await;
    assert_eq!(appended.len(), 1, "{}", gw.proxy.logs());
    assert_eq!(appended[0].mailbox, "\"Sent Messages\"");
    assert_eq!(appended[0].flags, "(\\Seen)");
    assert!(
        appended[0].data == as_received(&got[0].data),
        "byte-identical"
    );
    assert!(imap
        .snapshot()
        .commands
        .iter()
        .any(|l| l.starts_with(b"b2 XLIST")));
}

#[tokio::test]
async fn no_sent_folder_still_250_and_the_log_says_why() {
    let opts = SentOpts {
        list: vec!["* LIST (\\HasNoChildren) \"/\" INBOX".into()],
        ..SentOpts::default()
    };
    let (gw, imap, _state) = gateway(Some("on"), opts, |b| b).await;
    let mut c = gw.logged_in().await;
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message("no folder")))
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let line = gw.proxy.wait_for_log("Sent copy not saved", WAIT).await;
    assert!(line.contains("has no Sent folder"), "{line}");
    assert!(
        line.contains("Sent Messages"),
        "names the preset's folder: {line}"
    );
    assert!(imap.appended().is_empty());
    assert_eq!(gw.fake.wait_messages(1, WAIT).await.len(), 1);
}

#[tokio::test]
async fn refused_append_still_250_and_the_log_says_why() {
    let opts = SentOpts {
        caps: "IMAP4rev1 SPECIAL-USE LITERAL+".into(),
        append_reply: "NO [OVERQUOTA] Mailbox is full".into(),
        ..SentOpts::default()
    };
    let (gw, imap, _state) = gateway(Some("on"), opts, |b| b).await;
    let mut c = gw.logged_in().await;
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message("full")))
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let line = gw.proxy.wait_for_log("Sent copy not saved", WAIT).await;
    assert!(line.contains("refused the APPEND"), "{line}");
    assert!(line.contains("OVERQUOTA"), "{line}");
    // LITERAL+ offered (RFC 7888): a non-synchronizing literal, no wait for "+".
    let append = imap
        .snapshot()
        .commands
        .into_iter()
        .find(|l| l.starts_with(b"b3 APPEND"));
    let append = String::from_utf8_lossy(&append.expect("an APPEND")).into_owned();
    assert!(append.trim_end().ends_with("+}"), "{append}");
    // A second message goes through as well: the failed copy changed nothing.
    let r = c
        .send_message(&[RCPT], &dot_stuff(&sample_message("again")))
        .await;
    assert!(r.starts_with("250 "), "{r}");
}

#[tokio::test]
async fn off_opens_no_imap_connection() {
    for setting in [None, Some("off")] {
        let (gw, imap, state) = gateway(setting, SentOpts::default(), |b| b).await;
        let mut c = gw.logged_in().await;
        let r = c
            .send_message(&[RCPT], &dot_stuff(&sample_message("not saved")))
            .await;
        assert!(r.starts_with("250 "), "{r}");
        assert_eq!(gw.fake.wait_messages(1, WAIT).await.len(), 1);
        // With `on` the copy's file exists before the 250; here nothing was begun.
        assert!(!state.path().join("sent").exists(), "{setting:?}");
        assert_eq!(imap.connections(), 0, "{setting:?}");
    }
}

#[tokio::test]
async fn copies_left_by_a_crash_are_appended_at_start_or_removed() {
    let state = tempfile::tempdir().expect("state dir");
    let dir = state.path().join("sent");
    std::fs::create_dir(&dir).expect("sent dir");
    let hex = |id: &str| id.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    // The account `main` (save_sent on), an account no longer configured, and a stray.
    let mine = dir.join(format!("{}.00000000000000aa.eml", hex("main")));
    let gone = dir.join(format!("{}.00000000000000bb.eml", hex("gone")));
    let stray = dir.join("notes.txt");
    let left = b"Subject: left behind\r\n\r\n.dot\r\n".to_vec();
    std::fs::write(&mine, &left).expect("write");
    std::fs::write(&gone, b"x\r\n").expect("write");
    std::fs::write(&stray, b"x").expect("write");
    let (gw, imap, _state) = gateway_in(state, Some("on"), SentOpts::default(), |b| b).await;
    let appended = imap.wait_appended(1, WAIT).await;
    assert_eq!(appended.len(), 1, "{}", gw.proxy.logs());
    assert_eq!(appended[0].data, left);
    assert_eq!(appended[0].flags, "(\\Seen)");
    gw.proxy
        .wait_for_log("copy saved in the Sent folder", WAIT)
        .await;
    for f in [&mine, &gone, &stray] {
        assert!(!f.exists(), "{} removed", f.display());
    }
}
