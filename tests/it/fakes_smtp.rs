//! Self-tests of the SMTP test fixtures: the fake upstream driven by an independent client
//! (lettre) and by raw protocol scripts; closes on demand and refusals mid-DATA in
//! `closing`; the config builder and proxy harness in `harness`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::ca::TestCa;
use crate::support::smtp::*;

mod closing;
mod harness;

const WAIT: Duration = Duration::from_secs(10);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A lettre transport to `fake`, trusting only `ca`, wrapping `params` as `mode` says.
fn mailer(
    fake: &FakeSmtp,
    ca: &TestCa,
    mode: fn(TlsParameters) -> Tls,
    code: &str,
    mechanism: Mechanism,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let root = Certificate::from_pem(ca.pem().as_bytes()).expect("CA PEM");
    let params = TlsParameters::builder("localhost".to_owned())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(root)
        .build_rustls()
        .expect("TLS parameters");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(fake.addr().port())
        .tls(mode(params))
        .credentials(Credentials::new(DEFAULT_USER.to_owned(), code.to_owned()))
        .authentication(vec![mechanism])
        .timeout(Some(WAIT))
        .build()
}

fn email(body: &str) -> lettre::Message {
    lettre::Message::builder()
        .from(DEFAULT_USER.parse().expect("from"))
        .to("friend@example.com".parse().expect("to"))
        .subject("fixture test")
        .body(body.to_owned())
        .expect("message")
}

/// RFC 5321 §4.5.2 transparency, as a client applies it.
fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

#[tokio::test]
async fn lettre_implicit_tls_plain_message_recorded_byte_exactly() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mail = mailer(&fake, &ca, Tls::Wrapper, DEFAULT_CODE, Mechanism::Plain);
    let message = email("line one\r\n.leading dot\r\n..two dots\r\nend\r\n");
    let formatted = message.formatted();
    mail.send(message).await.expect("send");

    let got = fake.wait_messages(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, DEFAULT_USER);
    assert_eq!(got[0].rcpt_to, vec!["friend@example.com".to_owned()]);
    assert_eq!(
        got[0].data,
        dot_stuff(&formatted),
        "recorded DATA is the dot-stuffed wire form"
    );
    assert!(got[0].data.windows(15).any(|w| w == b"\r\n..leading dot"));
    assert_eq!(
        (got[0].auth_user.as_str(), got[0].auth_password.as_str()),
        (DEFAULT_USER, DEFAULT_CODE)
    );

    let attempts = fake.auth_attempts();
    let expected = AuthAttempt {
        mechanism: "PLAIN".into(),
        user: DEFAULT_USER.into(),
        password: DEFAULT_CODE.into(),
        tls: true,
        accepted: true,
    };
    assert_eq!(attempts, vec![expected]);
    let plain = format!(
        "AUTH PLAIN {}",
        b64(format!("\0{DEFAULT_USER}\0{DEFAULT_CODE}").as_bytes())
    );
    let commands = fake.commands();
    assert!(commands.contains(&plain), "{commands:#?}");
    assert!(commands
        .iter()
        .any(|c| c.starts_with("MAIL FROM:<12345@qq.com>")));
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn lettre_auth_login_and_send_raw_several_messages() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mail = mailer(&fake, &ca, Tls::Wrapper, DEFAULT_CODE, Mechanism::Login);
    let envelope = Envelope::new(
        Some(DEFAULT_USER.parse().expect("from")),
        vec![
            "a@example.com".parse().expect("a"),
            "b@example.com".parse().expect("b"),
        ],
    )
    .expect("envelope");
    for body in [
        &b"Subject: one\r\n\r\nfirst\r\n"[..],
        b"Subject: two\r\n\r\n.\r\n",
    ] {
        mail.send_raw(&envelope, body).await.expect("send_raw");
    }
    let got = fake.wait_messages(2, WAIT).await;
    assert_eq!(got[0].data, b"Subject: one\r\n\r\nfirst\r\n");
    assert_eq!(got[1].data, b"Subject: two\r\n\r\n..\r\n");
    assert_eq!(
        got[1].rcpt_to,
        vec!["a@example.com".to_owned(), "b@example.com".to_owned()]
    );
    let attempts = fake.auth_attempts();
    assert!(attempts
        .iter()
        .all(|a| a.mechanism == "LOGIN" && a.accepted));
    let commands = fake.commands();
    assert!(
        commands.contains(&b64(DEFAULT_CODE.as_bytes())),
        "{commands:#?}"
    );
}

