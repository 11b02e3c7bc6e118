//! The IMAP gateway end to end: real clients (async-imap, Python imaplib, curl, and a raw
//! socket client) talk to the proxy binary, which logs into a `FakeImap` upstream with the
//! stored code. This file owns the shared setup and the raw client; the child modules own
//! the scenarios.

mod clients;
mod prelogin;
mod relay;
mod transfer;
mod upstreams;
mod warm;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::config::{Account, ConfigBuilder};
use crate::support::imap::{FakeImap, ImapOpts};
use crate::support::proxy::{LogEvent, Proxy};
use crate::support::upstream::{TlsMode, DEFAULT_USER};

/// The local user the legacy client logs in as.
pub(crate) const USER: &str = "printer";
/// The local user's password: distinctive, so that `assert_no_secret` finds no false hits.
pub(crate) const PASSWORD: &str = "Pr1nter-Pa55";
/// The account address: the IMAP fake's default user (`user@qq.com`), set on the account
/// too, because `Account::new` defaults to the SMTP fake's `12345@qq.com`.
pub(crate) const EMAIL: &str = DEFAULT_USER;
/// The account's 16-character authorization code, on both the fake and the account.
pub(crate) const CODE: &str = "Qm7xTz3pLk9wRv2n";
/// Bound for anything that should happen promptly.
pub(crate) const T: Duration = Duration::from_secs(10);

/// Options for a fake with implicit TLS from `ca` that accepts [`EMAIL`] / [`CODE`].
pub(crate) fn fake_opts(ca: &TestCa) -> ImapOpts {
    ImapOpts::default()
        .tls(TlsMode::Implicit(ca.server_config(UPSTREAM_NAMES)))
        .user(EMAIL)
        .code(CODE)
}

/// An account `id` with [`EMAIL`] / [`CODE`] whose `imap_server` is `server`.
pub(crate) fn account_for(id: &str, server: String) -> Account {
    Account::new(id).email(EMAIL).code(CODE).imap(server)
}

/// `127.0.0.1:PORT` of a fake (implicit TLS is the default scheme).
pub(crate) fn server_of(fake: &FakeImap) -> String {
    format!("127.0.0.1:{}", fake.addr().port())
}

/// A config with one account (`main`), the local user on it, `[imap] starttls =
/// "optional"` with a local certificate from `ca` (so TLS clients can trust `ca`), and a
/// lockout threshold tests cannot reach by accident.
pub(crate) fn config(ca: &TestCa, account: Account) -> ConfigBuilder {
    let id = account.id.clone();
    ConfigBuilder::new(ca)
        .local_cert_from(ca)
        .account(account)
        .user(USER, PASSWORD, &id)
        .imap("optional")
        .limit("lockout_failures", "100")
}

/// A running proxy in front of one fake, with everything that must outlive them (fields
/// drop in order: the proxy first).
pub(crate) struct Gateway {
    pub(crate) proxy: Proxy,
    pub(crate) fake: FakeImap,
    /// Kept alive: its tempdir holds the code, the local certificate and the state.
    _config: ConfigBuilder,
    pub(crate) ca: TestCa,
}

impl Gateway {
    /// The standard setup: an implicit-TLS fake (options adjusted by `opts`) and the
    /// standard config (adjusted by `cfg`).
    pub(crate) async fn start(
        opts: impl FnOnce(ImapOpts) -> ImapOpts,
        cfg: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Gateway {
        let ca = TestCa::new("imap gateway CA");
        let fake = FakeImap::start(opts(fake_opts(&ca))).await;
        let config = cfg(config(&ca, account_for("main", server_of(&fake))));
        let proxy = Proxy::start_built(&config, &[]).await;
        Gateway {
            proxy,
            fake,
            _config: config,
            ca,
        }
    }

    /// A raw plaintext client whose greeting has been read and checked.
    pub(crate) async fn raw(&self) -> Raw<TcpStream> {
        let mut c = Raw::connect(self.proxy.imap_addr()).await;
        let greeting = c.text().await;
        assert!(
            greeting.starts_with("* OK [CAPABILITY IMAP4rev1 "),
            "{greeting}"
        );
        c
    }

    /// A raw client logged in with `a LOGIN` (the tagged reply is checked).
    pub(crate) async fn logged_in(&self) -> Raw<TcpStream> {
        let mut c = self.raw().await;
        c.send(format!("a LOGIN {USER} {PASSWORD}\r\n").as_bytes())
            .await;
        let reply = c.tagged("a").await;
        assert!(reply.starts_with("a OK "), "{reply}");
        c
    }

    /// Waits for a `session end` event after `mark` and returns its `result` field.
    pub(crate) async fn wait_session_end(&self, mark: usize) -> String {
        wait_session_end(&self.proxy, mark).await
    }

    /// Neither the code nor the local password is in the proxy's output, and it never
    /// panicked.
    pub(crate) fn assert_clean(&self) {
        assert_clean(&self.proxy);
    }
}

/// The `session end` events logged from stderr line `mark` on.
pub(crate) fn session_ends(proxy: &Proxy, mark: usize) -> Vec<LogEvent> {
    let logs = proxy.logs();
    logs.lines()
        .skip(mark)
        .filter_map(crate::support::proxy::parse_log_line)
        .filter(|e| e.message() == Some("session end"))
        .collect()
}

/// Waits for a `session end` event after `mark`; returns its `result` field.
pub(crate) async fn wait_session_end(proxy: &Proxy, mark: usize) -> String {
    proxy.wait_for_log_since(mark, "session end", T).await;
    let ends = session_ends(proxy, mark);
    let end = ends.first().expect("a parsed `session end` event");
    end.field("result")
        .unwrap_or("<no result field>")
        .to_owned()
}

/// No secret in the output, no panic in the log.
pub(crate) fn assert_clean(proxy: &Proxy) {
    proxy.assert_no_secret(&[CODE, PASSWORD]);
    let logs = proxy.logs();
    assert!(!logs.contains("panicked"), "the proxy panicked:\n{logs}");
}

/// How a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// A clean EOF.
    Eof,
    /// A read error (a reset).
    Error(io::ErrorKind),
}

