//! What the fake IMAP and POP3 upstreams share: TLS modes, faults, the login/command
//! recorder tests wait on, a buffered connection that can upgrade to TLS, and the accept loop.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;

/// The account every fake accepts unless a test says otherwise.
pub const DEFAULT_USER: &str = "user@qq.com";
/// The 16-character authorization code every fake accepts unless a test says otherwise.
pub const DEFAULT_CODE: &str = "abcdefghijklmnop";
/// QQ's reply text to a wrong or revoked authorization code (after `NO` / `-ERR`).
pub const QQ_LOGIN_FAIL: &str = "Login fail. Please enter your authorization code to login. \
     More information in http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=28&&no=1001256";
/// "服务已就绪" ("service ready") in GBK: older QQ servers sent Chinese text in GBK, which is
/// not valid UTF-8 (the first byte 0xB7 is a UTF-8 continuation byte).
pub const GBK_READY: &[u8] = &[0xb7, 0xfe, 0xce, 0xf1, 0xd2, 0xd1, 0xbe, 0xcd, 0xd0, 0xf7];

/// How a fake upstream speaks TLS.
#[derive(Clone, Debug, Default)]
pub enum TlsMode {
    /// TLS from the first byte (ports 993/995).
    Implicit(Arc<rustls::ServerConfig>),
    /// Plaintext greeting; STARTTLS (IMAP) / STLS (POP3) is offered and upgrades.
    StartTls(Arc<rustls::ServerConfig>),
    /// Plaintext only, never offers an upgrade: a proxy must not send credentials here.
    #[default]
    PlainNoStartTls,
}

/// A misbehaviour a fake upstream can be told to show.
#[derive(Clone, Debug, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Reject every login, even with the right code, with QQ's authorization-code text.
    RejectLogin,
    /// Accept the connection (and the implicit TLS handshake), then never send a byte.
    NoGreeting,
    /// The greeting's human-readable text is GBK bytes ([`GBK_READY`]).
    GbkGreeting,
    /// IMAP only: reset the connection (RST) after writing `after_bytes` bytes of a FETCH
    /// literal. An RST discards whatever the peer had not read yet, so the client sees at
    /// most that many bytes, then ECONNRESET or EOF.
    DropMidFetch {
        /// Literal bytes written before the reset.
        after_bytes: usize,
    },
    /// POP3 only: reset the connection (RST) after writing `after_bytes` bytes of the
    /// (dot-stuffed) RETR payload; the terminating `.` line never comes.
    DropMidRetr {
        /// Payload bytes written before the reset.
        after_bytes: usize,
    },
    /// IMAP only: an IDLE-ing session resets its connection (instead of sending
    /// `* N EXISTS`) on the next `add_message`, so the client surely saw `+ idling` first.
    DropDuringIdle,
    /// Wait this long before the greeting and before answering each command.
    SlowReply(Duration),
}

impl Fault {
    /// Sleeps if this is [`Fault::SlowReply`].
    pub(crate) async fn delay(&self) {
        if let Fault::SlowReply(d) = self {
            tokio::time::sleep(*d).await;
        }
    }
}

/// Which command carried a login attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginMethod {
    /// IMAP `LOGIN user pass`.
    ImapLogin,
    /// IMAP `AUTHENTICATE PLAIN` (initial response or continuation).
    ImapAuthPlain,
    /// IMAP `AUTHENTICATE LOGIN`.
    ImapAuthLogin,
    /// POP3 `USER` + `PASS`.
    Pop3UserPass,
    /// POP3 `AUTH PLAIN` (initial response or continuation).
    Pop3AuthPlain,
}

/// One login attempt as the fake received it.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The command that carried it.
    pub method: LoginMethod,
    /// User name as sent (lossy UTF-8).
    pub user: String,
    /// Password / authorization code as sent (lossy UTF-8).
    pub password: String,
    /// Whether the connection was TLS at the time.
    pub over_tls: bool,
    /// Whether the fake accepted it.
    pub accepted: bool,
}

impl fmt::Debug for LoginAttempt {
    // Test codes are fake, but keep the habit: show only the length of the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("method", &self.method)
            .field("user", &self.user)
            .field("password_len", &self.password.len())
            .field("over_tls", &self.over_tls)
            .field("accepted", &self.accepted)
            .finish()
    }
}