#[tokio::test]
async fn wrong_code_gets_qq_535() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mail = mailer(
        &fake,
        &ca,
        Tls::Wrapper,
        "wrongwrongwrong1",
        Mechanism::Plain,
    );
    let err = mail
        .send(email("x"))
        .await
        .expect_err("wrong code must fail");
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains(&QQ_535[4..]), "{err}");
    let attempts = fake.auth_attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].password, "wrongwrongwrong1");
    assert!(!attempts[0].accepted);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn sender_rule_gets_qq_501() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mail = mailer(&fake, &ca, Tls::Wrapper, DEFAULT_CODE, Mechanism::Plain);
    let envelope = Envelope::new(
        Some("someone.else@qq.com".parse().expect("from")),
        vec!["a@example.com".parse().expect("to")],
    )
    .expect("envelope");
    let err = mail
        .send_raw(&envelope, b"Subject: x\r\n\r\nx\r\n")
        .await
        .expect_err("501");
    assert!(err.to_string().contains(&QQ_501_SENDER[4..]), "{err}");
    assert!(fake.messages().is_empty());

    // With the rule off, the same envelope goes through.
    let lax = FakeSmtp::start(SmtpOptions::implicit(&ca).sender_rule(false));
    let mail = mailer(&lax, &ca, Tls::Wrapper, DEFAULT_CODE, Mechanism::Plain);
    mail.send_raw(&envelope, b"Subject: x\r\n\r\nx\r\n")
        .await
        .expect("rule off");
    assert_eq!(
        lax.wait_messages(1, WAIT).await[0].mail_from,
        "someone.else@qq.com"
    );
}

#[tokio::test]
async fn lettre_starttls_required() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::starttls(&ca));
    assert!(fake.config_server().starts_with("starttls://127.0.0.1:"));
    let mail = mailer(&fake, &ca, Tls::Required, DEFAULT_CODE, Mechanism::Plain);
    mail.send(email("via starttls")).await.expect("send");
    fake.wait_messages(1, WAIT).await;
    let attempts = fake.auth_attempts();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].tls && attempts[0].accepted);
    let commands = fake.commands();
    let starttls = commands
        .iter()
        .position(|c| c == "STARTTLS")
        .expect("STARTTLS sent");
    let auth = commands
        .iter()
        .position(|c| c.starts_with("AUTH"))
        .expect("AUTH sent");
    assert!(starttls < auth, "{commands:#?}");
}

#[tokio::test]
async fn plain_upstream_never_offers_starttls() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::plain());
    let mail = mailer(&fake, &ca, Tls::Required, DEFAULT_CODE, Mechanism::Plain);
    mail.send(email("x"))
        .await
        .expect_err("no STARTTLS on offer");
    assert!(
        fake.auth_attempts().is_empty(),
        "a careful client sends no credentials"
    );
}

#[tokio::test]
async fn drop_mid_data_fails_lettre() {
    let ca = TestCa::new("fakes-smtp CA");
    let fault = Fault::DropMidData { after_bytes: 1000 };
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(fault));
    let mail = mailer(&fake, &ca, Tls::Wrapper, DEFAULT_CODE, Mechanism::Plain);
    let body = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(2000);
    mail.send(email(&body))
        .await
        .expect_err("connection reset mid-DATA");
    assert!(fake.messages().is_empty());
    assert!(fake.commands().contains(&"DATA".to_owned()));
}

