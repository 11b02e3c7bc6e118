//! The byte relay after an IMAP or POP3 login: buffered bytes are flushed first (client
//! commands pipelined after LOGIN go upstream, upstream bytes read with the login reply
//! go to the client), then `copy_bidirectional` moves bytes both ways with 64 KiB
//! buffers and half-close handling, watched by an idle timer. No byte is parsed.
//!
//! When the server closes (after LOGOUT/QUIT, or on its own), the session is over for
//! IMAP and POP3: the client gets what was in flight and is then closed, rather than
//! waiting for a client that may never hang up.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::stream::{Activity, Watch};

/// Relay buffer size in each direction.
const BUF: usize = 64 * 1024;
/// After the server closes, how long the last bytes may take to reach the client.
const DRAIN: Duration = Duration::from_secs(5);

/// How a relay ended.
#[derive(Debug)]
pub enum SpliceEnd {
    /// One side closed and the other was closed in turn.
    Closed,
    /// No data in either direction for the idle timeout.
    Idle,
    /// A read or write failed (reset, TLS error).
    Error(io::Error),
    /// The proxy is shutting down.
    Shutdown,
}

/// Bytes moved by a relay.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
}

/// Relays `client` ⇄ `upstream` until either side closes, the link is idle for `idle`,
/// or `shutdown` fires.
pub async fn splice<C, U>(
    client: C,
    client_leftover: BytesMut,
    upstream: U,
    upstream_leftover: BytesMut,
    idle: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> (SpliceEnd, Moved)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = tokio::time::Instant::now();
    let from_client = Arc::new(Watch::default());
    let from_upstream = Arc::new(Watch::default());
    let mut client = Activity::new(client, from_client.clone(), epoch);
    let mut upstream = Activity::new(upstream, from_upstream.clone(), epoch);
    let moved = |base_up: u64, base_down: u64| Moved {
        up: base_up + from_client.bytes.load(Ordering::Relaxed),
        down: base_down + from_upstream.bytes.load(Ordering::Relaxed),
    };
    let (base_up, base_down) = (client_leftover.len() as u64, upstream_leftover.len() as u64);
    // Bounded like the relay itself: a peer that stops reading must not stall us here.
    let flushed = tokio::time::timeout(idle, async {
        upstream.write_all(&client_leftover).await?;
        client.write_all(&upstream_leftover).await
    })
    .await
    .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "peer not reading")));
    if let Err(e) = flushed {
        return (SpliceEnd::Error(e), moved(base_up, base_down));
    }
    let watchdog = async {
        loop {
            let seen = Duration::from_millis(
                from_client
                    .last
                    .load(Ordering::Relaxed)
                    .max(from_upstream.last.load(Ordering::Relaxed)),
            );
            let deadline = epoch + seen + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let server_closed = async {
        from_upstream.eof.notified().await;
        tokio::time::sleep(DRAIN).await;
    };
    let end = {
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF);
        tokio::select! {
            r = copy => match r {
                Ok(_) => SpliceEnd::Closed,
                Err(e) => SpliceEnd::Error(e),
            },
            _ = server_closed => SpliceEnd::Closed,
            _ = watchdog => SpliceEnd::Idle,
            _ = shutdown.cancelled() => SpliceEnd::Shutdown,
        }
    };
    // The server is done: make sure the client sees the end too.
    let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
    (end, moved(base_up, base_down))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn leftovers_first_then_both_ways_and_half_close() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(
            client,
            BytesMut::from(&b"b SELECT INBOX\r\n"[..]),
            upstream,
            BytesMut::from(&b"* 3 EXISTS\r\n"[..]),
            Duration::from_secs(30),
            tokio_util::sync::CancellationToken::new(),
        ));
        let mut got = [0u8; 16];
        upstream_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"b SELECT INBOX\r\n");
        let mut got = [0u8; 12];
        client_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"* 3 EXISTS\r\n");
        client_peer.write_all(b"c LOGOUT\r\n").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        upstream_peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"c LOGOUT\r\n");
        upstream_peer.write_all(b"* BYE\r\n").await.unwrap();
        drop(upstream_peer);
        let mut tail = Vec::new();
        client_peer.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"* BYE\r\n");
        let (end, moved) = task.await.unwrap();
        assert!(matches!(end, SpliceEnd::Closed), "{end:?}");
        assert_eq!((moved.up, moved.down), (26, 19));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_the_relay() {
        let (client, _client_peer) = tokio::io::duplex(64);
        let (upstream, _upstream_peer) = tokio::io::duplex(64);
        let (end, _) = splice(
            client,
            BytesMut::new(),
            upstream,
            BytesMut::new(),
            Duration::from_secs(1800),
            tokio_util::sync::CancellationToken::new(),
        )
        .await;
        assert!(matches!(end, SpliceEnd::Idle));
    }
}
