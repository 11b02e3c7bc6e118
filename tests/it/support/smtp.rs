//! A fake upstream SMTP server standing in for smtp.qq.com:465: QQ's EHLO, AUTH texts and
//! sender rule, scripted faults, closes on demand (a 421 to the next command, or to idle
//! connections), a [`Flap`] switch (down for a while, then up), and a recording of every
//! command, AUTH attempt and message.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::ca::{TestCa, UPSTREAM_NAMES};

/// The account the fake accepts by default.
pub const DEFAULT_USER: &str = "12345@qq.com";
/// The 16-character authorization code the fake accepts by default.
pub const DEFAULT_CODE: &str = "abcdefghijklmnop";
/// QQ's advertised SIZE (70 MiB).
pub const QQ_SIZE: u64 = 73_400_320;
/// QQ's reply to a wrong or revoked authorization code (FACTS.md).
pub const QQ_535: &str = "535 Login Fail. Please enter your authorization code to login. More information in http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=28&&no=1001256";
/// QQ's reply when MAIL FROM differs from the authenticated user, `<>` included.
pub const QQ_501_SENDER: &str = "501 Mail from address must be same as authorization user";
/// QQ's reply to MAIL before AUTH.
pub const QQ_503_NO_AUTH: &str = "503 Error: need EHLO and AUTH first !";
/// The temporary AUTH failure of [`Fault::TempFailAuth`].
pub const TEMP_FAIL_454: &str = "454 4.7.0 Temporary authentication failure";
/// The rate-limit reply of [`Fault::RateLimitAuth`]; the fake closes the connection after it.
pub const RATE_LIMIT_421: &str = "421 4.7.0 Connection frequency limited. Please try later";
/// What the fake says before closing on demand ([`FakeSmtp::close_next`],
/// [`FakeSmtp::close_idle`]), as a server whose idle timer ran out (RFC 5321 §3.8).
pub const CLOSING_421: &str = "421 4.4.2 smtp.qq.com Error: timeout exceeded, closing connection";
/// GBK bytes of "欢迎使用QQ邮箱" (welcome to QQ Mail): not UTF-8.
pub const GBK_WELCOME: &[u8] = b"\xbb\xb6\xd3\xad\xca\xb9\xd3\xc3QQ\xd3\xca\xcf\xe4";
/// GBK bytes of "登录失败" (login failed): not UTF-8.
pub const GBK_LOGIN_FAILED: &[u8] = b"\xb5\xc7\xc2\xbc\xca\xa7\xb0\xdc";

/// How the fake speaks TLS.
#[derive(Clone, Debug)]
pub enum TlsMode {
    /// TLS from the first byte, like smtp.qq.com:465.
    Implicit(Arc<rustls::ServerConfig>),
    /// Plaintext greeting, STARTTLS advertised and required before AUTH (RFC 3207).
    StartTls(Arc<rustls::ServerConfig>),
    /// Plaintext only, never offers STARTTLS, yet accepts AUTH: a proxy must not send the
    /// code here (tests assert no AUTH attempt arrives).
    PlainNoStartTls,
}

/// One scripted misbehaviour per fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Every AUTH gets QQ's 535, whatever the code.
    RejectAuth,
    /// Every AUTH gets a 535 whose text is GBK bytes (older QQ servers).
    RejectAuthGbk,
    /// Every AUTH gets `454 4.7.0 Temporary authentication failure`.
    TempFailAuth,
    /// Every AUTH gets a 421 rate-limit reply, then the connection is closed.
    RateLimitAuth,
    /// Reset the connection once at least `after_bytes` bytes of DATA have arrived.
    DropMidData {
        /// DATA bytes (as received, dot-stuffed) after which the connection is reset.
        after_bytes: usize,
    },
    /// Read the whole DATA, then reset the connection instead of replying.
    DropAfterDataBeforeReply,
    /// The 220 greeting's text is GBK-encoded Chinese.
    GbkGreeting,
    /// Wait this long before every reply.
    SlowReply(Duration),
    /// Accept TCP (and TLS), then never say anything.
    NoGreeting,
    /// Reply `code text` after DATA instead of accepting the message.
    RejectData(u16, String),
    /// Reset the connection at random command boundaries, with probability 1/`one_in`.
    RandomDrop {
        /// Inverse probability of a drop at each point; 0 disables.
        one_in: u32,
    },
    /// Reset the connection on QUIT without a 221 (smtp.qq.com has been seen doing so).
    ResetOnQuit,
    /// Once at least `after_bytes` bytes of DATA have arrived, reply `code text` at once
    /// (before the end of data, as QQ does for an oversized or refused message), then do
    /// `then`.
    RefuseMidData {
        /// DATA bytes (as received, dot-stuffed) after which the reply is sent.
        after_bytes: usize,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
        /// What follows the reply.
        then: AfterRefusal,
    },
}