#[tokio::test]
async fn data_faults_fail_lettre() {
    let ca = TestCa::new("fakes-smtp CA");
    let faults = [
        (Fault::DropAfterDataBeforeReply, None),
        (
            Fault::RejectData(550, "The \"From\" header is missing or invalid".into()),
            Some("550"),
        ),
        (Fault::TempFailAuth, Some("454")),
        (Fault::RejectAuth, Some("535")),
        (Fault::RateLimitAuth, Some("421")),
    ];
    for (fault, code) in faults {
        let fake = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(fault.clone()));
        let mail = mailer(&fake, &ca, Tls::Wrapper, DEFAULT_CODE, Mechanism::Plain);
        let err = mail
            .send(email("x"))
            .await
            .expect_err("fault must fail the send");
        if let Some(code) = code {
            assert!(err.to_string().contains(code), "{fault:?}: {err}");
        }
        assert!(fake.messages().is_empty(), "{fault:?}");
    }
}

/// Any byte stream a raw client can drive.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A byte-level SMTP client for scripts lettre cannot express.
struct Raw {
    io: BufReader<Box<dyn Stream>>,
}

impl Raw {
    async fn tls(fake: &FakeSmtp, ca: &TestCa) -> Raw {
        let tcp = TcpStream::connect(fake.addr()).await.expect("connect");
        Raw {
            io: BufReader::new(Box::new(tls_upgrade(tcp, ca).await)),
        }
    }

    async fn plain(fake: &FakeSmtp) -> Raw {
        let tcp = TcpStream::connect(fake.addr()).await.expect("connect");
        Raw {
            io: BufReader::new(Box::new(tcp)),
        }
    }

    /// One (possibly multi-line) reply; empty on EOF or reset.
    async fn reply(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let mut line = Vec::new();
            match self.io.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return all,
                Ok(_) => all.extend_from_slice(&line),
            }
            if line.get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// Sends `line` + CRLF and returns the reply as lossy text.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        String::from_utf8_lossy(&self.reply().await).into_owned()
    }
}

async fn tls_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    ca: &TestCa,
) -> tokio_rustls::client::TlsStream<S> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::clone(&ca.client_config()))
        .connect(name, io)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn raw_session_qq_replies_and_transactions() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mut c = Raw::tls(&fake, &ca).await;
    assert!(c.reply().await.starts_with(b"220 "));
    assert!(
        c.cmd("MAIL FROM:<12345@qq.com>").await.starts_with("503 "),
        "AUTH first"
    );
    let ehlo = c.cmd("EHLO client").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(
        lines,
        [
            "250-smtp.qq.com",
            "250-PIPELINING",
            "250-SIZE 73400320",
            "250-AUTH LOGIN PLAIN XOAUTH XOAUTH2",
            "250-AUTH=LOGIN",
            "250-MAILCOMPRESS",
            "250 8BITMIME"
        ]
    );
    assert!(c.cmd("AUTH XOAUTH2 abc").await.starts_with("504 "));
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 \r\n");
    assert_eq!(c.cmd("*").await.get(..4), Some("501 "));
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        c.cmd(&b64(DEFAULT_USER.as_bytes())).await,
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert!(c
        .cmd(&b64(DEFAULT_CODE.as_bytes()))
        .await
        .starts_with("235 "));
    assert_eq!(c.cmd("MAIL FROM:<>").await, format!("{QQ_501_SENDER}\r\n"));
    assert_eq!(
        c.cmd("MAIL FROM:<Me <12345@qq.com>>").await,
        format!("{QQ_501_SENDER}\r\n")
    );
    assert!(c
        .cmd("MAIL FROM:<12345@QQ.com> SIZE=73400321")
        .await
        .starts_with("552 "));
    assert!(c.cmd("DATA").await.starts_with("503 "));
    assert!(c
        .cmd("MAIL FROM: <12345@qq.com> BODY=8BITMIME")
        .await
        .starts_with("250 "));
    assert!(c.cmd("RCPT TO:<x@example.com>").await.starts_with("250 "));
    assert!(c.cmd("RSET").await.starts_with("250 "));
    assert!(
        c.cmd("RCPT TO:<x@example.com>").await.starts_with("503 "),
        "RSET ended it"
    );
    assert!(c.cmd("NOOP").await.starts_with("250 "));
    for (n, body) in [&b"..dot\r\nbody\r\n.\r\n"[..], b".\r\n", b"\r\n.\r\n"]
        .iter()
        .enumerate()
    {
        assert!(c.cmd("MAIL FROM:<12345@qq.com>").await.starts_with("250 "));
        assert!(c
            .cmd(&format!("RCPT TO:<r{n}@example.com>"))
            .await
            .starts_with("250 "));
        assert!(c.cmd("DATA").await.starts_with("354 "));
        c.send(body).await;
        assert!(c.reply().await.starts_with(b"250 "));
    }
    assert!(c.cmd("QUIT").await.starts_with("221 "));
    let got = fake.wait_messages(3, WAIT).await;
    let data: Vec<&[u8]> = got.iter().map(|m| m.data.as_slice()).collect();
    assert_eq!(data, [&b"..dot\r\nbody"[..], b"", b""]);
}

