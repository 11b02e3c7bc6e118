//! The SMTP transaction for one queued message over a connection that is already logged
//! in (RFC 5321 §3.3): `MAIL FROM`, one `RCPT TO` per pending recipient, `DATA`, the
//! stored body (checked as it streams), the final dot and its reply. Generic over the
//! stream, so it is tested over `tokio::io::duplex` against a scripted server. It changes
//! nothing on disk: [`super::settle`] turns its [`Attempt`] into the envelope's new state.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::net::{LineError, LineStream};
use crate::queue::classify::{Outcome, Stage};
use crate::queue::store::{BodyCheck, Envelope, RcptState};
use crate::upstream::smtp::{read_reply, Reply, ReplyError};

/// Bytes read from the body file and sent per write (the relay's chunk size).
const CHUNK: usize = 64 * 1024;

/// How long the upstream may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Per command reply and per write (`limits.upstream_timeout`).
    pub reply: Duration,
    /// For the reply to the final dot (`limits.upstream_data_timeout`; RFC 5321
    /// §4.5.3.2.6 suggests 10 minutes, since the server may scan the message then).
    pub data: Duration,
}

/// The upstream's answer to one `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptReply {
    /// Index into the envelope's recipients.
    pub index: usize,
    /// The reply code.
    pub code: u16,
    /// The reply, bytes as received.
    pub text: Vec<u8>,
}

/// How the transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The final dot got a positive reply: every accepted recipient has the message.
    Delivered,
    /// A negative reply to `MAIL`, `DATA` or the final dot.
    Refused {
        /// The step it answered.
        stage: Stage,
        /// Its code.
        code: u16,
        /// Its bytes.
        text: Vec<u8>,
    },
    /// The connection broke (or timed out, or spoke nonsense) before the final dot.
    Dropped(Stage),
    /// The final dot was sent and no reply came: the upstream may have the message.
    NoFinalReply,
    /// No recipient was accepted; no `DATA` was sent.
    NoRecipient,
    /// The body file could not be read, or its length or checksum differ from the
    /// envelope: the final dot was never sent, so the upstream discards what it got.
    Corrupt(String),
}

/// Everything one attempt learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// One entry per `RCPT TO` sent, in order.
    pub rcpts: Vec<RcptReply>,
    /// How it ended.
    pub ending: Ending,
    /// The connection is in a clean state for the next message of the batch.
    pub reusable: bool,
}

impl Ending {
    /// The outcome for [`crate::queue::classify::classify`]; `None` when delivered or
    /// when only the recipients' replies speak (no recipient accepted) or the body is bad.
    pub fn outcome(&self) -> Option<Outcome<'_>> {
        match self {
            Ending::Refused { stage, code, text } => Some(Outcome::Reply {
                stage: *stage,
                code: *code,
                text,
            }),
            Ending::Dropped(stage) => Some(Outcome::Dropped(*stage)),
            Ending::NoFinalReply => Some(Outcome::NoFinalReply),
            Ending::Delivered | Ending::NoRecipient | Ending::Corrupt(_) => None,
        }
    }
}

