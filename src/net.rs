//! Buffered line I/O over any async stream, with a length limit and a timeout on every
//! read, and TCP connect with a timeout trying each resolved address in turn.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The peer closed the connection (cleanly or not) before a whole line arrived.
    #[error("connection closed")]
    Closed,
    /// Nothing arrived within the timeout.
    #[error("timed out")]
    Timeout,
    /// A line went over the limit.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// A read or write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A stream with a read buffer. Bytes read past the last line stay in the buffer and are
/// handed on by [`LineStream::into_parts`], never lost.
#[derive(Debug)]
pub struct LineStream<S> {
    io: S,
    buf: BytesMut,
    max_line: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineStream<S> {
    /// Wraps `io`; lines longer than `max_line` are errors.
    pub fn new(io: S, max_line: usize) -> Self {
        LineStream {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            max_line,
        }
    }

    /// Wraps `io` with bytes already read from it.
    pub fn with_buffer(io: S, buf: BytesMut, max_line: usize) -> Self {
        LineStream { io, buf, max_line }
    }

    /// Reads one line including its line ending (LF or CRLF).
    pub async fn read_line(&mut self, timeout: Duration) -> Result<BytesMut, LineError> {
        let mut scanned = 0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[scanned..]) {
                return Ok(self.buf.split_to(scanned + i + 1));
            }
            scanned = self.buf.len();
            if scanned > self.max_line {
                return Err(LineError::TooLong(self.max_line));
            }
            self.fill(timeout).await?;
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal, for example).
    pub async fn read_exact_bytes(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<BytesMut, LineError> {
        while self.buf.len() < n {
            self.fill(timeout).await?;
        }
        Ok(self.buf.split_to(n))
    }

    /// Reads more bytes into the buffer; at least one, or an error.
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, LineError> {
        self.buf.reserve(8 * 1024);
        match tokio::time::timeout(timeout, self.io.read_buf(&mut self.buf)).await {
            Err(_) => Err(LineError::Timeout),
            Ok(Ok(0)) => Err(LineError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(LineError::Io(e)),
        }
    }

    /// Writes all of `bytes` and flushes, within `timeout`.
    pub async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), LineError> {
        let io = &mut self.io;
        match tokio::time::timeout(timeout, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        {
            Err(_) => Err(LineError::Timeout),
            Ok(r) => r.map_err(LineError::Io),
        }
    }

    /// The buffered bytes not yet consumed.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The stream itself (for writing without buffering).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Discards `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// The stream and the bytes read but not consumed.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }
}

/// Connects to `host:port` within `timeout`, trying every resolved address in order.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let attempt = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address")
        }))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
}

/// Shows protocol bytes in a log line: UTF-8 as is, anything else escaped, trimmed.
pub fn show(bytes: &[u8]) -> String {
    let trimmed = bytes.trim_ascii_end();
    match std::str::from_utf8(trimmed) {
        Ok(s) => s.to_string(),
        Err(_) => trimmed.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_leftovers_and_limits() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut ls = LineStream::new(a, 16);
        let t = Duration::from_secs(5);
        b.write_all(b"one\r\ntwo\nthr").await.unwrap();
        assert_eq!(&ls.read_line(t).await.unwrap()[..], b"one\r\n");
        assert_eq!(&ls.read_line(t).await.unwrap()[..], b"two\n");
        b.write_all(b"ee\r\n{4}\r\nabcdrest").await.unwrap();
        assert_eq!(&ls.read_line(t).await.unwrap()[..], b"three\r\n");
        assert_eq!(&ls.read_line(t).await.unwrap()[..], b"{4}\r\n");
        assert_eq!(&ls.read_exact_bytes(4, t).await.unwrap()[..], b"abcd");
        b.write_all(b"0123456789abcdefghij").await.unwrap();
        assert!(matches!(ls.read_line(t).await, Err(LineError::TooLong(16))));
        drop(b);
        let (_, rest) = ls.into_parts();
        assert!(rest.starts_with(b"rest0123"));
    }

    #[tokio::test]
    async fn closed_and_timeout() {
        let (a, b) = tokio::io::duplex(64);
        let mut ls = LineStream::new(a, 16);
        let r = ls.read_line(Duration::from_millis(20)).await;
        assert!(matches!(r, Err(LineError::Timeout)));
        drop(b);
        assert!(matches!(
            ls.read_line(Duration::from_secs(5)).await,
            Err(LineError::Closed)
        ));
    }

    #[test]
    fn show_escapes_non_utf8() {
        assert_eq!(show(b"535 Login Fail\r\n"), "535 Login Fail");
        assert_eq!(
            show(b"220 \xc4\xe3\xba\xc3\r\n"),
            "220 \\xc4\\xe3\\xba\\xc3"
        );
    }
}