/// What [`Fault::RefuseMidData`] does after its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRefusal {
    /// Close the connection (with unread data, so the kernel resets it).
    Close,
    /// Keep the connection open but never read from it again.
    Stall,
    /// Keep the connection open and read the rest of the message as commands, answering
    /// each line (a broken server: its replies are then out of step with the client's).
    ReadOn,
}

impl Fault {
    /// Faults that end connections abruptly get `SO_LINGER 0`, so the peer sees a reset.
    fn resets(&self) -> bool {
        matches!(
            self,
            Fault::DropMidData { .. }
                | Fault::DropAfterDataBeforeReply
                | Fault::RandomDrop { .. }
                | Fault::ResetOnQuit
        )
    }
}

/// Configuration of a [`FakeSmtp`]; builder-style setters.
#[derive(Clone, Debug)]
pub struct SmtpOptions {
    /// TLS mode.
    pub tls: TlsMode,
    /// The account address accepted by AUTH (compared ASCII case-insensitively).
    pub user: String,
    /// The authorization code accepted by AUTH.
    pub code: String,
    /// The SIZE advertised and enforced.
    pub size: u64,
    /// QQ's rule that MAIL FROM must equal the authenticated user.
    pub sender_rule: bool,
    /// The scripted fault.
    pub fault: Fault,
    /// Longest accepted line (command or DATA), CRLF included; longer gets 500 and a close.
    pub max_line: usize,
    /// Scripted RCPT replies per address (lower case): each RCPT of that address takes
    /// the next one; once they are used up, 250. Shared by every connection.
    pub rcpt_script: std::sync::Arc<std::sync::Mutex<HashMap<String, VecDeque<String>>>>,
    /// Scripted MAIL replies: each MAIL (of any connection) takes the next one; once
    /// they are used up, the usual checks and 250.
    pub mail_script: std::sync::Arc<std::sync::Mutex<VecDeque<String>>>,
}

impl SmtpOptions {
    /// QQ-like defaults with the given TLS mode.
    pub fn new(tls: TlsMode) -> SmtpOptions {
        SmtpOptions {
            tls,
            user: DEFAULT_USER.to_owned(),
            code: DEFAULT_CODE.to_owned(),
            size: QQ_SIZE,
            sender_rule: true,
            fault: Fault::None,
            max_line: 64 * 1024,
            rcpt_script: Default::default(),
            mail_script: Default::default(),
        }
    }

    /// The usual test upstream: implicit TLS with a leaf for [`UPSTREAM_NAMES`] from `ca`.
    /// (There is no `Default`: implicit TLS needs the test's CA.)
    pub fn implicit(ca: &TestCa) -> SmtpOptions {
        SmtpOptions::new(TlsMode::Implicit(ca.server_config(UPSTREAM_NAMES)))
    }

    /// STARTTLS upstream with a leaf from `ca`.
    pub fn starttls(ca: &TestCa) -> SmtpOptions {
        SmtpOptions::new(TlsMode::StartTls(ca.server_config(UPSTREAM_NAMES)))
    }

    /// Plaintext upstream that never offers STARTTLS.
    pub fn plain() -> SmtpOptions {
        SmtpOptions::new(TlsMode::PlainNoStartTls)
    }

    /// Sets the accepted account address.
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }

    /// Sets the accepted authorization code.
    pub fn code(mut self, code: &str) -> Self {
        self.code = code.to_owned();
        self
    }

    /// Sets the advertised and enforced SIZE.
    pub fn size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }

    /// Turns QQ's sender rule on or off.
    pub fn sender_rule(mut self, on: bool) -> Self {
        self.sender_rule = on;
        self
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Sets the line-length bound.
    pub fn max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// The next RCPTs of `addr` get `replies` (e.g. `"550 Mailbox not found"`), in order.
    pub fn rcpt_replies(self, addr: &str, replies: &[&str]) -> Self {
        if let Ok(mut script) = self.rcpt_script.lock() {
            script
                .entry(addr.to_ascii_lowercase())
                .or_default()
                .extend(replies.iter().map(|r| (*r).to_owned()));
        }
        self
    }

    /// The next MAILs get `replies` (e.g. `"451 4.3.0 try later"`), in order.
    pub fn mail_replies(self, replies: &[&str]) -> Self {
        if let Ok(mut script) = self.mail_script.lock() {
            script.extend(replies.iter().map(|r| (*r).to_owned()));
        }
        self
    }
}

/// A message the fake accepted with 250.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The MAIL FROM address, without angle brackets or parameters.
    pub mail_from: String,
    /// RCPT TO addresses, in order, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// Exactly the bytes between DATA's 354 and the final CRLF.CRLF, still dot-stuffed.
    pub data: Vec<u8>,
    /// The user that authenticated the session.
    pub auth_user: String,
    /// The password (authorization code) that authenticated the session.
    pub auth_password: String,
}

