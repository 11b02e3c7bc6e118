//! The SMTP gateway end to end: the real proxy binary between real clients (lettre, Python
//! `smtplib`, curl, swaks, raw sockets) and the fake QQ upstream. This file owns the shared
//! pieces: a [`Gateway`] (test CA + fake + config + running proxy) and a raw SMTP [`Client`]
//! that can STARTTLS; the tests live in the child modules.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, Message, SmtpOptions, DEFAULT_CODE, DEFAULT_USER};

mod bare_lf;
mod behaviour;
mod clients;
mod data_rules;
mod faults;
mod headers;
mod negative;
mod transfer;
mod unauth_recipients;
mod upstream_close;
mod upstream_tls;
mod verdicts;

/// The local user every test logs in as.
pub const USER: &str = "printer";
/// Its password: distinctive, so `assert_no_secret` cannot match TLS trace words.
pub const PASSWORD: &str = "Pr1nter-Pa55";
/// A wrong password, also checked for leaks.
pub const WRONG: &str = "Wr0ng-Pa55-9x";
/// The sender the clients ask for (the proxy rewrites it to the account).
pub const SENDER: &str = "scan@printer.local";
/// The recipient.
pub const RCPT: &str = "friend@example.com";
/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A test CA, a fake upstream, the config and the proxy running it. Fields drop in order:
/// the proxy first, the CA (whose file the config names) last.
pub struct Gateway {
    /// The running proxy.
    pub proxy: Proxy,
    /// The fake upstream (the account points at it unless a test says otherwise).
    pub fake: FakeSmtp,
    /// The config, kept for its tempdir (local certificate, state).
    _config: ConfigBuilder,
    /// The CA of the fake's certificate and of the proxy's local certificate.
    pub ca: TestCa,
}

impl Gateway {
    /// An implicit-TLS fake with QQ's defaults and the default config.
    pub async fn start() -> Gateway {
        Gateway::with(SmtpOptions::implicit, |b| b).await
    }

    /// A fake built by `fake` and the default config changed by `configure`.
    pub async fn with(
        fake: impl FnOnce(&TestCa) -> SmtpOptions,
        configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Gateway {
        let ca = TestCa::new("it-smtp CA");
        let fake = FakeSmtp::start(fake(&ca));
        let account = Account::new("main").smtp_fake(&fake);
        Gateway::assemble(ca, fake, account, configure).await
    }

    /// The default config around `account` (id `main`), changed by `configure`: user
    /// `printer`, `[smtp] starttls = "optional"` with a local certificate from `ca`, and a
    /// lockout threshold no test reaches.
    pub async fn assemble(
        ca: TestCa,
        fake: FakeSmtp,
        account: Account,
        configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Gateway {
        let builder = ConfigBuilder::new(&ca)
            .account(account)
            .user(USER, PASSWORD, "main")
            .smtp("optional")
            .local_cert_from(&ca)
            .limit("lockout_failures", "100");
        let builder = configure(builder);
        let proxy = Proxy::start_built(&builder, &[]).await;
        Gateway {
            proxy,
            fake,
            _config: builder,
            ca,
        }
    }

    /// A raw client connected to the proxy, past the greeting.
    pub async fn client(&self) -> Client {
        Client::connect(self.proxy.smtp_addr()).await
    }

    /// A raw client after EHLO and a successful AUTH PLAIN.
    pub async fn logged_in(&self) -> Client {
        let mut c = self.client().await;
        c.ehlo().await;
        let r = c.auth_plain(USER, PASSWORD).await;
        assert!(r.starts_with("235 "), "AUTH: {r}");
        c
    }

    /// The port of the proxy's SMTP listener (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.proxy.smtp_addr().port()
    }

    /// Neither the code nor the password (nor `extra`) appears in the proxy's output.
    pub fn assert_no_secret(&self, extra: &[&str]) {
        let mut secrets = vec![DEFAULT_CODE, PASSWORD];
        secrets.extend_from_slice(extra);
        self.proxy.assert_no_secret(&secrets);
    }

    /// Every AUTH the fake saw was the account's address with the exact code, accepted.
    pub fn assert_upstream_auth(&self, attempts: usize) {
        let got = self.fake.auth_attempts();
        assert_eq!(got.len(), attempts, "{got:#?}");
        for a in &got {
            assert_eq!(
                (a.user.as_str(), a.password.as_str(), a.accepted),
                (DEFAULT_USER, DEFAULT_CODE, true),
                "{a:?}"
            );
        }
    }
}

/// Asserts a recorded message carries the rewritten envelope and the exact DATA bytes.
pub fn assert_relayed(got: &Message, rcpt: &[&str], data: &[u8]) {
    assert_eq!(got.mail_from, DEFAULT_USER, "envelope sender rewritten");
    assert_eq!(got.rcpt_to, rcpt, "recipients");
    assert_eq!(
        (got.auth_user.as_str(), got.auth_password.as_str()),
        (DEFAULT_USER, DEFAULT_CODE),
        "the session authenticated with the account's code"
    );
    assert!(
        got.data == data,
        "DATA differs: got {} bytes {:?}..., want {} bytes {:?}...",
        got.data.len(),
        String::from_utf8_lossy(&got.data[..got.data.len().min(300)]),
        data.len(),
        String::from_utf8_lossy(&data[..data.len().min(300)]),
    );
}

/// RFC 5321 §4.5.2 transparency, as a client applies it.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
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

/// What the fake records for a message `text` (CRLF lines, ending in CRLF) sent by a client
/// that dot-stuffs and ends with `.CRLF`: stuffed, the last CRLF being the terminator's.
pub fn recorded_form(text: &[u8]) -> Vec<u8> {
    let mut out = dot_stuff(text);
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// A sample message with a leading-dot line, a lone dot line and 8-bit bytes.
pub fn sample_message(subject: &str) -> Vec<u8> {
    format!(
        "From: \"Scanner\" <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\npage 1\r\n.leading dot\r\n.\r\n\
         ..two dots\r\n扫描完成\r\nend\r\n"
    )
    .into_bytes()
}

/// Standard base64 (RFC 4648 §4), as SASL uses it.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The client side of the connection, plain or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Upgrading,
}

/// A raw SMTP client that reads whole replies with a deadline and can STARTTLS.
pub struct Client {
    conn: Conn,
    /// Bytes read but not yet returned as a reply.
    buf: Vec<u8>,
    /// The 220 greeting.
    pub greeting: Vec<u8>,
}

impl Client {
    /// Connects and reads the greeting, which must be a 220.
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect to proxy");
        let mut c = Client {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
            greeting: Vec::new(),
        };
        let greeting = c.reply_bytes().await.expect("greeting");
        assert!(greeting.starts_with(b"220 "), "greeting {greeting:?}");
        c.greeting = greeting;
        c
    }

