use super::*;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn msg(rcpts: &[&str]) -> NewMessage {
    NewMessage {
        account: "alice@qq.com".into(),
        sender: "alice@qq.com".into(),
        null_sender: false,
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
    }
}

fn put(store: &Store, at: SystemTime, body: &[u8]) -> Envelope {
    let mut w = store.begin(msg(&["bob@example.com"]), at, None).unwrap();
    for chunk in body.chunks(7) {
        w.write(chunk).unwrap();
    }
    w.commit().unwrap()
}

fn body_of(store: &Store, env: &Envelope) -> Vec<u8> {
    let mut r = store.open_body(env).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 5];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    r.finish().unwrap();
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn commit_list_get_update_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rec) = Store::open(&dir.path().join("q"), None).unwrap();
    assert!(rec.messages.is_empty());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("q")), 0o700);

    let body = b"Subject: hi\r\n\r\n..dot-stuffed line\r\nend\r\n";
    let a = put(&store, t(10), body);
    let b = put(&store, t(5), b"");
    assert_eq!(mode(&store.body_path(&a.id)), 0o600);
    assert_eq!(mode(&store.env_path(&a.id)), 0o600);
    assert_eq!(store.used_bytes(), body.len() as u64);
    assert_eq!(body_of(&store, &a), body);
    assert_eq!(body_of(&store, &b), b"");
    assert_eq!(store.get(&a.id).unwrap(), a);
    let ids: Vec<_> = store.list().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![b.id.clone(), a.id.clone()],
        "sorted by next attempt"
    );

    let mut a2 = a.clone();
    a2.recipients[0].state = RcptState::Delivered;
    a2.attempts = 1;
    store.update(&a2).unwrap();
    assert_eq!(store.get(&a.id).unwrap(), a2);
    store.retry_now(&a.id, t(99)).unwrap();
    assert_eq!(store.get(&a.id).unwrap().next_attempt, t(99));

    store.remove(&a.id).unwrap();
    assert!(matches!(store.get(&a.id), Err(StoreError::NotFound(_))));
    assert!(matches!(store.remove(&a.id), Err(StoreError::NotFound(_))));
    assert!(matches!(store.update(&a2), Err(StoreError::NotFound(_))));
    assert_eq!(store.used_bytes(), 0);
    assert!(names(&dir.path().join("q/tmp")).is_empty());

    // A second start finds exactly what is left.
    drop(store);
    let (_store, rec) = Store::open(&dir.path().join("q"), None).unwrap();
    assert_eq!(rec.messages, vec![b]);
    assert_eq!((rec.orphans_removed, rec.quarantined), (0, 0));
}

/// The deliverer's removal in two halves: the envelopes go at once, and one fsync of
/// `msg/` for the whole batch precedes the bodies (never a body-less envelope on disk).
#[test]
fn a_batch_of_removals_shares_one_directory_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&dir.path().join("q"), None).unwrap();
    let envs: Vec<Envelope> = (0..5).map(|i| put(&store, t(i), b"body\r\n")).collect();
    let kept = put(&store, t(9), b"kept\r\n");
    let syncs = store.msg_syncs();
    let removed: Vec<Removed> = envs
        .iter()
        .map(|e| store.unlink_envelope(&e.id).unwrap())
        .collect();
    for e in &envs {
        assert!(matches!(store.get(&e.id), Err(StoreError::NotFound(_))));
        assert!(store.body_path(&e.id).exists(), "body waits for the fsync");
        assert!(matches!(
            store.unlink_envelope(&e.id),
            Err(StoreError::NotFound(_))
        ));
    }
    assert_eq!(store.list().unwrap(), vec![kept.clone()]);
    assert_eq!(store.msg_syncs(), syncs, "no fsync per message");
    store.finish_removals(removed).unwrap();
    assert_eq!(store.msg_syncs(), syncs + 1, "one for the batch");
    for e in &envs {
        assert!(!store.body_path(&e.id).exists());
    }
    assert_eq!(store.used_bytes(), kept.body.len);
    store.finish_removals(Vec::new()).unwrap();
    assert_eq!(store.msg_syncs(), syncs + 1, "nothing to finish, no fsync");
}

#[test]
fn any_chunking_stores_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), None).unwrap();
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut sums = std::collections::HashSet::new();
    for chunk in [1, 2, 3, 7, 64, 511, 512, 4999, 5000, 9000] {
        let mut w = store.begin(msg(&["b@x"]), t(0), None).unwrap();
        for part in body.chunks(chunk) {
            w.write(part).unwrap();
        }
        assert_eq!(w.len(), body.len() as u64);
        let env = w.commit().unwrap();
        assert_eq!(body_of(&store, &env), body, "chunk {chunk}");
        sums.insert(env.body.sha256);
    }
    assert_eq!(sums.len(), 1);
}

#[test]
fn abort_and_drop_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Some(1000)).unwrap();
    let mut w = store.begin(msg(&["b@x"]), t(0), None).unwrap();
    w.write(&[b'x'; 600]).unwrap();
    assert_eq!(store.used_bytes(), 600);
    w.abort();
    let mut w = store.begin(msg(&["b@x"]), t(0), None).unwrap();
    w.write(&[b'x'; 600]).unwrap();
    drop(w);
    assert_eq!(store.used_bytes(), 0);
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert!(names(&dir.path().join("msg")).is_empty());
}