/// Everything a fake has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Login attempts, in order.
    pub logins: Vec<LoginAttempt>,
    /// Every command (and continuation line) received, without the final CRLF; IMAP
    /// commands with literals include the `{n}\r\n` and the literal bytes.
    pub commands: Vec<Vec<u8>>,
    /// TCP connections accepted.
    pub connections: usize,
    /// When each connection was accepted.
    pub connected_at: Vec<std::time::Instant>,
    /// When each login attempt arrived (same order as `logins`).
    pub login_at: Vec<std::time::Instant>,
    /// Implicit or STARTTLS handshakes that failed.
    pub tls_failures: usize,
}

/// The shared, waitable record of a fake's traffic.
#[derive(Debug)]
pub struct Recorder {
    log: Mutex<Log>,
    tick: watch::Sender<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            log: Mutex::new(Log::default()),
            tick: watch::channel(0).0,
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the record).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// Changes the log and wakes waiters.
    pub(crate) fn update(&self, f: impl FnOnce(&mut Log)) {
        f(&mut lock(&self.log));
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }

    /// A copy of the log.
    pub fn snapshot(&self) -> Log {
        lock(&self.log).clone()
    }

    /// Waits until `f` returns `Some` on the log, and returns it; panics after `timeout`
    /// with `what` and the log, so a test fails with the evidence.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Log) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before looking, so an update between the look and the wait is not lost.
        let mut rx = self.tick.subscribe();
        loop {
            if let Some(v) = f(&lock(&self.log)) {
                return v;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; log: {:?}",
                    self.snapshot()
                );
            }
        }
    }
}

/// Generates the recorder accessors on a fake whose `self.shared.rec` is a [`Recorder`].
macro_rules! recorder_methods {
    () => {
        /// A copy of everything the fake has seen.
        pub fn snapshot(&self) -> $crate::support::upstream::Log {
            self.shared.rec.snapshot()
        }
        /// Login attempts so far.
        pub fn logins(&self) -> Vec<$crate::support::upstream::LoginAttempt> {
            self.shared.rec.snapshot().logins
        }
        /// Waits for at least `n` login attempts; returns all of them. Panics on timeout.
        pub async fn wait_logins(
            &self,
            n: usize,
            timeout: std::time::Duration,
        ) -> Vec<$crate::support::upstream::LoginAttempt> {
            let what = format!("{n} login attempt(s)");
            self.shared
                .rec
                .wait_for(timeout, &what, |l| {
                    (l.logins.len() >= n).then(|| l.logins.clone())
                })
                .await
        }
        /// Every command line received so far (bytes, without the final CRLF).
        pub fn commands(&self) -> Vec<Vec<u8>> {
            self.shared.rec.snapshot().commands
        }
        /// Waits for a received command matching `pred`; returns it. Panics on timeout.
        pub async fn wait_command(
            &self,
            pred: impl Fn(&[u8]) -> bool,
            timeout: std::time::Duration,
        ) -> Vec<u8> {
            self.shared
                .rec
                .wait_for(timeout, "a matching command", |l| {
                    l.commands.iter().find(|c| pred(c)).cloned()
                })
                .await
        }
        /// TCP connections accepted so far.
        pub fn connections(&self) -> usize {
            self.shared.rec.snapshot().connections
        }
        /// Waits for at least `n` accepted connections. Panics on timeout.
        pub async fn wait_connections(&self, n: usize, timeout: std::time::Duration) -> usize {
            let what = format!("{n} connection(s)");
            self.shared
                .rec
                .wait_for(timeout, &what, |l| {
                    (l.connections >= n).then_some(l.connections)
                })
                .await
        }
        /// TLS handshakes (implicit or after STARTTLS/STLS) that failed so far.
        pub fn tls_failures(&self) -> usize {
            self.shared.rec.snapshot().tls_failures
        }
        /// Waits for at least `n` failed TLS handshakes. Panics on timeout.
        pub async fn wait_tls_failures(&self, n: usize, timeout: std::time::Duration) -> usize {
            let what = format!("{n} TLS failure(s)");
            self.shared
                .rec
                .wait_for(timeout, &what, |l| {
                    (l.tls_failures >= n).then_some(l.tls_failures)
                })
                .await
        }
    };
}
pub(crate) use recorder_methods;

