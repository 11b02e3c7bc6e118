//! Self-tests of `FakePop3` with a line client over tokio-rustls.

use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{big_message, ca, tls_connect, tls_over, Lines, Tls, T};
use crate::support::ca::TestCa;
use crate::support::pop3::{FakePop3, Pop3Opts, QQ_POP3_GREETING};
use crate::support::upstream::{
    Fault, LoginMethod, TlsMode, DEFAULT_CODE, DEFAULT_USER, GBK_READY, QQ_LOGIN_FAIL,
};

/// A message whose body has lines starting with dots, and no final CRLF.
const DOTTY: &[u8] = b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nnot.start\r\n. \r\nend";

async fn pop_fake(opts: Pop3Opts) -> (TestCa, FakePop3) {
    let (ca, cfg) = ca();
    let fake = FakePop3::start(opts.tls(TlsMode::Implicit(cfg))).await;
    (ca, fake)
}

/// Connects and checks the greeting.
async fn pop_client(ca: &TestCa, fake: &FakePop3) -> Lines<Tls> {
    let mut c = Lines::new(tls_connect(ca, fake.addr()).await);
    assert_eq!(c.text().await, QQ_POP3_GREETING);
    c
}

async fn pop_login(ca: &TestCa, fake: &FakePop3) -> Lines<Tls> {
    let mut c = pop_client(ca, fake).await;
    c.send(format!("USER {DEFAULT_USER}\r\nPASS {DEFAULT_CODE}\r\n").as_bytes())
        .await;
    assert!(c.text().await.starts_with("+OK"));
    assert!(c.text().await.starts_with("+OK"));
    c
}

/// Reads a multi-line response body up to the `.` line and undoes the byte-stuffing,
/// independently of the fake's code (RFC 1939 §3).
async fn multiline(c: &mut Lines<Tls>) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = c.line().await;
        if line == b"." {
            return out;
        }
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        out.extend_from_slice(b"\r\n");
    }
}

#[tokio::test]
async fn pop3_capa_login_and_wrong_code() {
    let (ca, fake) = pop_fake(Pop3Opts::default()).await;
    let mut c = pop_client(&ca, &fake).await;
    c.send(b"CAPA\r\n").await;
    assert!(c.text().await.starts_with("+OK"));
    let capa = String::from_utf8(multiline(&mut c).await).expect("ASCII");
    for cap in ["USER", "SASL PLAIN", "TOP", "UIDL", "PIPELINING"] {
        assert!(
            capa.lines().any(|l| l == cap),
            "{cap} missing from {capa:?}"
        );
    }
    assert!(!capa.contains("STLS"), "implicit TLS must not offer STLS");
    c.send(b"STAT\r\n").await;
    assert_eq!(c.text().await, "-ERR Please login first");
    c.send(format!("USER {DEFAULT_USER}\r\nPASS wrong code with spaces\r\n").as_bytes())
        .await;
    assert_eq!(c.text().await, "+OK ");
    assert_eq!(c.text().await, format!("-ERR {QQ_LOGIN_FAIL}"));
    // AUTH PLAIN with an initial response, then with a continuation.
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = b64.encode(format!("\0{DEFAULT_USER}\0nope"));
    c.send(format!("AUTH PLAIN {bad}\r\nAUTH PLAIN\r\n").as_bytes())
        .await;
    assert_eq!(c.text().await, format!("-ERR {QQ_LOGIN_FAIL}"));
    assert_eq!(c.text().await, "+ ");
    c.send(
        format!(
            "{}\r\n",
            b64.encode(format!("\0{DEFAULT_USER}\0{DEFAULT_CODE}"))
        )
        .as_bytes(),
    )
    .await;
    assert!(c.text().await.starts_with("+OK"));
    c.send(b"QUIT\r\n").await;
    assert_eq!(c.text().await, "+OK Bye");
    let logins: Vec<_> = fake
        .wait_logins(3, T)
        .await
        .into_iter()
        .map(|l| (l.method, l.password, l.over_tls, l.accepted))
        .collect();
    assert_eq!(
        logins,
        [
            (
                LoginMethod::Pop3UserPass,
                "wrong code with spaces".to_owned(),
                true,
                false
            ),
            (LoginMethod::Pop3AuthPlain, "nope".to_owned(), true, false),
            (
                LoginMethod::Pop3AuthPlain,
                DEFAULT_CODE.to_owned(),
                true,
                true
            ),
        ]
    );
}

