//! A queue that runs out of room: on a real 1 MiB filesystem (tmpfs), first through the
//! store (a typed error, the half-written message leaves nothing behind, what was
//! acknowledged before is intact), then through an SMTP session of the real binary, and
//! over `[queue] max_size`: the client gets `452 4.3.1`, never 250, with a clear log
//! line; every message acknowledged before is delivered once the upstream is up; and
//! once deliveries freed the room, new messages are taken again. Last, a disk that fills
//! up during a delivery: the new state cannot be written, yet a recipient the upstream
//! accepted is not sent the message again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qqmail_proxy::queue::store::{Store, StoreError};

use super::session::{logged_in, queue_section, start};
use super::{new_message, read_body};
use crate::smtp::{dot_stuff, recorded_form, Client, RCPT, SENDER, WAIT};
use crate::support::ca::TestCa;
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, Flap, SmtpOptions};

/// Time for the queued messages to reach the upstream once it is up (a retry is at most
/// `retry_max` = 2 s away).
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// Unmounts on drop, also when the test fails. Lazily (`-l`): a proxy killed by a
/// failing test may not have been reaped yet, and a busy mount must not outlive the test.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
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

#[tokio::test]
async fn disk_full_through_a_session_is_452_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = mount_small_tmpfs(&dir.path().join("small"));
    let queue = queue_section(&dir.path().join("small/queue"), "retry_max = \"2s\"\n");
    let (ca, fake, proxy) = down_upstream_and_proxy(&queue).await;
    let mut c = logged_in(&proxy).await;
    // 200 KB scans into 1 MiB: a few fit, then the disk is full.
    let (acked, refusal) = send_until_refused(&mut c, 200_000).await;
    assert!(refusal.starts_with("452 4.3.1 "), "{refusal}");
    assert!(
        acked.len() >= 3,
        "{} of 200 KB fitted in 1 MiB",
        acked.len()
    );
    let line = proxy
        .wait_for_log("the queue could not store it", WAIT)
        .await;
    assert!(line.contains("no space left on the device"), "{line}");
    // Still full: refused again, and the session goes on.
    let r = c
        .send_message(&[RCPT], &dot_stuff(&scan(99, 200_000)))
        .await;
    assert!(r.starts_with("452 4.3.1 "), "{r}");
    delivered_then_taken_again(&fake, &mut c, &acked, &dir.path().join("small/queue")).await;
    assert!(proxy.terminate().await.success());
    drop(ca);
}

#[tokio::test]
async fn over_max_size_through_a_session_is_452_and_loses_nothing() {
    let spool = tempfile::tempdir().unwrap();
    let extra = "retry_max = \"2s\"\nmax_size = 250000\n";
    let (ca, fake, proxy) = down_upstream_and_proxy(&queue_section(spool.path(), extra)).await;
    let mut c = logged_in(&proxy).await;
    // 100 KB scans into 250 KB: two fit; the third goes over while it streams in.
    let (acked, refusal) = send_until_refused(&mut c, 100_000).await;
    assert!(refusal.starts_with("452 4.3.1 "), "{refusal}");
    assert_eq!(acked.len(), 2, "two 100 KB messages in 250 KB");
    let line = proxy
        .wait_for_log("the queue could not store it", WAIT)
        .await;
    assert!(line.contains("max_size"), "{line}");
    // Once over it, a declared SIZE= that does not fit is refused at MAIL already.
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=100000")).await;
    assert!(r.starts_with("452 4.3.1 "), "{r}");
    delivered_then_taken_again(&fake, &mut c, &acked, spool.path()).await;
    assert!(proxy.terminate().await.success());
    drop(ca);
}