/// Sends `env` with the body read from `body`, for its pending recipients only (a
/// recipient delivered by an earlier attempt is never sent again).
pub async fn send<S, B>(
    conn: &mut LineStream<S>,
    env: &Envelope,
    body: &mut B,
    t: Timeouts,
) -> Attempt
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + Unpin,
{
    let mut a = Attempt {
        rcpts: Vec::new(),
        ending: Ending::NoRecipient,
        reusable: false,
    };
    // QQ wants MAIL FROM to be the login itself (FACTS: `501 Mail from address must be
    // same as authorization user`); the store keeps the sender as it must be sent.
    let mail = format!("MAIL FROM:<{}>\r\n", env.sender);
    match command(conn, mail.as_bytes(), Stage::Mail, t.reply).await {
        Err(stage) => return a.ended(Ending::Dropped(stage)),
        Ok(r) if !r.is_positive() => return refused(conn, a, Stage::Mail, r, t).await,
        Ok(_) => {}
    }
    for (index, r) in env.recipients.iter().enumerate() {
        if r.state != RcptState::Pending {
            continue;
        }
        let line = format!("RCPT TO:<{}>\r\n", r.addr);
        match command(conn, line.as_bytes(), Stage::Rcpt, t.reply).await {
            Err(stage) => return a.ended(Ending::Dropped(stage)),
            Ok(reply) => a.rcpts.push(RcptReply {
                index,
                code: reply.code,
                text: reply.raw,
            }),
        }
    }
    if !a.rcpts.iter().any(|r| (200..400).contains(&r.code)) {
        // RFC 5321 §4.1.1.5: RSET ends the transaction without DATA.
        a.reusable = reset(conn, t).await;
        return a;
    }
    match command(conn, b"DATA\r\n", Stage::Data, t.reply).await {
        Err(stage) => return a.ended(Ending::Dropped(stage)),
        Ok(r) if r.code != 354 => return refused(conn, a, Stage::Data, r, t).await,
        Ok(_) => {}
    }
    let mut check = BodyCheck::new(env.body);
    if let Err(end) = stream_body(conn, body, &mut check, t).await {
        return a.ended(end);
    }
    if !check.finish() {
        // Inside DATA everything up to <CRLF>.<CRLF> is message text (RFC 5321
        // §4.1.1.4), so RSET cannot abort it: closing without the dot is the only way,
        // and the server then discards the partial message.
        let why = format!(
            "body length or checksum differs (want {} bytes)",
            env.body.len
        );
        return a.ended(Ending::Corrupt(why));
    }
    if conn.send(b".\r\n", t.reply).await.is_err() {
        // Some of the dot may have left: the upstream may have the message.
        return a.ended(Ending::NoFinalReply);
    }
    match read_reply(conn, t.data).await {
        Err(_) => a.ended(Ending::NoFinalReply),
        Ok(r) if r.is_positive() => {
            a.reusable = true;
            a.ended(Ending::Delivered)
        }
        Ok(r) => refused(conn, a, Stage::EndOfData, r, t).await,
    }
}

impl Attempt {
    fn ended(mut self, ending: Ending) -> Attempt {
        self.ending = ending;
        self
    }
}

/// Streams the stored body (already dot-stuffed, without the final dot) and makes sure
/// it ends with CRLF so that the dot that follows is a line of its own.
async fn stream_body<S, B>(
    conn: &mut LineStream<S>,
    body: &mut B,
    check: &mut BodyCheck,
    t: Timeouts,
) -> Result<(), Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut last = [b'\r', b'\n'];
    loop {
        let n = match body.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Ending::Corrupt(format!("body unreadable: {e}"))),
        };
        check.update(&buf[..n]);
        if conn.send(&buf[..n], t.reply).await.is_err() {
            return Err(Ending::Dropped(Stage::Data));
        }
        last = match n {
            1 => [last[1], buf[0]],
            _ => [buf[n - 2], buf[n - 1]],
        };
    }
    if last != *b"\r\n" && conn.send(b"\r\n", t.reply).await.is_err() {
        return Err(Ending::Dropped(Stage::Data));
    }
    Ok(())
}

/// A negative reply ends the transaction; RSET makes the connection usable for the
/// next message (a 421 closes it, RFC 5321 §3.8).
async fn refused<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    mut a: Attempt,
    stage: Stage,
    r: Reply,
    t: Timeouts,
) -> Attempt {
    a.reusable = r.code != 421 && reset(conn, t).await;
    a.ended(Ending::Refused {
        stage,
        code: r.code,
        text: r.raw,
    })
}

/// `RSET`; true if the server said 250.
pub async fn reset<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    t: Timeouts,
) -> bool {
    matches!(command(conn, b"RSET\r\n", Stage::Mail, t.reply).await, Ok(r) if r.code == 250)
}

/// `QUIT`, not waiting long for the 221: the work is done either way.
pub async fn quit<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut LineStream<S>, t: Timeouts) {
    let _ = command(conn, b"QUIT\r\n", Stage::Mail, t.reply).await;
}

/// Sends one command and reads its reply; `Err(stage)` when the connection failed.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    line: &[u8],
    stage: Stage,
    timeout: Duration,
) -> Result<Reply, Stage> {
    conn.send(line, timeout).await.map_err(|_| stage)?;
    read_reply(conn, timeout).await.map_err(|e| match e {
        ReplyError::Line(LineError::Closed | LineError::Timeout | LineError::Io(_))
        | ReplyError::Line(LineError::TooLong(_))
        | ReplyError::Malformed(_) => stage,
    })
}
