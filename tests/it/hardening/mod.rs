//! Hardening tests against the real binary: slowloris, brute force and lockout, guessing
//! from many IPv6 addresses (in a network namespace of its own), session limits, a soak
//! under random upstream drops, upstream faults, file permissions, and hostile input
//! (HTTP from browsers, control bytes, the pre-login deadline, log forgery).
//! Shared here: a raw SMTP client that can bind a chosen source address, and the usual
//! proxy setup.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

use crate::cli::Reloadable;
use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::smtp::{FakeSmtp, DEFAULT_CODE};

mod brute_force;
mod check_ceiling;
mod control_bytes;
mod cross_protocol;
mod deadline;
mod files;
mod ipv6_guessing;
mod limits;
mod log_forgery;
pub mod netns;
mod slowloris;
mod soak;
mod upstream_faults;

/// The local user's password in every scenario (distinctive, so a leak is findable).
pub const PASSWORD: &str = "Pr1nter-Pa55";
/// The local user's name.
pub const USER: &str = "printer";
/// How long any single reply may take before the test calls it a hang.
pub const REPLY_WAIT: Duration = Duration::from_secs(20);
/// A second loopback address: Linux routes all of 127/8 to `lo`.
pub const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The secrets no log line may contain.
pub fn secrets() -> [&'static str; 2] {
    [DEFAULT_CODE, PASSWORD]
}

/// A config with one account sending through `smtp`, user `printer`, and `[smtp]`
/// without STARTTLS (plaintext on loopback is what legacy clients use).
pub fn smtp_builder(ca: &TestCa, smtp: &FakeSmtp) -> ConfigBuilder {
    ConfigBuilder::new(ca)
        .account(Account::new("main").smtp_fake(smtp))
        .user(USER, PASSWORD, "main")
        .smtp("off")
}

/// Fake SMTP, IMAP and POP3 upstreams over implicit TLS, and a config with one account
/// on all three, user `printer`, and IMAP and POP3 listeners without STARTTLS. The fakes
/// must outlive the proxy.
pub async fn three_upstreams(
    ca: &TestCa,
) -> (
    FakeSmtp,
    crate::support::imap::FakeImap,
    crate::support::pop3::FakePop3,
    ConfigBuilder,
) {
    use crate::support::imap::{FakeImap, ImapOpts};
    use crate::support::pop3::{FakePop3, Pop3Opts};
    let smtp = FakeSmtp::start(crate::support::smtp::SmtpOptions::implicit(ca));
    let tls = crate::support::upstream::TlsMode::Implicit(
        ca.server_config(crate::support::ca::UPSTREAM_NAMES),
    );
    let imap = FakeImap::start(ImapOpts::default().tls(tls.clone())).await;
    let pop3 = FakePop3::start(Pop3Opts::default().tls(tls)).await;
    let builder = ConfigBuilder::new(ca)
        .account(
            Account::new("main")
                .smtp_fake(&smtp)
                .imap(format!("127.0.0.1:{}", imap.addr().port()))
                .pop3(format!("127.0.0.1:{}", pop3.addr().port())),
        )
        .user(USER, PASSWORD, "main")
        .imap("off")
        .pop3("off");
    (smtp, imap, pop3, builder)
}

/// The base64 of an `AUTH PLAIN` message.
pub fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// How reading a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A whole reply (all lines of a multi-line SMTP reply, CRLFs included).
    Reply(String),
    /// The connection closed (EOF or reset) before a whole reply.
    Closed(String),
}

impl Got {
    /// The reply text; panics if the connection closed instead.
    pub fn text(self) -> String {
        match self {
            Got::Reply(t) => t,
            Got::Closed(partial) => panic!("connection closed instead of a reply ({partial:?})"),
        }
    }
}

/// A raw line-oriented client (SMTP replies are read whole, multi-line included).
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to `addr`, from `source` if given (port chosen by the kernel).
    pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<Client> {
        Client::connect_with(TcpSocket::new_v4()?, addr, source).await
    }

    /// [`Client::connect`] over a socket made elsewhere (say, inside a network namespace:
    /// [`netns::Netns::sockets`]).
    pub async fn connect_with(
        socket: TcpSocket,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> std::io::Result<Client> {
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        Ok(Client {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    /// Reads one line (with its LF), or `None` at EOF or on an error.
    pub async fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) if !buf.ends_with(b"\n") => None,
            Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        }
    }

    /// Reads one SMTP reply (continuation lines `NNN-` included), panicking after
    /// [`REPLY_WAIT`]: a missing reply is a hang.
    pub async fn smtp_reply(&mut self) -> Got {
        let read = async {
            let mut all = String::new();
            loop {
                let Some(line) = self.line().await else {
                    return Got::Closed(all);
                };
                all.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Got::Reply(all);
                }
            }
        };
        match tokio::time::timeout(REPLY_WAIT, read).await {
            Ok(got) => got,
            Err(_) => panic!("no reply within {REPLY_WAIT:?}: the proxy hangs"),
        }
    }

    /// Sends raw bytes; false if the connection is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).await.is_ok()
    }

    /// Sends `line` + CRLF and reads the SMTP reply.
    pub async fn cmd(&mut self, line: &str) -> Got {
        if !self.send(format!("{line}\r\n").as_bytes()).await {
            return Got::Closed(String::new());
        }
        self.smtp_reply().await
    }

    /// Reads everything until EOF (at most `limit`), returning the text and whether EOF
    /// came in time.
    pub async fn read_to_eof(&mut self, limit: Duration) -> (String, bool) {
        let mut all = Vec::new();
        let done = tokio::time::timeout(limit, async {
            let mut chunk = [0u8; 1024];
            loop {
                match self.reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .is_ok();
        (String::from_utf8_lossy(&all).into_owned(), done)
    }
}

/// Connects, reads the greeting, says EHLO and logs in with AUTH PLAIN; returns the AUTH
/// reply (the client stays usable when it is 235).
pub async fn smtp_login(
    addr: SocketAddr,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
) -> (Client, Got) {
    let mut c = Client::connect(addr, source).await.expect("connect");
    let greeting = c.smtp_reply().await.text();
    assert!(greeting.starts_with("220 "), "{greeting}");
    let ehlo = c.cmd("EHLO hardening.test").await.text();
    assert!(ehlo.starts_with("250"), "{ehlo}");
    let auth = c
        .cmd(&format!("AUTH PLAIN {}", plain(user, password)))
        .await;
    (c, auth)
}

/// Sends one message on a logged-in client; returns the final reply (or the first
/// non-positive one).
pub async fn send_message(c: &mut Client, data: &[u8]) -> Got {
    for (cmd, want) in [
        ("MAIL FROM:<scanner@printer.local>", "250"),
        ("RCPT TO:<friend@example.com>", "250"),
        ("DATA", "354"),
    ] {
        match c.cmd(cmd).await {
            Got::Reply(r) if r.starts_with(want) => {}
            other => return other,
        }
    }
    let mut body = data.to_vec();
    body.extend_from_slice(b".\r\n");
    if !c.send(&body).await {
        return Got::Closed(String::new());
    }
    c.smtp_reply().await
}
