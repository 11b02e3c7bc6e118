//! Self-tests of the fake IMAP and POP3 upstreams, driven by independent clients
//! (async-imap, and a small line client over tokio-rustls) that trust only the test CA.

mod pop3;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response};
use async_imap::types::NameAttribute;
use base64::Engine as _;
use futures_util::TryStreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::imap::{FakeImap, ImapOpts, QQ_OTHER_FOLDERS, QQ_SUBSCRIPTIONS};
use crate::support::upstream::{
    Fault, LoginMethod, TlsMode, DEFAULT_CODE, DEFAULT_USER, GBK_READY, QQ_LOGIN_FAIL,
};

/// Generous bound for anything that should happen promptly.
const T: Duration = Duration::from_secs(10);

type Tls = TlsStream<TcpStream>;
type ImapSession = async_imap::Session<Tls>;

/// A CA and a server config for the fakes' certificate.
fn ca() -> (TestCa, Arc<rustls::ServerConfig>) {
    let ca = TestCa::new("fakes self-test CA");
    let cfg = ca.server_config(UPSTREAM_NAMES);
    (ca, cfg)
}

/// TLS over `tcp`, verifying the fake's certificate against the test CA only.
async fn tls_over(ca: &TestCa, tcp: TcpStream) -> Tls {
    let name = ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(ca.client_config())
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the fake")
}

async fn tls_connect(ca: &TestCa, addr: SocketAddr) -> Tls {
    tls_over(ca, TcpStream::connect(addr).await.expect("connect")).await
}

/// A minimal CRLF line client, independent of the fakes' code.
pub(crate) struct Lines<S> {
    s: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lines<S> {
    pub(crate) fn new(s: S) -> Self {
        Lines { s, buf: Vec::new() }
    }

    /// Reads more; `false` at EOF or on a reset. Panics if nothing arrives within `T`.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(T, self.s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!(
                "no data within {T:?}; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next line without CRLF; `None` at EOF.
    pub(crate) async fn try_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    pub(crate) async fn line(&mut self) -> Vec<u8> {
        self.try_line().await.expect("a line before EOF")
    }

    pub(crate) async fn text(&mut self) -> String {
        String::from_utf8(self.line().await).expect("UTF-8 line")
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
        self.s.flush().await.expect("flush");
    }

    /// Exactly `n` bytes; `None` if the connection ends first.
    pub(crate) async fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Lines up to and including the one tagged `tag`.
    async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.text().await;
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }

    pub(crate) fn into_inner(self) -> S {
        assert!(self.buf.is_empty(), "unread bytes before TLS upgrade");
        self.s
    }
}

async fn imap_fake(opts: ImapOpts) -> (TestCa, FakeImap) {
    let (ca, cfg) = ca();
    let fake = FakeImap::start(opts.tls(TlsMode::Implicit(cfg))).await;
    (ca, fake)
}

/// An async-imap client past the greeting.
async fn imap_client(ca: &TestCa, addr: SocketAddr) -> async_imap::Client<Tls> {
    let mut client = async_imap::Client::new(tls_connect(ca, addr).await);
    let greeting = client
        .read_response()
        .await
        .expect("greeting")
        .expect("greeting I/O");
    assert!(
        matches!(greeting.parsed(), Response::Data { .. }),
        "{:?}",
        greeting.parsed()
    );
    client
}

async fn imap_login(ca: &TestCa, addr: SocketAddr) -> ImapSession {
    match imap_client(ca, addr)
        .await
        .login(DEFAULT_USER, DEFAULT_CODE)
        .await
    {
        Ok(s) => s,
        Err((e, _)) => panic!("login failed: {e}"),
    }
}

/// A CRLF message of about `size` bytes with a recognisable pattern.
pub(crate) fn big_message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@qq.com\r\nTo: b@qq.com\r\nSubject: big\r\n\r\n".to_vec();
    let mut i = 0u64;
    while m.len() < size {
        m.extend_from_slice(
            format!("{i:016x} .line of the big test body, some bytes\r\n").as_bytes(),
        );
        i += 1;
    }
    m
}

