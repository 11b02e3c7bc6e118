//! Issue 19 item 12: an allow-listed client without a login may mail only the
//! `[smtp] unauthenticated_recipients`; any other recipient gets 550 5.7.1 and a log
//! line, and nothing about it reaches the upstream. A network in
//! `allow_unauthenticated` is warned about at start.

use super::*;

/// Allow-listed as a whole network (127.0.0.0/8), limited to a domain and one address.
async fn limited_gateway() -> Gateway {
    Gateway::with(SmtpOptions::implicit, |b| {
        b.allow_unauthenticated(&["127.0.0.0/8"], "main")
            .section_line(
                "smtp",
                "unauthenticated_recipients = [\"*@Example.com\", \"boss@qq.com\"]",
            )
    })
    .await
}

const OTHER: &str = "someone@elsewhere.test";

#[tokio::test]
async fn only_listed_recipients_pass_without_a_login() {
    let gw = limited_gateway().await;
    gw.proxy.wait_for_log("whole network", WAIT).await;
    let mut c = gw.client().await;
    c.ehlo().await;
    assert!(c
        .cmd(&format!("MAIL FROM:<{SENDER}>"))
        .await
        .starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{OTHER}>")).await;
    assert!(r.starts_with("550 5.7.1 "), "{r}");
    let r = c.cmd("RCPT TO:<BOSS@QQ.COM>").await;
    assert!(r.starts_with("250"), "exact address, any case: {r}");
    let r = c.cmd(&format!("RCPT TO:<{RCPT}>")).await;
    assert!(r.starts_with("250"), "a listed domain: {r}");
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354"), "{r}");
    let text = sample_message("limited");
    c.send(&dot_stuff(&text)).await;
    let r = c.cmd(".").await;
    assert!(r.starts_with("250 "), "{r}");
    let got = gw.fake.wait_messages(1, WAIT).await;
    assert_eq!(got[0].rcpt_to, ["BOSS@QQ.COM", RCPT]);
    let commands = gw.fake.commands().join("\n");
    assert!(
        !commands.contains(OTHER),
        "refused recipient went upstream: {commands}"
    );
    c.cmd("QUIT").await;
    let line = gw.proxy.wait_for_log("recipient refused", WAIT).await;
    assert!(line.contains(OTHER) && line.contains("5.7.1"), "{line}");
}

#[tokio::test]
async fn a_login_lifts_the_limit() {
    let gw = limited_gateway().await;
    let mut c = gw.logged_in().await;
    let text = sample_message("logged in");
    let r = c.send_message(&[OTHER], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 "), "{r}");
    gw.fake.wait_messages(1, WAIT).await;
}
