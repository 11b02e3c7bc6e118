//! The upstream side of DATA while the message streams: writes that stop as soon as the
//! upstream speaks or closes (a server that refused mid-message may never read again),
//! and the bounded salvage of the reply it sent (RFC 5321 §4.2 reply syntax).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::LineStream;
use crate::upstream::smtp::Reply;

/// Most bytes taken of a reply that interrupted DATA (real ones are a line or two).
const SALVAGE_MAX: usize = 8 * 1024;
/// How long the rest of such a reply may take once its first bytes (or the close) arrived.
pub(super) const SALVAGE_WAIT: Duration = Duration::from_secs(2);

/// Why forwarding stopped before the end of data.
#[derive(Debug, thiserror::Error)]
pub(super) enum Interrupt {
    /// The upstream sent bytes before the end of data: an early reply (§4.1.1.4 gives the
    /// server no reply before `<CRLF>.<CRLF>`, so one that comes is a refusal).
    #[error("the upstream replied before the end of data")]
    Spoke,
    /// The upstream closed its side.
    #[error("the upstream closed the connection")]
    Closed,
    /// A read or write failed (reset, broken pipe, TLS error).
    #[error("{0}")]
    Failed(io::Error),
    /// A write did not finish within the upstream timeout.
    #[error("a write to the upstream timed out")]
    TimedOut,
}

/// Writes and flushes `bytes` within `timeout`, but stops as soon as the upstream sends
/// anything or closes: a server that refused mid-message may never read again, and waiting
/// for the write would only end in a timeout. Bytes that arrived stay in `conn`'s buffer.
pub(super) async fn send_watching<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), Interrupt> {
    if !conn.buffer().is_empty() {
        return Err(Interrupt::Spoke);
    }
    let mut early = [0u8; 1024];
    let mut got = 0;
    let mut written = 0;
    let io = conn.get_mut();
    // One future polls both directions of the one stream: the read first, so a reply
    // that is already there wins over a write error (a reset after the server's close).
    let watched = poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut early);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                return Poll::Ready(Err(Interrupt::Closed))
            }
            Poll::Ready(Ok(())) => {
                got = rb.filled().len();
                return Poll::Ready(Err(Interrupt::Spoke));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Interrupt::Failed(e))),
            Poll::Pending => {}
        }
        while written < bytes.len() {
            match Pin::new(&mut *io).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Interrupt::Failed(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Interrupt::Failed(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut *io).poll_flush(cx).map_err(Interrupt::Failed)
    });
    let result = tokio::time::timeout(timeout, watched)
        .await
        .unwrap_or(Err(Interrupt::TimedOut));
    conn.buffer().extend_from_slice(&early[..got]);
    result
}

/// Reads what the upstream already sent (at most [`SALVAGE_MAX`] bytes, for at most
/// `wait`) and returns it if it is one whole reply; `None` for a partial, malformed or
/// missing one.
pub(super) async fn salvage_reply<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    wait: Duration,
) -> Option<Reply> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match parse_reply(conn.buffer()) {
            Parsed::Complete(r) => return Some(r),
            Parsed::Malformed => return None,
            Parsed::Partial if conn.buffer().len() >= SALVAGE_MAX => return None,
            Parsed::Partial => {}
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || conn.fill(left).await.is_err() {
            return None;
        }
    }
}

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// One whole reply (every line, line endings included).
    Complete(Reply),
    /// The start of a reply.
    Partial,
    /// Not an SMTP reply (RFC 5321 §4.2: a three-digit code, 2 to 5 first, the same on
    /// every line, then a space or `-` or the line end).
    Malformed,
}

fn parse_reply(buf: &[u8]) -> Parsed {
    let mut code = None;
    let mut start = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
        let line = &buf[start..start + i + 1];
        start += i + 1;
        let Some(this) = reply_code(line) else {
            return Parsed::Malformed;
        };
        if *code.get_or_insert(this) != this {
            return Parsed::Malformed;
        }
        if line[3] != b'-' {
            return Parsed::Complete(Reply {
                code: this,
                raw: buf[..start].to_vec(),
            });
        }
    }
    // An unfinished line must at least start like a reply.
    let rest = &buf[start..];
    let digits_ok = rest.iter().take(3).enumerate().all(|(i, b)| {
        if i == 0 {
            (b'2'..=b'5').contains(b)
        } else {
            b.is_ascii_digit()
        }
    });
    if digits_ok {
        Parsed::Partial
    } else {
        Parsed::Malformed
    }
}

/// The code of a reply line that ends in LF, if it is one.
fn reply_code(line: &[u8]) -> Option<u16> {
    let d = line.get(..4)?;
    let ok = (b'2'..=b'5').contains(&d[0])
        && d[1].is_ascii_digit()
        && d[2].is_ascii_digit()
        && matches!(d[3], b' ' | b'-' | b'\r' | b'\n');
    ok.then(|| {
        d[..3]
            .iter()
            .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests;