#[tokio::test]
async fn pop3_retr_is_byte_exact_with_dot_lines_and_big_messages() {
    let big = big_message(1 << 20);
    let huge = big_message(20 << 20);
    let opts = Pop3Opts::default()
        .message(DOTTY)
        .message(big.clone())
        .message(huge.clone());
    let (ca, fake) = pop_fake(opts).await;
    let mut c = pop_login(&ca, &fake).await;
    c.send(b"STAT\r\nRETR 1\r\n").await;
    let total = DOTTY.len() + big.len() + huge.len();
    assert_eq!(c.text().await, format!("+OK 3 {total}"));
    assert_eq!(c.text().await, format!("+OK {} octets", DOTTY.len()));
    // On the wire: every line starting with "." is stuffed, and a CRLF is added at the end.
    let want_wire =
        b"Subject: dots\r\n\r\n..hidden\r\n...two\r\n..\r\nnot.start\r\n.. \r\nend\r\n.\r\n";
    assert_eq!(c.exact(want_wire.len()).await.expect("RETR 1"), want_wire);
    let started = Instant::now();
    c.send(b"RETR 2\r\nRETR 3\r\n").await;
    c.line().await;
    assert!(multiline(&mut c).await == big, "1 MB message differs");
    c.line().await;
    assert!(multiline(&mut c).await == huge, "20 MB message differs");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pop3_list_uidl_top_dele_rset_quit() {
    let opts = Pop3Opts::default()
        .message(DOTTY)
        .message(&b"Subject: 2\r\n\r\nl1\r\nl2\r\n"[..]);
    let (ca, fake) = pop_fake(opts).await;
    let mut c = pop_login(&ca, &fake).await;
    c.send(b"LIST\r\n").await;
    assert!(c.text().await.starts_with("+OK 2 messages"));
    assert_eq!(
        multiline(&mut c).await,
        format!("1 {}\r\n2 22\r\n", DOTTY.len()).into_bytes()
    );
    c.send(b"UIDL 2\r\nTOP 2 1\r\n").await;
    let uidl = c.text().await;
    assert!(uidl.starts_with("+OK 2 ") && uidl.len() > 8, "{uidl}");
    assert!(c.text().await.starts_with("+OK"));
    assert_eq!(multiline(&mut c).await, b"Subject: 2\r\n\r\nl1\r\n");
    c.send(b"DELE 1\r\nDELE 1\r\nLIST 1\r\nRSET\r\nSTAT\r\nDELE 2\r\nRETR 9\r\nNOOP\r\nQUIT\r\n")
        .await;
    assert_eq!(c.text().await, "+OK message 1 deleted");
    assert_eq!(c.text().await, "-ERR Message already deleted");
    assert_eq!(c.text().await, "-ERR Message already deleted");
    assert!(c.text().await.starts_with("+OK"));
    assert_eq!(c.text().await, format!("+OK 2 {}", DOTTY.len() + 22));
    assert_eq!(c.text().await, "+OK message 2 deleted");
    assert_eq!(c.text().await, "-ERR No such message");
    assert!(c.text().await.starts_with("+OK"));
    assert_eq!(c.text().await, "+OK Bye");
    assert_eq!(fake.messages(), [bytes::Bytes::from_static(DOTTY)]);
}

#[tokio::test]
async fn pop3_stls_upgrade_then_login_is_over_tls() {
    let (ca, cfg) = ca();
    let fake = FakePop3::start(Pop3Opts::default().tls(TlsMode::StartTls(cfg))).await;
    let mut c = Lines::new(TcpStream::connect(fake.addr()).await.expect("connect"));
    assert_eq!(c.text().await, QQ_POP3_GREETING);
    c.send(b"CAPA\r\n").await;
    c.line().await;
    assert!(String::from_utf8_lossy(&multiline_plain(&mut c).await).contains("STLS"));
    c.send(b"STLS\r\n").await;
    assert!(c.text().await.starts_with("+OK"));
    let mut c = Lines::new(tls_over(&ca, c.into_inner()).await);
    c.send(format!("CAPA\r\nUSER {DEFAULT_USER}\r\nPASS {DEFAULT_CODE}\r\n").as_bytes())
        .await;
    c.line().await;
    assert!(!String::from_utf8_lossy(&multiline(&mut c).await).contains("STLS"));
    c.line().await;
    assert!(c.text().await.starts_with("+OK"));
    let logins = fake.wait_logins(1, T).await;
    assert!(logins[0].over_tls && logins[0].accepted);
}

/// `multiline` for a plaintext connection.
async fn multiline_plain(c: &mut Lines<TcpStream>) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = c.line().await;
        if line == b"." {
            return out;
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
}

#[tokio::test]
async fn pop3_plain_mode_never_offers_stls() {
    let fake = FakePop3::start(Pop3Opts::default()).await;
    let mut c = Lines::new(TcpStream::connect(fake.addr()).await.expect("connect"));
    c.line().await;
    c.send(b"CAPA\r\nSTLS\r\n").await;
    c.line().await;
    assert!(!String::from_utf8_lossy(&multiline_plain(&mut c).await).contains("STLS"));
    assert_eq!(c.text().await, "-ERR STLS not available");
    assert!(fake.logins().is_empty());
}

#[tokio::test]
async fn pop3_faults() {
    // RejectLogin: the right code is refused with QQ's text.
    let (ca, fake) = pop_fake(Pop3Opts::default().fault(Fault::RejectLogin)).await;
    let mut c = pop_client(&ca, &fake).await;
    c.send(format!("USER {DEFAULT_USER}\r\nPASS {DEFAULT_CODE}\r\n").as_bytes())
        .await;
    c.line().await;
    assert_eq!(c.text().await, format!("-ERR {QQ_LOGIN_FAIL}"));

    // GbkGreeting: the greeting is not UTF-8.
    let (ca, fake) = pop_fake(Pop3Opts::default().fault(Fault::GbkGreeting)).await;
    let mut c = Lines::new(tls_connect(&ca, fake.addr()).await);
    let greeting = c.line().await;
    assert!(greeting.starts_with(b"+OK ") && greeting.ends_with(GBK_READY));

    // NoGreeting: TLS completes, then silence (absence shown by a bounded wait).
    let (ca, fake) = pop_fake(Pop3Opts::default().fault(Fault::NoGreeting)).await;
    let mut tls = tls_connect(&ca, fake.addr()).await;
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), tls.read(&mut byte))
            .await
            .is_err()
    );

    // DropMidRetr: the payload is cut and the connection ends before the terminator.
    let msg = big_message(256 * 1024);
    let opts = Pop3Opts::default()
        .message(msg)
        .fault(Fault::DropMidRetr { after_bytes: 1000 });
    let (ca, fake) = pop_fake(opts).await;
    let mut c = pop_login(&ca, &fake).await;
    c.send(b"RETR 1\r\n").await;
    assert!(c.text().await.starts_with("+OK"));
    let mut seen = 0;
    while let Some(line) = c.try_line().await {
        assert_ne!(line, b".", "terminator must not arrive");
        seen += line.len() + 2;
    }
    assert!(seen <= 1000, "{seen} bytes after the cut");

    // SlowReply: the greeting waits.
    let delay = Duration::from_millis(300);
    let (ca, fake) = pop_fake(Pop3Opts::default().fault(Fault::SlowReply(delay))).await;
    let started = Instant::now();
    pop_client(&ca, &fake).await;
    assert!(started.elapsed() >= delay);
}
