//! Control bytes in SMTP commands (issue 16, item 5): a bare CR or a NUL inside `MAIL
//! FROM` parameters or a `RCPT TO` argument would reach the upstream verbatim, where a
//! server that ends lines at a bare CR reads a second, injected command. Such lines are
//! refused with 501 5.5.2 and nothing of them is sent; the session goes on.

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

const REFUSED: &str = "501 5.5.2 Syntax error: control characters are not allowed\r\n";

#[tokio::test]
async fn cr_and_nul_in_mail_and_rcpt_never_reach_the_upstream() {
    let ca = TestCa::new("control bytes CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let proxy = Proxy::start_built(&smtp_builder(&ca, &smtp), &[]).await;
    let (mut c, auth) = smtp_login(proxy.smtp_addr(), None, USER, PASSWORD).await;
    assert!(auth.text().starts_with("235 "));

    for (line, want) in [
        (
            "MAIL FROM:<scanner@printer.local> SIZE=100\rRCPT TO:<evil@example.com>",
            REFUSED,
        ),
        ("MAIL FROM:<scanner@printer.local> X=\0", REFUSED),
        ("MAIL FROM:<scanner@printer.local>", "250"),
        (
            "RCPT TO:<friend@example.com>\rRCPT TO:<evil@example.com>",
            REFUSED,
        ),
        ("RCPT TO:<evil@example.com>\0", REFUSED),
        ("RCPT TO:<friend@example.com> NOTIFY=\x1b[2K", REFUSED),
        ("RCPT TO:<friend@example.com>", "250"),
    ] {
        let got = c.cmd(line).await.text();
        assert!(got.starts_with(want), "{line:?}: {got:?}");
    }
    assert!(c.cmd("DATA").await.text().starts_with("354"));
    c.send(b"Subject: control bytes\r\n\r\nok\r\n.\r\n").await;
    assert!(c.smtp_reply().await.text().starts_with("250 "));
    assert_eq!(c.cmd("QUIT").await.text(), "221 2.0.0 Bye\r\n");

    let got = smtp.wait_messages(1, REPLY_WAIT).await;
    assert_eq!(got[0].rcpt_to, ["friend@example.com"]);
    let commands = smtp.commands();
    for cmd in &commands {
        assert!(
            !cmd.contains(['\r', '\0', '\x1b']) && !cmd.contains("evil"),
            "{cmd:?} reached the upstream; all: {commands:?}"
        );
    }
    proxy.assert_no_secret(&secrets());
}
