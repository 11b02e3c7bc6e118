use super::*;
use crate::activity::clock::HOUR;
use crate::activity::tests::end;
use crate::activity::Time;
use crate::proto::Protocol;
use crate::upstream::UpstreamError;

fn busy_record(at: i64) -> Activity {
    let a = Activity::default();
    for (i, c) in ["192.0.2.1", "192.0.2.2", "192.0.2.1"].iter().enumerate() {
        let mut e = end(at + i as i64, c);
        e.messages = 1;
        e.failed = i == 1;
        e.error = (i == 1).then(|| "535 5.7.8 Error: authentication failed".into());
        a.record(e);
    }
    let e = UpstreamError::Rejected {
        server: "smtp.qq.com:465".into(),
        email: "me@qq.com".into(),
        reply: b"535 Login Fail\r\n".to_vec(),
    };
    a.upstream_login(("main", Protocol::Smtp, "smtp.qq.com:465"), Err(&e));
    a
}

#[test]
fn round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let at = 1_796_601_600 - 30; // 30 s before a midnight
    let a = busy_record(at);
    let now = Time::from_unix(at + 60);
    write(&path(&state), &a.snapshot_at(now)).unwrap();
    // Restarted: the same record, the hours before and after midnight in their buckets.
    let back = load(&state);
    assert_eq!(back.snapshot_at(now), a.snapshot_at(now));
    let hours = back.snapshot_at(now).hourly;
    assert_eq!((hours[22].messages, hours[22].failures), (3, 1));
    assert_eq!(hours[23].hour.unix() - hours[22].hour.unix(), HOUR);
    // Private, and no temporary file left.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path(&state)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
    }
    let names: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [FILE]);
}

#[test]
fn unreadable_files_start_an_empty_record() {
    let good = serde_json::to_vec(&busy_record(1000).snapshot()).unwrap();
    let future =
        String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"version\":1", "\"version\":2", 1);
    let truncated = good[..good.len() / 2].to_vec();
    // (file contents, read back as: Some(true) = a record, Some(false) = none, None = error)
    #[rustfmt::skip]
    let cases: [(Option<Vec<u8>>, Option<bool>); 7] = [
        (None, Some(false)),
        (Some(good), Some(true)),
        (Some(truncated), None),
        (Some(future.into_bytes()), None),
        (Some(b"".to_vec()), None),
        (Some(b"\xff\xfe garbage".to_vec()), None),
        (Some(vec![b' '; MAX_FILE as usize + 1]), None),
    ];
    for (contents, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        if let Some(c) = &contents {
            fs::write(&p, c).unwrap();
        }
        let got = read(&p);
        let what = contents.as_ref().map(|c| c.len());
        assert_eq!(
            got.as_ref().ok().map(Option::is_some),
            want,
            "{what:?}: {got:?}"
        );
        let loaded = load(dir.path()).snapshot();
        assert_eq!(loaded.recent.is_empty(), want != Some(true), "{what:?}");
    }
}

#[test]
fn a_directory_in_the_way_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(path(dir.path())).unwrap();
    assert!(matches!(
        read(&path(dir.path())),
        Err(PersistError::Io { .. })
    ));
    let err = write(&path(dir.path()), &Activity::default().snapshot()).unwrap_err();
    assert!(err.to_string().contains(FILE), "{err}");
}

#[tokio::test(start_paused = true)]
async fn written_after_changes_at_most_every_few_seconds_and_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = path(dir.path());
    let a = Arc::new(Activity::default());
    let writer = spawn(a.clone(), dir.path());
    let count = || read(&p).unwrap().map_or(0, |s| s.recent.len());
    // Nothing changed: nothing written.
    tokio::time::sleep(WRITE_EVERY * 2).await;
    assert!(!p.exists());
    // A change is written at once ...
    a.record(end(1, "192.0.2.1"));
    until(|| count() == 1).await;
    // ... the next ones no sooner than WRITE_EVERY after it.
    a.record(end(2, "192.0.2.1"));
    tokio::time::sleep(WRITE_EVERY / 2).await;
    assert_eq!(count(), 1);
    until(|| count() == 2).await;
    // At shutdown, what changed since the last write.
    a.record(end(3, "192.0.2.1"));
    writer.finish().await;
    assert_eq!(count(), 3);
}

/// Waits (in paused time, by steps of 100 ms, at most a minute) until `done`.
async fn until(done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not written in time");
}
