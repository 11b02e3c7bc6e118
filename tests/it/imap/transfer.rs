//! Bytes through the relay and the login forms clients really send: a 20 MB message
//! fetched byte-identical, non-UTF-8 bytes both ways, LOGIN with synchronising and
//! non-synchronising literals, and commands pipelined behind LOGIN.

use std::time::Instant;

use futures_util::TryStreamExt;
use tokio::net::TcpStream;

use super::{big_message, sha256, Gateway, CODE, EMAIL, PASSWORD, T, USER};
use crate::support::upstream::{LoginMethod, GBK_READY};

#[tokio::test]
async fn a_20_mb_message_is_byte_identical_through_the_proxy() {
    let huge = big_message(20 << 20);
    let want = sha256(&huge);
    let gw = Gateway::start(|o| o.message("INBOX", huge.clone()), |c| c).await;
    let tcp = TcpStream::connect(gw.proxy.imap_addr())
        .await
        .expect("connect");
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.expect("greeting").expect("ok");
    let mut s = client
        .login(USER, PASSWORD)
        .await
        .map_err(|(e, _)| e)
        .expect("LOGIN");
    assert_eq!(s.select("INBOX").await.expect("SELECT").exists, 1);
    let started = Instant::now();
    let got: Vec<_> = s
        .fetch("1", "(RFC822.SIZE BODY.PEEK[])")
        .await
        .expect("FETCH")
        .try_collect()
        .await
        .expect("FETCH data");
    let elapsed = started.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].size, Some(huge.len() as u32));
    let body = got[0].body().expect("BODY[]");
    assert_eq!(body.len(), huge.len(), "length");
    assert_eq!(sha256(body), want, "SHA-256 of the 20 MB body");
    drop(got);
    assert!(elapsed < T, "20 MB took {elapsed:?}");
    s.logout().await.expect("LOGOUT");
    gw.assert_clean();
}

#[tokio::test]
async fn non_utf8_bytes_pass_unchanged_both_ways() {
    // GBK, Latin-1, every byte from 0x80 up, a bare CR and LF and NUL inside the body.
    let mut message = b"Subject: ".to_vec();
    message.extend_from_slice(GBK_READY);
    message.extend_from_slice(b"\r\nX-Latin1: caf\xe9\r\n\r\n");
    message.extend((0x80..=0xffu8).collect::<Vec<u8>>());
    message.extend_from_slice(b"\r\nbare\rcr and\nlf and \x00 nul\r\n");
    message.extend_from_slice("中文 UTF-8 too\r\n".as_bytes());
    assert!(std::str::from_utf8(&message).is_err());
    let gw = Gateway::start(|o| o.message("INBOX", message.clone()), |c| c).await;
    let mut c = gw.logged_in().await;
    c.send(b"b SELECT INBOX\r\n").await;
    assert!(c.tagged("b").await.starts_with("b OK"));
    c.send(b"c FETCH 1 BODY.PEEK[]\r\n").await;
    assert_eq!(c.fetch_literal("c").await, message);
    c.send(b"d UID FETCH 1 (UID BODY.PEEK[])\r\n").await;
    assert_eq!(c.fetch_literal("d").await, message);

    // Client to upstream: a mailbox name in GBK reaches the fake byte for byte.
    let mut select = b"e SELECT \"".to_vec();
    select.extend_from_slice(GBK_READY);
    select.extend_from_slice(b"\"\r\n");
    c.send(&select).await;
    let reply = c.tagged("e").await;
    assert_eq!(reply, "e NO Mailbox does not exist");
    let sent = &select[..select.len() - 2];
    assert!(
        gw.fake.commands().iter().any(|cmd| cmd == sent),
        "the fake did not receive {sent:?}"
    );
    gw.assert_clean();
}

#[tokio::test]
async fn login_with_literals_from_a_raw_client() {
    let gw = Gateway::start(
        |o| o.message("INBOX", &b"Subject: x\r\n\r\nx\r\n"[..]),
        |c| c,
    )
    .await;

    // Synchronising literals (RFC 3501 §4.3): each waits for the continuation request.
    let mut c = gw.raw().await;
    c.send(format!("a LOGIN {{{}}}\r\n", USER.len()).as_bytes())
        .await;
    assert_eq!(c.text().await, "+ Ready for literal data");
    c.send(format!("{USER} {{{}}}\r\n", PASSWORD.len()).as_bytes())
        .await;
    assert_eq!(c.text().await, "+ Ready for literal data");
    c.send(format!("{PASSWORD}\r\n").as_bytes()).await;
    let ok = c.tagged("a").await;
    assert!(ok.starts_with("a OK [CAPABILITY "), "{ok}");
    c.send(b"b SELECT INBOX\r\n").await;
    let select = c.until_tagged("b").await;
    assert!(select.contains(&"* 1 EXISTS".to_owned()), "{select:?}");
    assert!(select.last().is_some_and(|l| l.starts_with("b OK")));

    // Non-synchronising literals (RFC 7888 LITERAL+), all in one write.
    let mut c = gw.raw().await;
    let login = format!(
        "a LOGIN {{{}+}}\r\n{USER} {{{}+}}\r\n{PASSWORD}\r\n",
        USER.len(),
        PASSWORD.len()
    );
    c.send(login.as_bytes()).await;
    let ok = c.tagged("a").await;
    assert!(ok.starts_with("a OK [CAPABILITY "), "{ok}");

    let logins = gw.fake.wait_logins(2, T).await;
    assert_eq!(logins.len(), 2, "{logins:?}");
    for l in &logins {
        assert_eq!(
            (l.method, l.user.as_str(), l.password.as_str(), l.accepted),
            (LoginMethod::ImapLogin, EMAIL, CODE, true)
        );
    }
    gw.assert_clean();
}

#[tokio::test]
async fn select_pipelined_behind_login_goes_upstream_after_the_login() {
    let gw = Gateway::start(
        |o| o.message("INBOX", &b"Subject: x\r\n\r\nx\r\n"[..]),
        |c| c,
    )
    .await;
    let mut c = gw.raw().await;
    c.send(format!("a LOGIN {USER} {PASSWORD}\r\nb SELECT INBOX\r\n").as_bytes())
        .await;
    let login = c.until_tagged("a").await;
    assert_eq!(login.len(), 1, "nothing before the LOGIN reply: {login:?}");
    assert!(login[0].starts_with("a OK [CAPABILITY "), "{login:?}");
    let select = c.until_tagged("b").await;
    assert!(select.contains(&"* 1 EXISTS".to_owned()), "{select:?}");
    assert_eq!(
        select.last().map(String::as_str),
        Some("b OK [READ-WRITE] SELECT complete")
    );
    let commands = gw.fake.commands();
    let position = |pred: &dyn Fn(&[u8]) -> bool| commands.iter().position(|c| pred(c));
    let login_at = position(&|c| c.starts_with(b"a1 LOGIN ")).expect("upstream LOGIN");
    let select_at = position(&|c| c == b"b SELECT INBOX").expect("SELECT upstream");
    assert!(login_at < select_at, "{commands:?}");
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.ends_with(b"SELECT INBOX"))
            .count(),
        1
    );
    gw.assert_clean();
}