/// Stops the accept loop (and, through its `JoinSet`, every session) when dropped.
#[derive(Debug)]
pub struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds 127.0.0.1:0 and serves each connection with `session`, concurrently.
pub(crate) async fn spawn_server<F, Fut>(session: F) -> (std::net::SocketAddr, ServerTask)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let addr = listener.local_addr().expect("fake addr");
    let task = tokio::spawn(async move {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((tcp, _)) = accepted {
                        sessions.spawn(session(tcp));
                    }
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
    });
    (addr, ServerTask(task))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a STARTTLS handshake owns the socket, or after it failed.
    Gone,
}

/// A server-side connection with a bounded read buffer, plaintext or TLS.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
}

impl Conn {
    /// Counts the connection and, in implicit mode, does the TLS handshake.
    pub(crate) async fn open(tcp: TcpStream, mode: &TlsMode, rec: &Recorder) -> Option<Conn> {
        rec.update(|l| {
            l.connections += 1;
            l.connected_at.push(std::time::Instant::now());
        });
        let stream = match mode {
            TlsMode::Implicit(cfg) => match tokio_rustls::TlsAcceptor::from(cfg.clone())
                .accept(tcp)
                .await
            {
                Ok(tls) => Stream::Tls(Box::new(tls)),
                Err(_) => {
                    rec.update(|l| l.tls_failures += 1);
                    return None;
                }
            },
            TlsMode::StartTls(_) | TlsMode::PlainNoStartTls => Stream::Plain(tcp),
        };
        Some(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Whether the connection is TLS now.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    fn io(&mut self) -> io::Result<&mut dyn Io> {
        match &mut self.stream {
            Stream::Plain(s) => Ok(s),
            Stream::Tls(s) => Ok(s.as_mut()),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Upgrades a plaintext connection. Bytes the client pipelined after the STARTTLS
    /// command are discarded: they were sent in the clear and must not be acted on after the
    /// upgrade (the STARTTLS command-injection flaw, CVE-2011-0411; RFC 3501 §6.2.1).
    pub(crate) async fn starttls(
        &mut self,
        cfg: &Arc<rustls::ServerConfig>,
        rec: &Recorder,
    ) -> io::Result<()> {
        self.buf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        match tokio_rustls::TlsAcceptor::from(cfg.clone())
            .accept(tcp)
            .await
        {
            Ok(tls) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Err(e) => {
                rec.update(|l| l.tls_failures += 1);
                Err(e)
            }
        }
    }

    /// One read into the buffer; `false` at EOF. Cancel-safe (data is only ever appended
    /// after a read completes), so it may sit in a `select!`.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io()?.read(&mut chunk).await?;
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n > 0)
    }

    /// A complete buffered line without its line ending (CRLF, or a lenient bare LF), if
    /// any; an error once more than `max` bytes arrive without one.
    pub(crate) fn take_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        match memchr::memchr(b'\n', &self.buf) {
            Some(pos) => {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(Some(line))
            }
            None if self.buf.len() > max => {
                Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
            }
            None => Ok(None),
        }
    }

    /// Reads a line (see [`Conn::take_line`]); `None` at EOF.
    pub(crate) async fn read_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.take_line(max)? {
                return Ok(Some(line));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal); `None` at EOF.
    pub(crate) async fn read_n(&mut self, n: usize) -> io::Result<Option<Vec<u8>>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.drain(..n).collect()))
    }

    /// Writes without flushing.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io()?.write_all(bytes).await
    }

    /// Writes and flushes.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let io = self.io()?;
        io.write_all(bytes).await?;
        io.flush().await
    }

    /// Closes politely (TLS close_notify, then FIN).
    pub(crate) async fn close(mut self) {
        if let Ok(io) = self.io() {
            let _ = io.shutdown().await;
        }
    }

    /// Resets the connection: flushes what was written, then closes with SO_LINGER 0 so
    /// the kernel sends RST instead of FIN, as a crashing upstream or a middlebox would.
    pub(crate) async fn reset(mut self) {
        if let Ok(io) = self.io() {
            let _ = io.flush().await;
        }
        let tcp = match &self.stream {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Gone => None,
        };
        if let Some(tcp) = tcp {
            // Deprecated because a *non-zero* linger blocks in drop; zero never blocks.
            #[allow(deprecated)]
            let _ = tcp.set_linger(Some(Duration::ZERO));
        }
    }

    /// Reads and discards until the client goes away: a server that never speaks.
    pub(crate) async fn silence(&mut self) {
        while let Ok(true) = self.fill().await {
            self.buf.clear();
        }
    }
}