impl std::fmt::Debug for Message {
    // A 50 MB body in an assertion message helps nobody: show its length and head.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = &self.data[..self.data.len().min(200)];
        f.debug_struct("Message")
            .field("mail_from", &self.mail_from)
            .field("rcpt_to", &self.rcpt_to)
            .field("data_len", &self.data.len())
            .field("data_head", &String::from_utf8_lossy(head))
            .field("auth_user", &self.auth_user)
            .finish_non_exhaustive()
    }
}

/// One AUTH exchange, whatever its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthAttempt {
    /// `PLAIN` or `LOGIN`, upper-cased.
    pub mechanism: String,
    /// The decoded user name.
    pub user: String,
    /// The decoded password.
    pub password: String,
    /// Whether the exchange ran inside TLS.
    pub tls: bool,
    /// Whether the fake answered 235.
    pub accepted: bool,
}

#[derive(Default)]
struct Recording {
    messages: Vec<Message>,
    auth: Vec<AuthAttempt>,
    commands: Vec<String>,
    connections: usize,
    /// Set by [`FakeSmtp::close_next`]: this verb, this many more times.
    close_next: Option<(String, usize)>,
    /// Connections closed with [`CLOSING_421`].
    closes_421: usize,
    /// The bytes of each DATA that ended without its terminator.
    cut_off: Vec<Vec<u8>>,
    /// The [`Flap`] switch.
    flap: Flap,
    /// Connections refused by [`Flap::Refusing`].
    flap_refused: usize,
    /// Messages deferred by [`Flap::Deferring`].
    flap_deferred: usize,
}

struct Shared {
    opts: SmtpOptions,
    rec: Mutex<Recording>,
    /// Bumped after every change to `rec`, so waiters need no sleeps.
    changed: watch::Sender<u64>,
    /// Bumped by [`FakeSmtp::close_idle`]; sessions waiting for a command close on a bump.
    kick: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Recording> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, f: impl FnOnce(&mut Recording)) {
        f(&mut self.lock());
        self.changed.send_modify(|g| *g += 1);
    }
}