/// The disk fills up while a message is being delivered: its first recipient is taken,
/// the second deferred, and the new state cannot be written. The retry must still go to
/// the second recipient only: a recipient the upstream accepted is never sent the
/// message again (issue 12), full disk or not.
#[tokio::test]
async fn disk_full_at_delivery_never_resends_to_a_delivered_recipient() {
    const OTHER: &str = "second@example.com";
    let dir = tempfile::tempdir().unwrap();
    let _mount = mount_small_tmpfs(&dir.path().join("small"));
    let queue = queue_section(&dir.path().join("small/queue"), "retry_max = \"2s\"\n");
    let ca = TestCa::new("it-queue-full-rcpt CA");
    let opts =
        SmtpOptions::implicit(&ca).rcpt_replies(OTHER, &["451 4.2.1 Mailbox busy, try later"]);
    let fake = FakeSmtp::start(opts);
    fake.set_flap(Flap::Refusing);
    let (proxy, _builder) = start(&ca, fake.config_server(), &queue).await;
    let mut c = logged_in(&proxy).await;
    let text = scan(1, 10_000);
    let r = c.send_message(&[RCPT, OTHER], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    fill(&dir.path().join("small/filler"));
    fake.set_flap(Flap::Up);
    let got = fake.wait_messages(2, DELIVERY_WAIT).await;
    assert_eq!(got[0].rcpt_to, [RCPT], "first attempt: {got:?}");
    assert_eq!(
        got[1].rcpt_to,
        [OTHER],
        "the retry went again to a delivered recipient"
    );
    assert!(got.iter().all(|m| m.data == recorded_form(&text)));
    proxy.wait_for_log("queue: delivered", WAIT).await;
    let line = proxy.wait_for_log("could not record", WAIT).await;
    assert!(line.contains("no space left"), "{line}");
    assert!(proxy.terminate().await.success());
}

/// Writes `path` until the filesystem has not one byte left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let buf = vec![0u8; 64 * 1024];
    for chunk in [64 * 1024, 4096, 1] {
        while f.write_all(&buf[..chunk]).is_ok() {}
    }
    let err = f.write_all(b"x").and_then(|()| f.sync_all());
    assert!(err.is_err(), "the filesystem never filled up");
}

/// A fake upstream that refuses every connection (down until told otherwise), and the
/// proxy in queue mode in front of it with `[queue]` section `queue`.
async fn down_upstream_and_proxy(queue: &str) -> (TestCa, FakeSmtp, Proxy) {
    let ca = TestCa::new("it-queue-full CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    fake.set_flap(Flap::Refusing);
    let (proxy, _builder) = start(&ca, fake.config_server(), queue).await;
    (ca, fake, proxy)
}

/// A scan of about `size` bytes, told apart from the others by `n`.
fn scan(n: usize, size: usize) -> Vec<u8> {
    let mut m =
        format!("From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: scan {n}\r\n\r\n").into_bytes();
    let line = format!("{n:03} {}\r\n", "x".repeat(70));
    while m.len() < size {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// Sends scans of `size` bytes until one is not queued; returns the queued ones and
/// the reply that refused the next.
async fn send_until_refused(c: &mut Client, size: usize) -> (Vec<Vec<u8>>, String) {
    let mut acked = Vec::new();
    for n in 0..20 {
        let text = scan(n, size);
        let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
        if !r.starts_with("250 ") {
            return (acked, r);
        }
        assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
        acked.push(text);
    }
    panic!("20 scans of {size} bytes were all queued");
}

/// The upstream comes up: exactly the acknowledged messages arrive, byte for byte (none
/// of the refused ones); their deliveries free the room, and a new message is queued
/// and delivered.
async fn delivered_then_taken_again(
    fake: &FakeSmtp,
    c: &mut Client,
    acked: &[Vec<u8>],
    queue: &Path,
) {
    fake.set_flap(Flap::Up);
    let got = fake.wait_messages(acked.len(), DELIVERY_WAIT).await;
    let mut want: Vec<Vec<u8>> = acked.iter().map(|t| recorded_form(t)).collect();
    let mut have: Vec<Vec<u8>> = got.iter().map(|m| m.data.clone()).collect();
    want.sort();
    have.sort();
    assert!(have == want, "delivered differs from acknowledged: {got:?}");
    // The delivered messages' files go once their batch's removals are durable (one
    // directory fsync a batch): wait for the spool to be empty, which frees the room.
    let msg = queue.join("msg");
    super::until(DELIVERY_WAIT, || {
        std::fs::read_dir(&msg).map_or(true, |mut d| d.next().is_none())
    })
    .await;
    let text = scan(100, 50_000);
    let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    let got = fake.wait_messages(acked.len() + 1, DELIVERY_WAIT).await;
    assert!(
        got.last().is_some_and(|m| m.data == recorded_form(&text)),
        "{got:?}"
    );
    assert_eq!(
        fake.messages().len(),
        acked.len() + 1,
        "nothing else went up"
    );
}
