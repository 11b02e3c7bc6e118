//! One of the crash test's clients: a small raw SMTP client that outlives the proxy being
//! killed under it. A message whose connection is cut is recorded as not acknowledged and
//! never resent (the client cannot know whether it was queued, and a resend would blur
//! the duplicate count); the next message goes to the restarted proxy.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Counts;
use crate::smtp::{b64, dot_stuff, PASSWORD, RCPT, SENDER, USER};

/// The running proxy as clients see it: its generation (bumped by each restart) and its
/// SMTP address; `None` while it is down.
pub(crate) type Current = watch::Receiver<Option<(u32, SocketAddr)>>;

/// A kill closes the client's socket at once; this only bounds a proxy that hangs.
const REPLY_WAIT: Duration = Duration::from_secs(30);
/// How long a client may fail to log in before the test gives up.
const LOGIN_DEADLINE: Duration = Duration::from_secs(60);
/// The header that carries each message's unique id.
const ID_HEADER: &[u8] = b"X-E2E-Id: ";

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `250` to the final dot: the proxy promised delivery.
    Acked,
    /// The connection was cut (the proxy was killed) before the reply.
    Cut,
    /// Any other reply: in `queue` mode with room on disk there should be none.
    Refused(String),
}

/// One message a client sent.
pub(crate) struct Sent {
    /// Its unique id (`X-E2E-Id`).
    pub id: String,
    /// The message text (CRLF lines), before dot-stuffing.
    pub text: Vec<u8>,
    /// What became of it.
    pub outcome: Outcome,
}

/// Sends `count` messages, each once, reconnecting after a cut; reports each 250 to
/// `progress` at once (the killer counts them).
pub(crate) async fn run(
    n: usize,
    seed: u64,
    mut current: Current,
    progress: Arc<watch::Sender<Counts>>,
    count: usize,
) -> Vec<Sent> {
    // Counted as done however the task ends, so a panicking client cannot leave the
    // killer waiting for acknowledgements forever (its panic surfaces at the join).
    let _done = Done(progress.clone());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = Vec::with_capacity(count);
    let mut conn: Option<Conn> = None;
    for m in 0..count {
        let id = format!("e2e-{n:02}-{m:03}");
        let text = message(&id, &mut rng);
        let mut c = match conn.take() {
            Some(c) => c,
            None => Conn::open(&mut current).await,
        };
        let outcome = match c.transaction(&dot_stuff(&text)).await {
            Ok(r) if r.starts_with("250 ") => Outcome::Acked,
            Ok(r) => Outcome::Refused(r),
            Err(_) => Outcome::Cut,
        };
        match outcome {
            Outcome::Acked => {
                progress.send_modify(|p| p.acks += 1);
                conn = Some(c);
            }
            Outcome::Refused(_) => conn = Some(c),
            Outcome::Cut => {}
        }
        sent.push(Sent { id, text, outcome });
    }
    if let Some(mut c) = conn {
        let _ = c.command("QUIT").await;
    }
    sent
}

/// Bumps the finished clients' count when dropped.
struct Done(Arc<watch::Sender<Counts>>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.send_modify(|p| p.done += 1);
    }
}

/// A message of random size (mostly small, one in ten over 40 KB, so that kills land
/// mid-DATA too) with lines that need dot-stuffing and 8-bit text.
fn message(id: &str, rng: &mut StdRng) -> Vec<u8> {
    let mut m = format!(
        "From: \"Scanner\" <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: scan {id}\r\n\
         X-E2E-Id: {id}\r\n\r\n"
    )
    .into_bytes();
    let lines = if rng.gen_ratio(1, 10) {
        rng.gen_range(1000..3000)
    } else {
        rng.gen_range(1..100)
    };
    for i in 0..lines {
        match rng.gen_range(0..10) {
            0 => m.extend_from_slice(b".leading dot\r\n"),
            1 => m.extend_from_slice(b".\r\n"),
            2 => m.extend_from_slice(format!("扫描完成 page {i}\r\n").as_bytes()),
            _ => {
                let len = rng.gen_range(0..72);
                m.extend((0..len).map(|_| rng.gen_range(b'0'..=b'z')));
                m.extend_from_slice(format!(" {id}/{i}\r\n").as_bytes());
            }
        }
    }
    m
}

/// The id in a message's `X-E2E-Id` header, if any.
pub(crate) fn id_of(data: &[u8]) -> Option<&str> {
    let at = data.windows(ID_HEADER.len()).position(|w| w == ID_HEADER)? + ID_HEADER.len();
    let rest = &data[at..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// A logged-in connection to the proxy.
struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    /// Logs in to the running proxy, waiting for a restart while it is down.
    async fn open(current: &mut Current) -> Conn {
        let deadline = Instant::now() + LOGIN_DEADLINE;
        loop {
            let now = *current.borrow_and_update();
            if let Some((_, addr)) = now {
                if let Ok(c) = Conn::login(addr).await {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no login to the proxy for {LOGIN_DEADLINE:?}"
            );
            // The next restart, or another try (the failure may not have been a kill).
            let _ = tokio::time::timeout(Duration::from_secs(1), current.changed()).await;
        }
    }

    async fn login(addr: SocketAddr) -> io::Result<Conn> {
        let mut c = Conn {
            io: BufReader::new(TcpStream::connect(addr).await?),
        };
        expect(c.reply().await?, "220 ")?;
        expect(c.command("EHLO e2e.test").await?, "250")?;
        let blob = b64(format!("\0{USER}\0{PASSWORD}").as_bytes());
        expect(c.command(&format!("AUTH PLAIN {blob}")).await?, "235 ")?;
        Ok(c)
    }

    /// MAIL, RCPT, DATA, the (dot-stuffed) message and the final dot; the reply to the
    /// first step that did not go as planned, or to the final dot. `Err` when cut.
    async fn transaction(&mut self, wire: &[u8]) -> io::Result<String> {
        let steps = [
            (format!("MAIL FROM:<{SENDER}>"), "250 "),
            (format!("RCPT TO:<{RCPT}>"), "250 "),
            ("DATA".to_string(), "354 "),
        ];
        for (line, want) in steps {
            let r = self.command(&line).await?;
            if !r.starts_with(want) {
                return Ok(r);
            }
        }
        let mut all = wire.to_vec();
        all.extend_from_slice(b".\r\n");
        self.io.get_mut().write_all(&all).await?;
        self.reply().await
    }

    async fn command(&mut self, line: &str) -> io::Result<String> {
        let tcp = self.io.get_mut();
        tcp.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// One whole reply (RFC 5321 §4.2.1: the last line has a space after the code).
    async fn reply(&mut self) -> io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            let read = tokio::time::timeout(REPLY_WAIT, self.io.read_until(b'\n', &mut line));
            match read.await.map_err(|_| io::ErrorKind::TimedOut)?? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => all.push_str(&String::from_utf8_lossy(&line)),
            }
            if line.get(3) != Some(&b'-') {
                return Ok(all);
            }
        }
    }
}

/// `Ok` if `reply` starts with `want`.
fn expect(reply: String, want: &str) -> io::Result<()> {
    match reply.starts_with(want) {
        true => Ok(()),
        false => Err(io::Error::other(reply)),
    }
}