/// A minimal IMAP line client over any stream, independent of the proxy's code: bytes
/// in, bytes out, every wait bounded by [`T`].
pub(crate) struct Raw<S> {
    s: S,
    buf: Vec<u8>,
}

impl Raw<TcpStream> {
    /// Connects to `addr`.
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Raw<TcpStream> {
        Raw::new(
            TcpStream::connect(addr)
                .await
                .expect("connect to the proxy"),
        )
    }
}

impl<S> Raw<S> {
    /// Wraps a stream.
    pub(crate) fn new(s: S) -> Raw<S> {
        Raw { s, buf: Vec::new() }
    }
}

impl<S: AsyncRead + Unpin> Raw<S> {
    /// Reads more: `Ok(false)` at EOF. Panics if nothing arrives within [`T`].
    async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(T, self.s.read(&mut chunk)).await {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n > 0)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => panic!(
                "nothing from the proxy within {T:?}; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next line without its CRLF; `None` at EOF or on a reset.
    pub(crate) async fn try_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if !self.fill().await.unwrap_or(false) {
                return None;
            }
        }
    }

    /// The next line; panics at EOF.
    pub(crate) async fn line(&mut self) -> Vec<u8> {
        match self.try_line().await {
            Some(line) => line,
            None => panic!(
                "the connection ended; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next line as (lossy) text.
    pub(crate) async fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.line().await).into_owned()
    }

    /// Lines up to the one tagged `tag`, which is returned (untagged ones are dropped).
    pub(crate) async fn tagged(&mut self, tag: &str) -> String {
        self.until_tagged(tag).await.pop().expect("tagged line")
    }

    /// Every line up to and including the one tagged `tag`.
    pub(crate) async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let prefix = format!("{tag} ");
        let mut out = Vec::new();
        loop {
            let line = self.text().await;
            let done = line.starts_with(&prefix);
            out.push(line);
            if done {
                return out;
            }
        }
    }

    /// Exactly `n` bytes; `None` if the connection ends first.
    pub(crate) async fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await.unwrap_or(false) {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads until the connection ends; returns how, and every byte that came first.
    pub(crate) async fn end(&mut self) -> (End, Vec<u8>) {
        loop {
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return (End::Eof, std::mem::take(&mut self.buf)),
                Err(e) => return (End::Error(e.kind()), std::mem::take(&mut self.buf)),
            }
        }
    }

    /// `UID FETCH`-style: reads the `* N FETCH (... {len}` line, the literal and the
    /// closing line, then the tagged reply; returns the literal.
    pub(crate) async fn fetch_literal(&mut self, tag: &str) -> Vec<u8> {
        let head = self.text().await;
        let len = literal_len(&head).unwrap_or_else(|| panic!("no literal in {head:?}"));
        let body = self.exact(len).await.expect("the whole literal");
        assert_eq!(self.text().await, ")", "after the literal");
        let done = self.tagged(tag).await;
        assert!(done.starts_with(&format!("{tag} OK")), "{done}");
        body
    }
}

impl<S: AsyncWrite + Unpin> Raw<S> {
    /// Writes and flushes all of `bytes` in one go.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write to the proxy");
        self.s.flush().await.expect("flush");
    }
}

/// The `n` of a line ending in `{n}`.
pub(crate) fn literal_len(line: &str) -> Option<usize> {
    let open = line.rfind('{')?;
    line.strip_suffix('}')?.get(open + 1..)?.parse().ok()
}

/// A stream that keeps a copy of the first 1 MiB it reads, so a test can see the exact
/// bytes a high-level client (async-imap) received.
#[derive(Debug)]
pub(crate) struct Tap<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

/// How much a [`Tap`] keeps.
const TAP_LIMIT: usize = 1 << 20;

impl<S> Tap<S> {
    /// Wraps `inner`; the returned buffer fills as bytes are read.
    pub(crate) fn new(inner: S) -> (Tap<S>, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tap = Tap {
            inner,
            seen: seen.clone(),
        };
        (tap, seen)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let room = TAP_LIMIT.saturating_sub(seen.len());
            let new = &buf.filled()[before..];
            seen.extend_from_slice(&new[..new.len().min(room)]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A message of at least `size` bytes: headers, then 76-character lines whose content
/// varies with the position, so a dropped, repeated or reordered chunk changes the hash.
pub(crate) fn big_message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@qq.com\r\nTo: b@qq.com\r\nSubject: big\r\n\r\n".to_vec();
    let mut n: u64 = 0;
    while m.len() < size {
        let line =
            format!("{n:016x} abcdefghijklmnopqrstuvwxyz0123456789!#$%&*+-/=?^_`{{|}}~.\r\n");
        m.extend_from_slice(line.as_bytes());
        n += 1;
    }
    m
}

/// SHA-256 of `bytes`, hex.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