#[tokio::test]
async fn raw_auth_inline_forms_and_line_bound() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca).size(1000).max_line(512));
    let mut c = Raw::tls(&fake, &ca).await;
    c.reply().await;
    assert!(
        c.cmd("AUTH PLAIN abc").await.starts_with("503 "),
        "EHLO first"
    );
    assert!(c.cmd("HELO client").await.starts_with("250 smtp.qq.com"));
    let blob = b64(format!("{DEFAULT_USER}\0{DEFAULT_USER}\0{DEFAULT_CODE}").as_bytes());
    assert!(c
        .cmd(&format!("AUTH PLAIN {blob}"))
        .await
        .starts_with("235 "));
    assert!(
        c.cmd("AUTH PLAIN x").await.starts_with("503 "),
        "already authenticated"
    );
    assert!(c.cmd("EHLO again").await.contains("250-SIZE 1000\r\n"));
    assert!(c.cmd(&"X".repeat(600)).await.starts_with("500 "));
    assert!(c.reply().await.is_empty(), "closed after an over-long line");

    let mut c = Raw::tls(&fake, &ca).await;
    c.reply().await;
    c.cmd("EHLO c").await;
    let user = b64(DEFAULT_USER.as_bytes());
    assert_eq!(
        c.cmd(&format!("AUTH login {user}")).await,
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert!(c.cmd(&b64(b"bad")).await.starts_with("535 Login Fail."));
    let attempts = fake.auth_attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].password, "bad");
}

#[tokio::test]
async fn raw_starttls_refuses_plaintext_auth_then_upgrades() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::starttls(&ca));
    let mut c = Raw::plain(&fake).await;
    assert!(c.reply().await.starts_with(b"220 "));
    assert!(c.cmd("EHLO c").await.contains("250-STARTTLS\r\n"));
    let blob = b64(format!("\0{DEFAULT_USER}\0{DEFAULT_CODE}").as_bytes());
    assert!(c
        .cmd(&format!("AUTH PLAIN {blob}"))
        .await
        .starts_with("530 "));
    assert!(c.cmd("STARTTLS").await.starts_with("220 "));
    let Raw { io } = c;
    let mut c = Raw {
        io: BufReader::new(Box::new(tls_upgrade(io.into_inner(), &ca).await)),
    };
    assert!(!c.cmd("EHLO c").await.contains("STARTTLS"));
    assert!(c
        .cmd(&format!("AUTH PLAIN {blob}"))
        .await
        .starts_with("235 "));
    let attempts = fake.auth_attempts();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.tls, a.accepted))
            .collect::<Vec<_>>(),
        [(false, false), (true, true)]
    );
}