#[tokio::test]
async fn imap_login_rejects_wrong_code_then_accepts_right_one() {
    let (ca, fake) = imap_fake(ImapOpts::default()).await;
    let client = imap_client(&ca, fake.addr()).await;
    let Err((err, client)) = client.login(DEFAULT_USER, "wrongcode0000000").await else {
        panic!("wrong code accepted");
    };
    assert!(
        matches!(&err, async_imap::error::Error::No(t) if t.contains("authorization code")),
        "{err}"
    );
    let mut session = match client.login(DEFAULT_USER, DEFAULT_CODE).await {
        Ok(s) => s,
        Err((e, _)) => panic!("login failed: {e}"),
    };
    let logins = fake.wait_logins(2, T).await;
    assert_eq!(logins.len(), 2);
    assert_eq!(
        (
            logins[0].method,
            logins[0].password.as_str(),
            logins[0].over_tls,
            logins[0].accepted
        ),
        (LoginMethod::ImapLogin, "wrongcode0000000", true, false)
    );
    assert_eq!(
        (logins[1].password.as_str(), logins[1].accepted),
        (DEFAULT_CODE, true)
    );
    assert_eq!(logins[1].user, DEFAULT_USER);
    session.logout().await.expect("logout");
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn imap_raw_greeting_literals_sasl_and_state_rules() {
    let (ca, fake) = imap_fake(ImapOpts::default().post_login_caps("IMAP4rev1 IDLE MOVE")).await;
    let mut c = Lines::new(tls_connect(&ca, fake.addr()).await);
    assert_eq!(
        c.text().await,
        "* OK [CAPABILITY IMAP4 IMAP4rev1 ID AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 NAMESPACE] \
         QQMail XMIMAP4Server ready"
    );
    // Not valid before login, and unknown commands.
    c.send(b"a1 SELECT INBOX\r\na2 FROB\r\n").await;
    assert_eq!(c.text().await, "a1 NO Please login first");
    assert_eq!(c.text().await, "a2 BAD Unknown command");
    // LOGIN with a synchronizing literal user and a quoted password with escapes.
    c.send(format!("a3 LOGIN {{{}}}\r\n", DEFAULT_USER.len()).as_bytes())
        .await;
    assert!(c.text().await.starts_with("+ "));
    c.send(format!("{DEFAULT_USER} \"wr\\\"ong\\\\\"\r\n").as_bytes())
        .await;
    assert_eq!(c.text().await, format!("a3 NO {QQ_LOGIN_FAIL}"));
    // AUTHENTICATE PLAIN with an initial response (RFC 4959).
    let b64 = base64::engine::general_purpose::STANDARD;
    let blob = b64.encode(format!("\0{DEFAULT_USER}\0bad-code"));
    c.send(format!("a4 AUTHENTICATE PLAIN {blob}\r\n").as_bytes())
        .await;
    assert_eq!(c.text().await, format!("a4 NO {QQ_LOGIN_FAIL}"));
    // A non-synchronizing literal (RFC 7888): no `+` is awaited.
    c.send(
        format!(
            "n1 LOGIN {{{}+}}\r\n{DEFAULT_USER} nope\r\n",
            DEFAULT_USER.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.text().await, format!("n1 NO {QQ_LOGIN_FAIL}"));
    // AUTHENTICATE LOGIN: user and password after base64 prompts.
    c.send(b"l1 AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.text().await, "+ VXNlcm5hbWU6");
    c.send(format!("{}\r\n", b64.encode(DEFAULT_USER)).as_bytes())
        .await;
    assert_eq!(c.text().await, "+ UGFzc3dvcmQ6");
    c.send(format!("{}\r\n", b64.encode("login-mech")).as_bytes())
        .await;
    assert_eq!(c.text().await, format!("l1 NO {QQ_LOGIN_FAIL}"));
    // AUTHENTICATE PLAIN with a continuation.
    c.send(b"a5 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.text().await, "+ ");
    c.send(
        format!(
            "{}\r\n",
            b64.encode(format!("\0{DEFAULT_USER}\0{DEFAULT_CODE}"))
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        c.text().await,
        "a5 OK [CAPABILITY IMAP4rev1 IDLE MOVE] LOGIN completed"
    );
    c.send(b"a6 LOGIN x y\r\na7 CAPABILITY\r\na8 FETCH 1 BODY[]\r\n")
        .await;
    assert_eq!(c.text().await, "a6 BAD Already logged in");
    assert_eq!(
        c.until_tagged("a7").await,
        [
            "* CAPABILITY IMAP4rev1 IDLE MOVE",
            "a7 OK CAPABILITY completed"
        ]
    );
    assert_eq!(c.text().await, "a8 BAD No mailbox selected");

    let logins = fake.wait_logins(5, T).await;
    let summary: Vec<_> = logins
        .iter()
        .map(|l| (l.method, l.password.as_str(), l.accepted))
        .collect();
    assert_eq!(
        summary,
        [
            (LoginMethod::ImapLogin, "wr\"ong\\", false),
            (LoginMethod::ImapAuthPlain, "bad-code", false),
            (LoginMethod::ImapLogin, "nope", false),
            (LoginMethod::ImapAuthLogin, "login-mech", false),
            (LoginMethod::ImapAuthPlain, DEFAULT_CODE, true),
        ]
    );
    let literal_login = format!(
        "a3 LOGIN {{{}}}\r\n{DEFAULT_USER} \"wr\\\"ong\\\\\"",
        DEFAULT_USER.len()
    );
    assert!(fake.commands().contains(&literal_login.into_bytes()));
}

#[tokio::test]
async fn imap_list_shows_utf7_folders_and_select_works_on_them() {
    let (ca, fake) =
        imap_fake(ImapOpts::default().message(QQ_SUBSCRIPTIONS, &b"Subject: x\r\n\r\nhi\r\n"[..]))
            .await;
    let mut s = imap_login(&ca, fake.addr()).await;
    let names: Vec<_> = s
        .list(Some(""), Some("*"))
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("names");
    let listed: Vec<_> = names.iter().map(|n| n.name().to_owned()).collect();
    assert_eq!(
        listed,
        [
            "INBOX",
            "Sent Messages",
            "Drafts",
            "Deleted Messages",
            "Junk",
            QQ_OTHER_FOLDERS,
            QQ_SUBSCRIPTIONS
        ]
    );
    let parent = names
        .iter()
        .find(|n| n.name() == QQ_OTHER_FOLDERS)
        .expect("parent");
    assert!(parent.attributes().contains(&NameAttribute::NoSelect));
    assert_eq!(parent.delimiter(), Some("/"));
    drop(names);
    let top: Vec<_> = s
        .list(Some(""), Some("%"))
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("names");
    assert_eq!(top.len(), 6, "% must not descend into {QQ_OTHER_FOLDERS}");
    drop(top);

    let mb = s
        .select(QQ_SUBSCRIPTIONS)
        .await
        .expect("select child folder");
    assert_eq!(mb.exists, 1);
    assert!(
        s.select(QQ_OTHER_FOLDERS).await.is_err(),
        "\\Noselect parent must not select"
    );
    assert!(
        s.examine("inbox").await.is_ok(),
        "INBOX is case-insensitive"
    );
    s.logout().await.expect("logout");
}

#[tokio::test]
async fn imap_fetch_of_1mb_and_20mb_messages_is_byte_exact() {
    let small = big_message(1 << 20);
    let huge = big_message(20 << 20);
    let opts = ImapOpts::default()
        .message("INBOX", small.clone())
        .message("INBOX", huge.clone());
    let (ca, fake) = imap_fake(opts).await;
    let mut s = imap_login(&ca, fake.addr()).await;
    assert_eq!(s.select("INBOX").await.expect("select").exists, 2);
    let started = Instant::now();
    let got: Vec<_> = s
        .fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
        .await
        .expect("fetch")
        .try_collect()
        .await
        .expect("fetch data");
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].uid, got[0].size),
        (Some(1), Some(small.len() as u32))
    );
    assert!(got[0].body() == Some(&small[..]), "1 MB body differs");
    assert!(got[1].body() == Some(&huge[..]), "20 MB body differs");
    drop(got);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "20 MB took {:?}",
        started.elapsed()
    );
    let by_uid: Vec<_> = s
        .uid_fetch("1", "RFC822")
        .await
        .expect("uid fetch")
        .try_collect()
        .await
        .expect("data");
    assert!(by_uid.len() == 1 && by_uid[0].body() == Some(&small[..]));
    drop(by_uid);
    let all = s.search("ALL").await.expect("search");
    assert_eq!(all.len(), 2);
    s.logout().await.expect("logout");
}

#[tokio::test]
async fn imap_idle_gets_exists_after_add_message() {
    let (ca, fake) =
        imap_fake(ImapOpts::default().message("INBOX", &b"Subject: 1\r\n\r\n1\r\n"[..])).await;
    let mut s = imap_login(&ca, fake.addr()).await;
    s.select("INBOX").await.expect("select");
    let mut idle = s.idle();
    idle.init().await.expect("IDLE accepted");
    let (wait, _stop) = idle.wait_with_timeout(T);
    assert_eq!(
        fake.add_message("INBOX", &b"Subject: 2\r\n\r\n2\r\n"[..]),
        2
    );
    match wait.await.expect("idle wait") {
        IdleResponse::NewData(d) => assert!(
            matches!(d.parsed(), Response::MailboxData(MailboxDatum::Exists(2))),
            "{:?}",
            d.parsed()
        ),
        other => panic!("expected EXISTS, got {other:?}"),
    }
    let mut s = idle.done().await.expect("DONE");
    assert!(fake.commands().iter().any(|c| c == b"DONE"));
    s.noop().await.expect("noop after idle");
    s.logout().await.expect("logout");
}

#[tokio::test]
async fn imap_starttls_upgrade_then_login_is_over_tls() {
    let (ca, cfg) = ca();
    let fake = FakeImap::start(ImapOpts::default().tls(TlsMode::StartTls(cfg))).await;
    let mut c = Lines::new(TcpStream::connect(fake.addr()).await.expect("connect"));
    assert!(
        c.text().await.contains(" STARTTLS "),
        "greeting must offer STARTTLS"
    );
    c.send(b"s1 STARTTLS\r\n").await;
    assert_eq!(c.text().await, "s1 OK Begin TLS negotiation now");
    let mut client = async_imap::Client::new(tls_over(&ca, c.into_inner()).await);
    client
        .run_command_and_check_ok("CAPABILITY", None)
        .await
        .expect("capability");
    let mut s = match client.login(DEFAULT_USER, DEFAULT_CODE).await {
        Ok(s) => s,
        Err((e, _)) => panic!("login: {e}"),
    };
    let caps = s.capabilities().await.expect("caps");
    assert!(caps.has_str("IDLE") && !caps.has_str("STARTTLS"));
    let logins = fake.wait_logins(1, T).await;
    assert!(logins[0].over_tls && logins[0].accepted);
    s.logout().await.expect("logout");
}

#[tokio::test]
async fn imap_plain_mode_never_offers_starttls() {
    let fake = FakeImap::start(ImapOpts::default()).await;
    let mut c = Lines::new(TcpStream::connect(fake.addr()).await.expect("connect"));
    assert!(!c.text().await.contains("STARTTLS"));
    c.send(b"s1 STARTTLS\r\n").await;
    assert_eq!(c.text().await, "s1 BAD STARTTLS not available");
}

#[tokio::test]
async fn imap_require_id_before_select_like_netease() {
    let (ca, fake) = imap_fake(ImapOpts::default().require_id_before_select(true)).await;
    let mut s = imap_login(&ca, fake.addr()).await;
    let err = s.select("INBOX").await.expect_err("SELECT before ID");
    assert!(err.to_string().contains("Unsafe Login"), "{err}");
    assert!(fake.ids().is_empty());
    s.id([("name", Some("qqmail-proxy")), ("version", Some("0.1"))])
        .await
        .expect("ID");
    s.select("INBOX").await.expect("SELECT after ID");
    assert_eq!(
        fake.ids(),
        [b"(\"name\" \"qqmail-proxy\" \"version\" \"0.1\")".to_vec()]
    );
}

#[tokio::test]
async fn imap_fault_reject_login_rejects_the_right_code() {
    let (ca, fake) = imap_fake(ImapOpts::default().fault(Fault::RejectLogin)).await;
    let client = imap_client(&ca, fake.addr()).await;
    let Err((err, _)) = client.login(DEFAULT_USER, DEFAULT_CODE).await else {
        panic!("login accepted despite RejectLogin");
    };
    assert!(err.to_string().contains(QQ_LOGIN_FAIL), "{err}");
    let logins = fake.wait_logins(1, T).await;
    assert_eq!(
        (logins[0].password.as_str(), logins[0].accepted),
        (DEFAULT_CODE, false)
    );
}

#[tokio::test]
async fn imap_fault_no_greeting_and_gbk_greeting() {
    let (ca, fake) = imap_fake(ImapOpts::default().fault(Fault::NoGreeting)).await;
    let mut tls = tls_connect(&ca, fake.addr()).await;
    let mut byte = [0u8; 1];
    // Absence can only be shown by waiting a bounded time.
    let silent = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut byte)).await;
    assert!(silent.is_err(), "NoGreeting sent {silent:?}");

    let (ca, fake) = imap_fake(ImapOpts::default().fault(Fault::GbkGreeting)).await;
    let mut c = Lines::new(tls_connect(&ca, fake.addr()).await);
    let greeting = c.line().await;
    assert!(greeting.starts_with(b"* OK [CAPABILITY IMAP4 "));
    assert!(greeting.ends_with(GBK_READY));
    assert!(std::str::from_utf8(&greeting).is_err());
}