    fn io(&mut self) -> &mut (dyn Io + '_) {
        match &mut self.conn {
            Conn::Plain(t) => t,
            Conn::Tls(t) => t.as_mut(),
            Conn::Upgrading => panic!("connection lost during STARTTLS"),
        }
    }

    /// Writes `bytes` as they are; panics if that takes over a minute (50 MB on a busy
    /// machine takes a few seconds).
    pub async fn send(&mut self, bytes: &[u8]) {
        let io = self.io();
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        tokio::time::timeout(Duration::from_secs(60), write)
            .await
            .expect("write to the proxy timed out")
            .expect("write to the proxy");
    }

    /// Reads one complete reply (all its lines); `None` on EOF or reset. Panics after
    /// [`WAIT`] without one.
    pub async fn reply_bytes(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = reply_end(&self.buf) {
                return Some(self.buf.drain(..end).collect());
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(WAIT, self.io().read(&mut chunk)).await;
            match read.expect("timed out waiting for a reply") {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads one reply as (lossy) text; panics on EOF.
    pub async fn reply(&mut self) -> String {
        let bytes = self.reply_bytes().await.unwrap_or_else(|| {
            panic!(
                "connection closed; unread {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        });
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Sends `line` + CRLF and reads the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO; asserts a 250 and returns the reply.
    pub async fn ehlo(&mut self) -> String {
        let r = self.cmd("EHLO client.test").await;
        assert!(r.starts_with("250-"), "EHLO: {r}");
        r
    }

    /// `AUTH PLAIN` with an initial response; returns the final reply.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let blob = b64(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {blob}")).await
    }

    /// `AUTH LOGIN` answering both challenges; returns the final reply.
    pub async fn auth_login(&mut self, user: &str, password: &str) -> String {
        let r = self.cmd("AUTH LOGIN").await;
        assert_eq!(r, "334 VXNlcm5hbWU6\r\n");
        let r = self.cmd(&b64(user.as_bytes())).await;
        assert_eq!(r, "334 UGFzc3dvcmQ6\r\n");
        self.cmd(&b64(password.as_bytes())).await
    }

    /// STARTTLS, expecting 220, then the handshake trusting `ca`.
    pub async fn starttls(&mut self, ca: &TestCa) {
        let r = self.cmd("STARTTLS").await;
        assert!(r.starts_with("220 "), "STARTTLS: {r}");
        self.upgrade(ca).await;
    }

    /// The TLS handshake (name `localhost`), trusting only `ca`. Nothing may have arrived
    /// after the 220 (RFC 3207 §4.2).
    pub async fn upgrade(&mut self, ca: &TestCa) {
        assert!(
            self.buf.is_empty(),
            "plaintext after the 220 to STARTTLS: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Upgrading) else {
            panic!("STARTTLS twice");
        };
        let name = ServerName::try_from("localhost").expect("name");
        let tls = tokio::time::timeout(
            WAIT,
            TlsConnector::from(ca.client_config()).connect(name, tcp),
        )
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake with the proxy");
        self.conn = Conn::Tls(Box::new(tls));
    }

    /// MAIL FROM [`SENDER`], RCPT (each), DATA; asserts each is accepted.
    pub async fn begin_data(&mut self, rcpts: &[&str]) {
        let r = self.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
        assert!(r.starts_with("250"), "MAIL: {r}");
        for rcpt in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            assert!(r.starts_with("250"), "RCPT: {r}");
        }
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354"), "DATA: {r}");
    }

    /// [`Client::begin_data`], then `wire` (already dot-stuffed, CRLF-terminated) and the
    /// final dot; returns the reply to the final dot.
    pub async fn send_message(&mut self, rcpts: &[&str], wire: &[u8]) -> String {
        self.begin_data(rcpts).await;
        self.send(wire).await;
        self.send(b".\r\n").await;
        self.reply().await
    }

    /// Reads until the proxy closes (panics after [`WAIT`]); returns what arrived.
    pub async fn eof(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.buf);
        loop {
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(WAIT, self.io().read(&mut chunk)).await;
            match read.expect("timed out waiting for the proxy to close") {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Object-safe read + write.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The end of the first complete reply in `buf` (RFC 5321 §4.2.1: the last line has a
/// space, or nothing, after the code).
fn reply_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i + 1];
        start += i + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}
