//! The client connection: plain TCP until STARTTLS, then TLS (rustls or, for old TLS
//! versions, OpenSSL: [`LocalTlsStream`]). One enum, so the pipeline and the relays are
//! written once for all of them.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::local::LocalTlsStream;

/// A client connection.
#[derive(Debug)]
pub enum ClientStream {
    /// Plaintext.
    Plain(TcpStream),
    /// After STARTTLS, or on an implicit-TLS listener.
    Tls(LocalTlsStream),
    /// Moved out (a placeholder while the stream changes hands); reads see EOF,
    /// writes fail.
    Closed,
}

impl ClientStream {
    /// True once STARTTLS has completed.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "client stream closed")
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr, $closed:expr) => {
        match $self.get_mut() {
            ClientStream::Plain($s) => $e,
            ClientStream::Tls($s) => $e,
            ClientStream::Closed => $closed,
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_read(cx, buf), Poll::Ready(Ok(())))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => Pin::new(s).poll_write(cx, buf), Poll::Ready(Err(closed())))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_flush(cx), Poll::Ready(Ok(())))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_shutdown(cx), Poll::Ready(Ok(())))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => Pin::new(s).poll_write_vectored(cx, bufs), Poll::Ready(Err(closed())))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
            ClientStream::Closed => false,
        }
    }
}

/// What a relay watches on one side: when it last delivered data (coarse milliseconds
/// since the relay started), how many bytes it delivered, and whether it reached EOF.
/// Updated once per read call, never per byte.
#[derive(Debug, Default)]
pub struct Watch {
    /// Milliseconds since the relay's epoch at the last read that returned data.
    pub last: AtomicU64,
    /// Bytes delivered by reads.
    pub bytes: AtomicU64,
    /// Signalled when a read returns end-of-file.
    pub eof: tokio::sync::Notify,
}

/// Wraps a stream and reports its reads to a shared [`Watch`].
pub struct Activity<S> {
    inner: S,
    watch: Arc<Watch>,
    epoch: tokio::time::Instant,
}

impl<S> Activity<S> {
    /// Wraps `inner`, reporting to `watch`.
    pub fn new(inner: S, watch: Arc<Watch>, epoch: tokio::time::Instant) -> Self {
        Activity {
            inner,
            watch,
            epoch,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Activity<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                this.watch.bytes.fetch_add(n, Ordering::Relaxed);
                this.watch
                    .last
                    .store(this.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            } else if buf.remaining() > 0 {
                this.watch.eof.notify_one();
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Activity<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