/// A running fake SMTP server on 127.0.0.1; stops (with its connections) on drop.
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeSmtp {
    /// Binds 127.0.0.1:0 and serves any number of connections. Call inside a tokio runtime.
    pub fn start(opts: SmtpOptions) -> FakeSmtp {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake SMTP");
        FakeSmtp::start_on(std_listener, opts)
    }

    /// Serves on a listener bound elsewhere (say, inside a network namespace the test
    /// made). Call inside a tokio runtime.
    pub fn start_on(std_listener: std::net::TcpListener, opts: SmtpOptions) -> FakeSmtp {
        std_listener.set_nonblocking(true).expect("nonblocking");
        let listener = TcpListener::from_std(std_listener).expect("tokio listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            opts,
            rec: Mutex::new(Recording::default()),
            changed: watch::channel(0).0,
            kick: watch::channel(0).0,
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeSmtp { addr, shared, task }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `smtp_server` value naming this fake in the proxy's config: `127.0.0.1:PORT`
    /// for implicit TLS, `starttls://127.0.0.1:PORT` otherwise.
    pub fn config_server(&self) -> String {
        match self.shared.opts.tls {
            TlsMode::Implicit(_) => self.addr.to_string(),
            TlsMode::StartTls(_) | TlsMode::PlainNoStartTls => format!("starttls://{}", self.addr),
        }
    }

    /// The options the fake runs with.
    pub fn options(&self) -> &SmtpOptions {
        &self.shared.opts
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.lock().messages.clone()
    }

    /// AUTH attempts so far.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        self.shared.lock().auth.clone()
    }

    /// Every command line received so far (CRLF stripped, lossy UTF-8), AUTH arguments and
    /// SASL continuation lines included; DATA content excluded.
    pub fn commands(&self) -> Vec<String> {
        self.shared.lock().commands.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Makes the next `times` commands with this verb (`MAIL`, `RCPT`, ...; on any
    /// connection) get [`CLOSING_421`] instead of their reply, and close the connection.
    pub fn close_next(&self, verb: &str, times: usize) {
        let verb = verb.to_ascii_uppercase();
        self.shared.record(|r| r.close_next = Some((verb, times)));
    }

    /// Sends [`CLOSING_421`] to every connection now waiting for a command and closes it,
    /// as a server's idle timer does; returns once `n` connections were closed so (panics
    /// after `timeout` otherwise).
    pub async fn close_idle(&self, n: usize, timeout: Duration) {
        let before = self.shared.lock().closes_421;
        self.shared.kick.send_modify(|g| *g += 1);
        self.wait_until("idle connections closed with 421", timeout, |r| {
            r.closes_421 >= before + n
        })
        .await;
    }

    /// Connections closed with [`CLOSING_421`] so far.
    pub fn closes_421(&self) -> usize {
        self.shared.lock().closes_421
    }

    /// Waits until at least `n` messages are recorded; panics with the command log on
    /// timeout.
    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Message> {
        self.wait_until("messages", timeout, |r| r.messages.len() >= n)
            .await;
        self.messages()
    }

    /// The bytes (dot-stuffed, as received) of every DATA that ended without its
    /// terminator: the peer closed or failed mid-message. Whatever the proxy sent of a
    /// message it then abandoned is here, and only here.
    pub fn cut_off_data(&self) -> Vec<Vec<u8>> {
        self.shared.lock().cut_off.clone()
    }

    /// Waits until at least `n` cut-off DATAs are recorded.
    pub async fn wait_cut_off_data(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.wait_until("cut-off DATA", timeout, |r| r.cut_off.len() >= n)
            .await;
        self.cut_off_data()
    }

    /// Waits until at least `n` AUTH attempts are recorded.
    pub async fn wait_auth_attempts(&self, n: usize, timeout: Duration) -> Vec<AuthAttempt> {
        self.wait_until("AUTH attempts", timeout, |r| r.auth.len() >= n)
            .await;
        self.auth_attempts()
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until("connections", timeout, |r| r.connections >= n)
            .await;
        self.connections()
    }

    /// Waits until a received command line satisfies `pred`.
    pub async fn wait_command(&self, timeout: Duration, pred: impl Fn(&str) -> bool) {
        self.wait_until("a matching command", timeout, |r| {
            r.commands.iter().any(|c| pred(c))
        })
        .await;
    }

    async fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&Recording) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if pred(&self.shared.lock()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "fake SMTP: timed out after {timeout:?} waiting for {what}; commands so far: {:#?}",
                self.commands()
            );
        }
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    shared.record(|r| r.connections += 1);
                    tasks.spawn(serve(tcp, Arc::clone(&shared)));
                }
                // EMFILE and friends: let running connections finish before retrying.
                Err(_) => tokio::task::yield_now().await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// How a session's command loop ended.
enum End {
    /// Closed politely or by the client.
    Closed,
    /// Reset on purpose (a fault).
    Drop,
    /// STARTTLS accepted: the caller upgrades the stream and starts a fresh session.
    StartTls,
}

async fn serve(tcp: TcpStream, shared: Arc<Shared>) {
    let opts = &shared.opts;
    if opts.fault.resets() {
        let _ = tcp.set_zero_linger();
    }
    if roll(&opts.fault) {
        return;
    }
    match &opts.tls {
        TlsMode::Implicit(cfg) => {
            let Ok(tls) = TlsAcceptor::from(Arc::clone(cfg)).accept(tcp).await else {
                return;
            };
            let mut io = BufReader::new(tls);
            let mut session = Session::new(&shared, true);
            if session.greet(&mut io).await.is_ok() {
                let _ = session.run(&mut io).await;
            }
        }
        TlsMode::PlainNoStartTls => {
            let mut io = BufReader::new(tcp);
            let mut session = Session::new(&shared, false);
            if session.greet(&mut io).await.is_ok() {
                let _ = session.run(&mut io).await;
            }
        }
        TlsMode::StartTls(cfg) => {
            let mut io = BufReader::new(tcp);
            let mut session = Session::new(&shared, false);
            if session.greet(&mut io).await.is_err() {
                return;
            }
            let Ok(End::StartTls) = session.run(&mut io).await else {
                return;
            };
            // RFC 3207 §4: bytes pipelined after STARTTLS must not be carried into TLS;
            // the fake refuses such a client outright (CVE-2011-0411 class).
            if !io.buffer().is_empty() {
                return;
            }
            let Ok(tls) = TlsAcceptor::from(Arc::clone(cfg))
                .accept(io.into_inner())
                .await
            else {
                return;
            };
            let mut io = BufReader::new(tls);
            let _ = Session::new(&shared, true).run(&mut io).await;
        }
    }
}

fn roll(fault: &Fault) -> bool {
    match fault {
        Fault::RandomDrop { one_in } if *one_in > 0 => {
            rand::random::<u32>().is_multiple_of(*one_in)
        }
        _ => false,
    }
}

/// The mail transaction (RFC 5321 §3.3).
enum Txn {
    Idle,
    Mail { from: String, rcpt: Vec<String> },
}

/// Per-connection (per TLS layer) state.
struct Session<'a> {
    shared: &'a Shared,
    /// The [`Shared::kick`] generation this session has answered.
    kick_seen: std::sync::atomic::AtomicU64,
    tls: bool,
    helo: bool,
    auth: Option<(String, String)>,
    txn: Txn,
}

mod flap;
mod lines;
mod session;

pub use flap::Flap;
use lines::{read_line, trim_eol, Line};
