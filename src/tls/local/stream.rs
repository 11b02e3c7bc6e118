//! The local TLS acceptor and the stream it yields, over either backend: rustls (TLS 1.2
//! and 1.3, the default) or, with `[tls] min_version` below 1.2 in a `legacy-tls` build,
//! OpenSSL ([`super::legacy`]). One acceptor type and one stream type, so that sessions,
//! STARTTLS and the relays are written once whichever backend serves.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Accepts local TLS handshakes.
#[derive(Clone)]
pub enum LocalAcceptor {
    /// rustls: TLS 1.2 and 1.3.
    Rustls(TlsAcceptor),
    /// OpenSSL: from `[tls] min_version` (1.0 or 1.1) up to TLS 1.3.
    #[cfg(feature = "legacy-tls")]
    OpenSsl(super::legacy::LegacyAcceptor),
}

impl LocalAcceptor {
    /// Runs the server side of the handshake on `tcp`. A failure's error wraps the
    /// backend's own ([`rustls::Error`], or `openssl::ssl::Error`) for
    /// [`super::diagnose::explain`].
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<LocalTlsStream> {
        match self {
            LocalAcceptor::Rustls(a) => Ok(LocalTlsStream::Rustls(Box::new(a.accept(tcp).await?))),
            #[cfg(feature = "legacy-tls")]
            LocalAcceptor::OpenSsl(a) => Ok(LocalTlsStream::OpenSsl(a.accept(tcp).await?)),
        }
    }

    /// True when this acceptor takes TLS 1.0/1.1 clients (the OpenSSL backend).
    pub fn accepts_old_tls(&self) -> bool {
        !matches!(self, LocalAcceptor::Rustls(_))
    }
}

/// A local TLS connection, from either backend.
#[derive(Debug)]
pub enum LocalTlsStream {
    /// rustls (boxed: its buffers make it ~1.2 KB, OpenSSL's is a pointer).
    Rustls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// OpenSSL.
    #[cfg(feature = "legacy-tls")]
    OpenSsl(tokio_openssl::SslStream<TcpStream>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            LocalTlsStream::Rustls($s) => $e,
            #[cfg(feature = "legacy-tls")]
            LocalTlsStream::OpenSsl($s) => $e,
        }
    };
}

impl AsyncRead for LocalTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for LocalTlsStream {
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

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            LocalTlsStream::Rustls(s) => s.is_write_vectored(),
            #[cfg(feature = "legacy-tls")]
            LocalTlsStream::OpenSsl(s) => s.is_write_vectored(),
        }
    }
}
