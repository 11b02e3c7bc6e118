//! A queue on a real 1 MiB filesystem (tmpfs): running out of space is a typed error the
//! session will answer with 452, the half-written message leaves nothing behind, and
//! what was acknowledged before is intact.

use std::path::{Path, PathBuf};
use std::process::Command;

use qqmail_proxy::queue::store::{Store, StoreError};

use super::{new_message, read_body};

/// Unmounts on drop, also when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Mounted {
    std::fs::create_dir(at).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(at)
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "this test needs to mount a 1 MiB tmpfs (`mount -t tmpfs -o size=1m tmpfs DIR`): \
         run it as root, as CI does (mount said: {status:?})"
    );
    Mounted(at.to_path_buf())
}

#[test]
fn disk_full_refuses_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = mount_small_tmpfs(&dir.path().join("small"));
    let queue = dir.path().join("small/queue");
    let (store, _) = Store::open(&queue, None).unwrap();

    let bodies: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 200_000]).collect();
    let mut kept = Vec::new();
    for body in &bodies {
        let mut w = store
            .begin(new_message(), std::time::SystemTime::now(), None)
            .unwrap();
        w.write(body).unwrap();
        kept.push(w.commit().unwrap());
    }

    // 2 MiB into what is left of 1 MiB: the write or the commit must fail, as DiskFull.
    let mut w = store
        .begin(new_message(), std::time::SystemTime::now(), None)
        .unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    let result = (0..32)
        .try_for_each(|_| w.write(&chunk))
        .and_then(|()| w.commit().map(|_| ()));
    let err = result.expect_err("2 MiB fitted on a 1 MiB filesystem");
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(err.is_storage_fault());
    assert!(err.to_string().contains("no space left"), "{err}");

    let tmp_files = std::fs::read_dir(queue.join("tmp")).unwrap().count();
    assert_eq!(tmp_files, 0, "the half-written body is gone");
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), kept.len());
    for (env, body) in kept.iter().zip(&bodies) {
        assert_eq!(&read_body(&store, env), body, "acknowledged message intact");
    }
    assert_eq!(
        store.used_bytes(),
        600_000,
        "the failed message's bytes given back"
    );

    // Once space is freed, the queue takes messages again.
    store.remove(&kept[0].id).unwrap();
    let mut w = store
        .begin(new_message(), std::time::SystemTime::now(), None)
        .unwrap();
    w.write(&[b'q'; 100_000]).unwrap();
    w.commit().unwrap();
}