#[test]
fn max_size_is_checked_before_and_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Some(100)).unwrap();
    let kept = put(&store, t(0), &[b'a'; 60]);
    // Before: a declared SIZE that cannot fit.
    assert!(matches!(
        store.begin(msg(&["b@x"]), t(1), Some(41)),
        Err(StoreError::Full { used: 60, max: 100 })
    ));
    // While streaming: two writers share what is left.
    let mut w1 = store.begin(msg(&["b@x"]), t(1), Some(40)).unwrap();
    let mut w2 = store.begin(msg(&["b@x"]), t(1), None).unwrap();
    w1.write(&[b'b'; 30]).unwrap();
    let err = w2.write(&[b'c'; 11]).unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err}");
    assert!(err.is_storage_fault());
    assert!(err.to_string().contains("max_size"), "{err}");
    drop(w2);
    w1.write(&[b'b'; 10]).unwrap();
    w1.commit().unwrap();
    // Full to the byte: even an empty message is refused.
    assert!(matches!(
        store.begin(msg(&["b@x"]), t(2), None),
        Err(StoreError::Full { .. })
    ));
    store.remove(&kept.id).unwrap();
    store.begin(msg(&["b@x"]), t(3), Some(60)).unwrap();
}

#[test]
fn recovery_cleans_orphans_and_quarantines_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), None).unwrap();
    let good = put(&store, t(0), b"good\r\n");
    let truncated = put(&store, t(1), b"will be cut short\r\n");
    let garbled = put(&store, t(2), b"envelope garbled\r\n");
    let no_body = put(&store, t(3), b"body lost\r\n");
    let msg_dir = dir.path().join("msg");
    fs::write(store.body_path(&truncated.id), b"will be").unwrap();
    fs::write(store.env_path(&garbled.id), b"qqmail-proxy-queue 1\nid 0").unwrap();
    fs::remove_file(store.body_path(&no_body.id)).unwrap();
    // Leftovers of a crash: a half-written body, an envelope in flight, an orphan body.
    fs::write(
        dir.path().join("tmp/0000000000000AAAAAAAA.body"),
        b"partial",
    )
    .unwrap();
    fs::write(dir.path().join("tmp/0000000000000AAAAAAAA.env"), b"x").unwrap();
    fs::write(msg_dir.join("0000000000000BBBBBBBB.body"), b"orphan").unwrap();
    fs::write(msg_dir.join("README"), b"not ours").unwrap();
    // list() changes nothing.
    assert_eq!(store.list().unwrap(), vec![good.clone()]);
    assert_eq!(names(&msg_dir).len(), 9);
    drop(store);

    let (store, rec) = Store::open(dir.path(), None).unwrap();
    assert_eq!(rec.messages, vec![good.clone()]);
    assert_eq!((rec.orphans_removed, rec.quarantined), (3, 3));
    let mut want_msg = vec![
        format!("{}.body", good.id),
        format!("{}.env", good.id),
        "README".to_string(),
    ];
    want_msg.sort();
    assert_eq!(names(&msg_dir), want_msg);
    assert!(names(&dir.path().join("tmp")).is_empty());
    let mut want_corrupt = vec![
        format!("{}.body", truncated.id),
        format!("{}.env", truncated.id),
        format!("{}.body", garbled.id),
        format!("{}.env", garbled.id),
        format!("{}.env", no_body.id),
    ];
    want_corrupt.sort();
    assert_eq!(names(&dir.path().join("corrupt")), want_corrupt);
    assert_eq!(store.used_bytes(), 6);
}

#[test]
fn a_damaged_body_fails_its_check_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), None).unwrap();
    let env = put(&store, t(0), b"hello world\r\n");
    store.verify(&env).unwrap();
    fs::write(store.body_path(&env.id), b"hello World\r\n").unwrap();
    let err = store.verify(&env).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(!err.is_storage_fault());
    store.quarantine(&env.id, "checksum").unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(names(&dir.path().join("corrupt")).len(), 2);
}

#[test]
fn requests_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = Store::open(dir.path(), None).unwrap();
    let a = put(&server, t(50), b"a\r\n");
    let b = put(&server, t(60), b"b\r\n");
    let cli = Store::open_existing(dir.path()).unwrap();
    assert!(Store::open_existing(&dir.path().join("nope")).is_err());
    let ghost = QueueId::parse("0000000000000CCCCCCCC").unwrap();
    assert!(matches!(
        cli.request(&Request::Retry(ghost)),
        Err(StoreError::NotFound(_))
    ));
    cli.request(&Request::Retry(a.id.clone())).unwrap();
    cli.request(&Request::Delete(b.id.clone())).unwrap();
    fs::write(dir.path().join("ctl/bogus"), b"").unwrap();
    assert_eq!(cli.pending_requests().unwrap().len(), 2);
    // Nothing changes until the server applies them.
    assert_eq!(cli.list().unwrap().len(), 2);

    let mut reqs = server.take_requests().unwrap();
    reqs.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(
        reqs,
        vec![Request::Delete(b.id.clone()), Request::Retry(a.id.clone())]
    );
    assert!(names(&dir.path().join("ctl")).is_empty());
    for r in &reqs {
        server.apply(r, t(1)).unwrap();
        server.apply(r, t(1)).unwrap(); // twice: harmless
    }
    let left = cli.list().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].id.clone(), left[0].next_attempt), (a.id, t(1)));
    cli.request(&Request::RetryAll).unwrap();
    for r in server.take_requests().unwrap() {
        server.apply(&r, t(2)).unwrap();
    }
    assert_eq!(cli.list().unwrap()[0].next_attempt, t(2));
}

#[test]
fn faults_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&dir.path().join("q"), None).unwrap();
    // The directory vanished under a running server.
    fs::remove_dir_all(dir.path().join("q")).unwrap();
    let err = store.begin(msg(&["b@x"]), t(0), None).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.is_storage_fault());
    // A file where the directory should be.
    let file = dir.path().join("f");
    fs::write(&file, b"").unwrap();
    assert!(Store::open(&file.join("q"), None).is_err());
}