#[tokio::test]
async fn imap_fault_drop_mid_fetch_cuts_the_literal() {
    let msg = big_message(256 * 1024);
    let opts = ImapOpts::default()
        .message("INBOX", msg.clone())
        .fault(Fault::DropMidFetch { after_bytes: 1000 });
    let (ca, fake) = imap_fake(opts).await;
    let mut s = imap_login(&ca, fake.addr()).await;
    s.select("INBOX").await.expect("select");
    let result: Result<Vec<_>, _> = match s.fetch("1", "BODY[]").await {
        Ok(stream) => stream.try_collect().await,
        Err(e) => Err(e),
    };
    assert!(
        result.is_err(),
        "fetch must fail when the upstream resets mid-literal"
    );
}

#[tokio::test]
async fn imap_fault_drop_during_idle_ends_the_connection() {
    let (ca, fake) = imap_fake(ImapOpts::default().fault(Fault::DropDuringIdle)).await;
    let mut c = Lines::new(tls_connect(&ca, fake.addr()).await);
    c.line().await;
    c.send(
        format!("a LOGIN {DEFAULT_USER} {DEFAULT_CODE}\r\nb SELECT INBOX\r\nc IDLE\r\n").as_bytes(),
    )
    .await;
    c.until_tagged("a").await;
    c.until_tagged("b").await;
    assert_eq!(c.line().await, b"+ idling");
    fake.add_message("INBOX", &b"Subject: wake\r\n\r\n"[..]);
    assert_eq!(
        c.try_line().await,
        None,
        "the connection must end instead of EXISTS"
    );
}

#[tokio::test]
async fn imap_fault_slow_reply_delays_the_greeting() {
    let delay = Duration::from_millis(300);
    let (ca, fake) = imap_fake(ImapOpts::default().fault(Fault::SlowReply(delay))).await;
    let started = Instant::now();
    let _client = imap_client(&ca, fake.addr()).await;
    assert!(
        started.elapsed() >= delay,
        "greeting after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn imap_serves_concurrent_connections() {
    let (ca, fake) = imap_fake(ImapOpts::default()).await;
    let sessions =
        futures_util::future::join_all((0..8).map(|_| imap_login(&ca, fake.addr()))).await;
    assert_eq!(fake.wait_connections(8, T).await, 8);
    assert_eq!(fake.wait_logins(8, T).await.len(), 8);
    drop(sessions);
}
