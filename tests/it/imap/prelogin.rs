//! What the proxy refuses before login, without ever contacting the upstream: a wrong
//! local password, commands that need a session, an oversized literal, a 1 MB line.

use tokio::io::AsyncWriteExt;

use super::{End, Gateway, Raw, PASSWORD, T, USER};

/// A wrong password that must not leak either.
const WRONG: &str = "Wr0ng-Pa55w0rd";

#[tokio::test]
async fn wrong_local_password_is_refused_without_contacting_the_upstream() {
    let gw = Gateway::start(|o| o, |c| c).await;
    let mut c = gw.raw().await;
    c.send(format!("a LOGIN {USER} {WRONG}\r\n").as_bytes())
        .await;
    assert_eq!(
        c.tagged("a").await,
        "a NO [AUTHENTICATIONFAILED] Invalid credentials"
    );
    // AUTHENTICATE PLAIN with the SASL-IR initial response (RFC 4959), also wrong.
    let blob = base64_plain(USER, WRONG);
    c.send(format!("b AUTHENTICATE PLAIN {blob}\r\n").as_bytes())
        .await;
    assert_eq!(
        c.tagged("b").await,
        "b NO [AUTHENTICATIONFAILED] Invalid credentials"
    );
    assert_eq!(gw.fake.connections(), 0, "no upstream for a failed login");
    // The session survives failures below max_auth_failures (3): the right one works.
    c.send(format!("c LOGIN {USER} {PASSWORD}\r\n").as_bytes())
        .await;
    assert!(c.tagged("c").await.starts_with("c OK [CAPABILITY "));
    assert_eq!(gw.fake.wait_logins(1, T).await.len(), 1);
    gw.assert_clean();
    gw.proxy
        .assert_no_secret(&[WRONG, &base64_plain(USER, WRONG)]);
}

#[tokio::test]
async fn commands_that_need_a_session_are_refused_before_login() {
    let gw = Gateway::start(|o| o, |c| c).await;
    let mut c = gw.raw().await;
    for (tag, command) in [
        ("a", "SELECT INBOX"),
        ("b", "FETCH 1 BODY[]"),
        ("c", "LIST \"\" *"),
        ("d", "IDLE"),
        ("e", "UID FETCH 1 RFC822"),
    ] {
        c.send(format!("{tag} {command}\r\n").as_bytes()).await;
        assert_eq!(
            c.tagged(tag).await,
            format!("{tag} BAD Command not valid before login"),
            "{command}"
        );
    }
    // The login-phase commands still work, and the connection is still open.
    c.send(b"f CAPABILITY\r\n").await;
    let caps = c.until_tagged("f").await;
    assert!(caps[0].starts_with("* CAPABILITY IMAP4rev1 "), "{caps:?}");
    assert_eq!(gw.fake.connections(), 0, "nothing went upstream");
    gw.assert_clean();
}

#[tokio::test]
async fn a_literal_larger_than_the_limit_is_refused_before_login() {
    let gw = Gateway::start(|o| o, |c| c.limit("max_literal_size", "4096")).await;
    let mut c = gw.raw().await;
    // A synchronising literal is refused with a tagged BAD, and no data is expected
    // (RFC 3501 §7.5): the connection stays usable.
    c.send(b"a LOGIN {99999999}\r\n").await;
    assert_eq!(c.tagged("a").await, "a BAD Literal too large");
    c.send(b"b LOGIN {4097}\r\n").await;
    assert_eq!(c.tagged("b").await, "b BAD Literal too large");
    c.send(b"c NOOP\r\n").await;
    assert_eq!(c.tagged("c").await, "c OK NOOP completed");
    // A non-synchronising one cannot be refused, so the connection is closed.
    c.send(b"d LOGIN {4097+}\r\n").await;
    assert_eq!(c.text().await, "* BYE Literal too large");
    assert_eq!(c.end().await, (End::Eof, Vec::new()));
    assert_eq!(gw.fake.connections(), 0);
    gw.assert_clean();
}

#[tokio::test]
async fn a_1_mb_line_before_login_gets_bye() {
    let gw = Gateway::start(|o| o, |c| c).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy.imap_addr())
        .await
        .expect("connect");
    let (r, mut w) = tcp.split();
    let mut c = Raw::new(r);
    assert!(c.text().await.starts_with("* OK "));
    let mut line = b"a LOGIN ".to_vec();
    line.resize(1 << 20, b'x');
    // Write and read at once: the proxy stops reading long before 1 MB, so the write
    // may fail once it closes; what matters is what the client reads.
    let write = async {
        let _ = w.write_all(&line).await;
    };
    let read = async {
        let bye = c.text().await;
        let (end, rest) = c.end().await;
        (bye, end, rest)
    };
    let ((), (bye, end, rest)) = tokio::join!(write, read);
    assert_eq!(bye, "* BYE Line too long");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // Closing with unread input makes the kernel send a reset instead of a FIN.
    assert!(
        matches!(
            end,
            End::Eof | End::Error(std::io::ErrorKind::ConnectionReset)
        ),
        "{end:?}"
    );
    assert_eq!(gw.fake.connections(), 0);
    gw.assert_clean();
}

/// `base64("\0user\0password")`, a SASL PLAIN message (RFC 4616).
fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}
