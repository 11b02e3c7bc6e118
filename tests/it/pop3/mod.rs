//! POP3 gateway tests (issue #4): real clients (Python poplib, curl, a raw socket) talk to
//! the proxy binary, which logs into a `FakePop3` with the stored code. This file owns the
//! shared set-up and the raw line client; the tests live in the child modules.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::config::{Account, ConfigBuilder};
use crate::support::pop3::{FakePop3, Pop3Opts};
use crate::support::proxy::Proxy;
use crate::support::smtp::{DEFAULT_CODE, DEFAULT_USER};
use crate::support::upstream::TlsMode;

mod clients;
mod failures;

/// The local login every test's proxy knows.
pub const USER: &str = "printer";
/// Its password (distinctive, so `assert_no_secret` cannot match TLS trace text).
pub const PASSWORD: &str = "Pr1nter-Pa55";
/// Deadline for any single wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// Fake options for a QQ-like pop.qq.com: implicit TLS with a leaf from `ca`, accepting
/// the config builder's default account (`12345@qq.com`, not the fake's own default, so
/// that both sides agree) and code.
pub fn qq_opts(ca: &TestCa) -> Pop3Opts {
    Pop3Opts::default()
        .tls(TlsMode::Implicit(ca.server_config(UPSTREAM_NAMES)))
        .user(DEFAULT_USER)
        .code(DEFAULT_CODE)
}

/// A config with one account whose `pop3_server` is `server`, the local user
/// [`USER`]/[`PASSWORD`], a POP3 listener with `starttls = "optional"`, and a lockout
/// threshold high enough for tests that fail logins on purpose.
pub fn builder(ca: &TestCa, server: String) -> ConfigBuilder {
    ConfigBuilder::new(ca)
        .account(Account::new("main").pop3(server))
        .user(USER, PASSWORD, "main")
        .pop3("optional")
        .limit("lockout_failures", "100")
}

/// `127.0.0.1:PORT` of a fake.
pub fn server_of(fake: &FakePop3) -> String {
    format!("127.0.0.1:{}", fake.addr().port())
}

/// Starts a fake with `opts` and a proxy in front of it (config from [`builder`]).
pub async fn start(ca: &TestCa, opts: Pop3Opts) -> (FakePop3, ConfigBuilder, Proxy) {
    let fake = FakePop3::start(opts).await;
    let b = builder(ca, server_of(&fake));
    let proxy = Proxy::start_built(&b, &[]).await;
    (fake, b, proxy)
}

/// The secrets no test may find in the proxy's output.
pub fn secrets() -> [&'static str; 2] {
    [DEFAULT_CODE, PASSWORD]
}

/// A plaintext POP3 client that reads whole lines, with a deadline on every read.
pub struct Raw {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    /// Connects and returns the client and the greeting line.
    pub async fn connect(addr: SocketAddr) -> (Raw, String) {
        let tcp = TcpStream::connect(addr).await.expect("connect to proxy");
        let (r, w) = tcp.into_split();
        let mut raw = Raw {
            r: BufReader::new(r),
            w,
        };
        let greeting = raw.line().await;
        (raw, greeting)
    }

    /// Connects, checks the greeting, and logs in as [`USER`] with USER/PASS.
    pub async fn login(addr: SocketAddr) -> Raw {
        let (mut raw, greeting) = Raw::connect(addr).await;
        assert!(greeting.starts_with("+OK"), "{greeting:?}");
        assert!(raw.cmd(&format!("USER {USER}")).await.starts_with("+OK"));
        let reply = raw.cmd(&format!("PASS {PASSWORD}")).await;
        assert_eq!(reply, "+OK Logged in\r\n");
        raw
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.expect("write to proxy");
    }

    /// Reads one line, CRLF included; panics on EOF or timeout.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(WAIT, self.r.read_until(b'\n', &mut buf))
            .await
            .expect("timed out reading a line from the proxy")
            .expect("read from proxy");
        assert!(
            n > 0,
            "the proxy closed the connection; got so far: {buf:?}"
        );
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Sends `line` + CRLF and reads one reply line.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.line().await
    }

    /// Reads a multi-line response body up to and including the `.` line (RFC 1939 §3),
    /// as raw bytes, still dot-stuffed.
    pub async fn multi(&mut self, deadline: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let read = async {
            loop {
                let start = out.len();
                let n = self.r.read_until(b'\n', &mut out).await.expect("read body");
                assert!(n > 0, "EOF inside a multi-line response");
                if out.get(start..) == Some(&b".\r\n"[..]) {
                    return;
                }
            }
        };
        tokio::time::timeout(deadline, read)
            .await
            .expect("timed out reading a multi-line response");
        out
    }

    /// Reads until the proxy closes the connection; returns what arrived and whether the
    /// close was a clean EOF (rather than a reset).
    pub async fn until_closed(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let r = tokio::time::timeout(WAIT, self.r.read_to_end(&mut out))
            .await
            .expect("the proxy did not close the connection");
        (out, r.is_ok())
    }
}

/// A message of about `len` bytes: CRLF lines of varied length, some starting with `.`
/// (so the wire form is dot-stuffed), one that is a lone `.`, and 8-bit bytes.
pub fn big_message(len: usize) -> Vec<u8> {
    let mut out = b"From: scanner@example.com\r\nSubject: big\r\n\r\n".to_vec();
    let mut i = 0usize;
    while out.len() < len {
        match i % 97 {
            0 => out.extend_from_slice(b".\r\n"),
            1 => out.extend_from_slice(b"..double dot\r\n"),
            2 => out.extend_from_slice(b".leading dot\r\n"),
            3 => out.extend_from_slice(b"\xe4\xbd\xa0\xe5\xa5\xbd \xb7\xfe 8-bit\r\n"),
            _ => {
                let width = 20 + (i * 7) % 70;
                let fill = b'a' + (i % 26) as u8;
                out.extend(std::iter::repeat_n(fill, width));
                out.extend_from_slice(b"\r\n");
            }
        }
        i += 1;
    }
    out
}