#[tokio::test]
async fn starttls_with_pipelined_bytes_is_refused() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::starttls(&ca));
    let mut c = Raw::plain(&fake).await;
    c.reply().await;
    c.cmd("EHLO c").await;
    c.send(b"STARTTLS\r\nNOOP\r\n").await;
    assert!(c.reply().await.starts_with(b"220 "));
    assert!(
        c.reply().await.is_empty(),
        "the fake hangs up instead of starting TLS"
    );
}

#[tokio::test]
async fn greeting_and_timing_faults() {
    let ca = TestCa::new("fakes-smtp CA");
    let gbk = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(Fault::GbkGreeting));
    let greeting = Raw::tls(&gbk, &ca).await.reply().await;
    assert!(greeting.starts_with(b"220 ") && greeting.ends_with(b"\r\n"));
    assert!(greeting
        .windows(GBK_WELCOME.len())
        .any(|w| w == GBK_WELCOME));
    assert!(std::str::from_utf8(&greeting).is_err(), "GBK is not UTF-8");

    let slow = FakeSmtp::start(
        SmtpOptions::implicit(&ca).fault(Fault::SlowReply(Duration::from_millis(200))),
    );
    let started = Instant::now();
    assert!(Raw::tls(&slow, &ca)
        .await
        .reply()
        .await
        .starts_with(b"220 "));
    assert!(started.elapsed() >= Duration::from_millis(200));

    let silent = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(Fault::NoGreeting));
    let mut c = Raw::tls(&silent, &ca).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), c.io.read(&mut byte)).await;
    assert!(read.is_err(), "no greeting expected, got {read:?}");
}

#[tokio::test]
async fn connection_drop_faults() {
    let ca = TestCa::new("fakes-smtp CA");
    let always = FakeSmtp::start(SmtpOptions::plain().fault(Fault::RandomDrop { one_in: 1 }));
    let mut c = Raw::plain(&always).await;
    assert!(c.reply().await.is_empty(), "dropped at accept");
    assert_eq!(always.wait_connections(1, WAIT).await, 1);

    let quit = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(Fault::ResetOnQuit));
    let mut c = Raw::tls(&quit, &ca).await;
    c.reply().await;
    assert_eq!(c.cmd("QUIT").await, "", "reset instead of 221");

    let gbk = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(Fault::RejectAuthGbk));
    let mut c = Raw::tls(&gbk, &ca).await;
    c.reply().await;
    c.cmd("EHLO c").await;
    c.send(format!("AUTH LOGIN {}\r\n", b64(DEFAULT_USER.as_bytes())).as_bytes())
        .await;
    c.reply().await;
    c.send(format!("{}\r\n", b64(DEFAULT_CODE.as_bytes())).as_bytes())
        .await;
    let reply = c.reply().await;
    assert_eq!(reply, [&b"535 "[..], GBK_LOGIN_FAILED, b"\r\n"].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_message_streams_through() {
    let ca = TestCa::new("fakes-smtp CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mut c = Raw::tls(&fake, &ca).await;
    c.reply().await;
    c.cmd("EHLO c").await;
    let blob = b64(format!("\0{DEFAULT_USER}\0{DEFAULT_CODE}").as_bytes());
    assert!(c
        .cmd(&format!("AUTH PLAIN {blob}"))
        .await
        .starts_with("235 "));
    c.cmd("MAIL FROM:<12345@qq.com>").await;
    c.cmd("RCPT TO:<big@example.com>").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let line = [b'x'; 998];
    let lines = 50 * 1024 * 1024 / 1000;
    let mut chunk = Vec::with_capacity(1000 * 1024);
    for _ in 0..1024 {
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\r\n");
    }
    for _ in 0..lines / 1024 {
        c.send(&chunk).await;
    }
    c.send(b".\r\n").await;
    assert!(c.reply().await.starts_with(b"250 "));
    let got = fake.wait_messages(1, WAIT).await;
    assert_eq!(got[0].data.len(), lines / 1024 * 1024 * 1000 - 2);
}
