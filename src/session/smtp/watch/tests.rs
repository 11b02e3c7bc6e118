//! The early-reply watcher, the bounded reply salvage and the reply parser, over in-memory
//! pipes (time is paused, so the timeouts cost nothing).

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const T: Duration = Duration::from_secs(30);

fn reply(code: u16, raw: &[u8]) -> Parsed {
    Parsed::Complete(Reply {
        code,
        raw: raw.to_vec(),
    })
}

#[test]
fn parse_reply_table() {
    let cases: &[(&[u8], Parsed)] = &[
        (
            b"552 5.3.4 Message size exceeds fixed limit\r\n",
            reply(552, b"552 5.3.4 Message size exceeds fixed limit\r\n"),
        ),
        (b"550-a\r\n550 b\r\n", reply(550, b"550-a\r\n550 b\r\n")),
        // Only the first reply is taken; what follows stays unread.
        (b"421 bye\r\nextra", reply(421, b"421 bye\r\n")),
        (b"451\r\n", reply(451, b"451\r\n")),
        // GBK text passes as bytes.
        (
            b"550 \xc4\xe3\xba\xc3\r\n",
            reply(550, b"550 \xc4\xe3\xba\xc3\r\n"),
        ),
        (b"550 5.7.1 spam detec", Parsed::Partial),
        (b"550-a\r\n550 b", Parsed::Partial),
        (b"55", Parsed::Partial),
        (b"", Parsed::Partial),
        (b"550-a\r\n451 b\r\n", Parsed::Malformed),
        (b"hello\r\n", Parsed::Malformed),
        (b"x", Parsed::Malformed),
        (b"650 no\r\n", Parsed::Malformed),
        (b"55x", Parsed::Malformed),
        (b"550x\r\n", Parsed::Malformed),
    ];
    for (input, want) in cases {
        assert_eq!(
            &parse_reply(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

fn pipe(capacity: usize) -> (LineStream<DuplexStream>, DuplexStream) {
    let (a, b) = tokio::io::duplex(capacity);
    (LineStream::new(a, 4096), b)
}

#[tokio::test(start_paused = true)]
async fn quiet_upstream_gets_every_byte() {
    let (mut conn, mut peer) = pipe(64);
    let data = vec![b'x'; 10_000];
    let read = async {
        let mut got = vec![0u8; data.len()];
        peer.read_exact(&mut got).await.map(|_| got)
    };
    let (sent, got) = tokio::join!(send_watching(&mut conn, &data, T), read);
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(got.expect("read"), data);
}

/// The upstream refuses while the proxy is blocked writing, and never reads again: the
/// write is abandoned at once (not after the timeout) and the reply is whole.
#[tokio::test(start_paused = true)]
async fn early_reply_from_a_stalled_upstream() {
    let (mut conn, mut peer) = pipe(64);
    let data = vec![b'x'; 1 << 20];
    let refuse = async {
        tokio::task::yield_now().await;
        peer.write_all(b"552 5.3.4 Message size exceeds fixed limit\r\n")
            .await
            .expect("write");
    };
    let started = tokio::time::Instant::now();
    let (sent, ()) = tokio::join!(send_watching(&mut conn, &data, T), refuse);
    assert!(matches!(sent, Err(Interrupt::Spoke)), "{sent:?}");
    assert!(started.elapsed() < T);
    let got = salvage_reply(&mut conn, SALVAGE_WAIT).await.expect("reply");
    assert_eq!(got.raw, b"552 5.3.4 Message size exceeds fixed limit\r\n");
    drop(peer);
}

/// What the upstream did, and the reply the relay may pass on (`None`: the proxy's 451).
#[tokio::test(start_paused = true)]
async fn refusal_then_close_table() {
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (
            b"550 Mail content denied\r\n",
            Some(b"550 Mail content denied\r\n"),
        ),
        (b"550-a\r\n550 b\r\n", Some(b"550-a\r\n550 b\r\n")),
        (b"", None),
        (b"550 cut off", None),
        (b"garbage\r\n", None),
    ];
    for (said, want) in cases {
        let (mut conn, mut peer) = pipe(64);
        peer.write_all(said).await.expect("write");
        drop(peer);
        let sent = send_watching(&mut conn, &[b'x'; 4096], T).await;
        assert!(sent.is_err(), "{said:?}: {sent:?}");
        let got = salvage_reply(&mut conn, SALVAGE_WAIT).await;
        assert_eq!(got.map(|r| r.raw).as_deref(), *want, "{said:?}");
    }
}

/// A reply whose end comes a little later is still whole; one that never ends is given up
/// after the wait, and one that never stops is given up at the size bound.
#[tokio::test(start_paused = true)]
async fn salvage_is_bounded_in_time_and_size() {
    let (mut conn, mut peer) = pipe(1 << 16);
    peer.write_all(b"552-first\r\n").await.expect("write");
    let rest = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peer.write_all(b"552 second\r\n").await.expect("write");
    };
    let (got, ()) = tokio::join!(salvage_reply(&mut conn, SALVAGE_WAIT), rest);
    let got = got.expect("reply");
    assert_eq!(got.raw, b"552-first\r\n552 second\r\n");
    conn.consume(got.raw.len());

    peer.write_all(b"552 never ends").await.expect("write");
    let started = tokio::time::Instant::now();
    assert_eq!(salvage_reply(&mut conn, SALVAGE_WAIT).await, None);
    assert!(started.elapsed() >= SALVAGE_WAIT);

    let (mut conn, mut peer) = pipe(1024);
    let line = b"552-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let endless = async {
        loop {
            if peer.write_all(line).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        got = salvage_reply(&mut conn, SALVAGE_WAIT) => assert_eq!(got, None),
        () = endless => panic!("the reader stopped first"),
    }
    assert!(conn.buffer().len() < 2 * SALVAGE_MAX);
}

#[tokio::test(start_paused = true)]
async fn write_timeout_and_leftover_bytes() {
    // Nobody reads and nobody speaks: the timeout ends the write.
    let (mut conn, _peer) = pipe(64);
    let sent = send_watching(&mut conn, &[b'x'; 4096], Duration::from_secs(1)).await;
    assert!(matches!(sent, Err(Interrupt::TimedOut)), "{sent:?}");
    // Bytes already buffered from the upstream are an early reply.
    let (mut conn, _peer) = pipe(64);
    conn.buffer().extend_from_slice(b"550 early\r\n");
    let sent = send_watching(&mut conn, b"x", T).await;
    assert!(matches!(sent, Err(Interrupt::Spoke)), "{sent:?}");
}
