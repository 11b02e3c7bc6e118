//! The queue copy is written in 64 KiB batches on the blocking pool, whatever the size
//! of the client's packets, and stores exactly the message without its final dot line.

use super::*;

fn message() -> NewMessage {
    NewMessage {
        account: "main".into(),
        sender: "a@qq.com".into(),
        null_sender: false,
        recipients: vec!["b@x.cn".into()],
    }
}

#[tokio::test]
async fn batches_by_size_not_by_packet() {
    // (chunk size, chunks before the last one) -> batches written.
    let cases: [(usize, usize, usize); 5] = [
        (0, 0, 1),
        (100, 1000, 2),
        (1, 70_000, 2),
        (BATCH, 3, 4),
        (BATCH - 1, 2, 2),
    ];
    for (size, chunks, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("q"), None).unwrap();
        let mut spool = Spool::new(begin(&store, message(), None).await);
        let mut sent = Vec::new();
        for i in 0..chunks {
            let chunk = vec![b'a' + (i % 26) as u8; size];
            spool.push(&chunk, false).await;
            sent.extend_from_slice(&chunk);
        }
        spool.push(b"end\r\n.\r\n", true).await;
        sent.extend_from_slice(b"end\r\n");
        assert_eq!(spool.batches, want, "{size} x {chunks}");
        let env = spool.finish().unwrap().commit().unwrap();
        let mut body = Vec::new();
        let mut r = store.open_body(&env).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        r.finish().unwrap();
        assert!(body == sent, "{size} x {chunks}: stored body differs");
    }
}

#[tokio::test]
async fn a_full_queue_fails_the_copy_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&dir.path().join("q"), Some(BATCH as u64)).unwrap();
    let mut spool = Spool::new(begin(&store, message(), None).await);
    spool.push(&vec![b'x'; BATCH + 1], false).await;
    assert!(!spool.is_ok());
    spool.push(b".\r\n", true).await;
    assert!(matches!(spool.finish(), Err(StoreError::Full { .. })));
    assert_eq!(store.used_bytes(), 0);
    let tmp = std::fs::read_dir(dir.path().join("q/tmp")).unwrap().count();
    assert_eq!(tmp, 0, "the temporary file was removed");
}
