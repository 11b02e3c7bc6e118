//! Byte transport shared by the load generator and the upstream stand-in: one stream enum
//! (plain TCP, client TLS, server TLS) and `Wire`, a bounded read buffer with line reads,
//! counted skips and the SMTP end-of-data scan (RFC 5321 §4.1.1.4).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Longest line either side accepts (an EHLO reply or a CAPABILITY line is far shorter).
const MAX_LINE: usize = 64 * 1024;
/// Read buffer size.
const BUF: usize = 256 * 1024;

/// A connection in any of the forms the benchmark uses.
pub enum Stream {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS as a client (direct, or after STARTTLS).
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS as a server (the upstream stand-in).
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            Stream::Client($s) => $e,
            Stream::Server($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A stream with a read buffer.
pub struct Wire {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Wire {
    /// Wraps a stream.
    pub fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
        }
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Gives the stream back (for STARTTLS); fails if bytes are buffered, since those would
    /// be plaintext read past the STARTTLS reply.
    pub fn into_stream(self) -> io::Result<Stream> {
        if self.buffered() > 0 {
            return Err(bad("bytes pipelined after STARTTLS"));
        }
        Ok(self.stream)
    }

    /// Reads more bytes; an error at EOF.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// One line, CRLF (or LF) included.
    pub async fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            let window = &self.buf[self.start + scanned..self.end];
            if let Some(i) = memchr::memchr(b'\n', window) {
                let stop = self.start + scanned + i + 1;
                let line = self.buf[self.start..stop].to_vec();
                self.start = stop;
                return Ok(line);
            }
            scanned = self.end - self.start;
            if scanned >= MAX_LINE {
                return Err(bad("line too long"));
            }
            self.fill().await?;
        }
    }

    /// Consumes exactly `n` bytes without keeping them, handing each piece to `check`.
    pub async fn skip(&mut self, mut n: u64, mut check: impl FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let have = (self.end - self.start) as u64;
            let take = have.min(n) as usize;
            check(&self.buf[self.start..self.start + take]);
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Consumes a DATA body up to and including `CRLF . CRLF` (the CRLF before the dot may be
    /// the one that ended the DATA command). Returns the bytes consumed.
    pub async fn skip_data(&mut self) -> io::Result<u64> {
        const END: &[u8] = b"\r\n.\r\n";
        let finder = memchr::memmem::Finder::new(END);
        let mut total = 0u64;
        // The body starts right after a CRLF: an immediate ".\r\n" ends it.
        while self.end - self.start < 3 {
            self.fill().await?;
        }
        if &self.buf[self.start..self.start + 3] == b".\r\n" {
            self.start += 3;
            return Ok(3);
        }
        loop {
            if let Some(i) = finder.find(&self.buf[self.start..self.end]) {
                let stop = self.start + i + END.len();
                total += (stop - self.start) as u64;
                self.start = stop;
                return Ok(total);
            }
            // Keep the last bytes: the terminator may straddle two reads.
            let keep = (END.len() - 1).min(self.end - self.start);
            let consumed = self.end - self.start - keep;
            total += consumed as u64;
            self.start += consumed;
            self.fill().await?;
        }
    }

    /// Writes all of `bytes` and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes without flushing (a large body is followed by `send`).
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Closes the write side (TLS close_notify, then FIN).
    pub async fn shutdown(&mut self) {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), self.stream.shutdown()).await;
    }
}

/// `line` without its line ending, lossily as text (for error messages).
pub fn show(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let t = text.trim_end_matches(['\r', '\n']);
    t.chars().take(200).collect()
}
