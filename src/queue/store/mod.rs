//! The durable spool: one message = an envelope file (`msg/ID.env`, small, rewritten
//! whole on every state change) beside a body file (`msg/ID.body`, written once).
//!
//! ```text
//! dir/            0700
//!   msg/          ID.env + ID.body     the queue; a message exists iff its ID.env does
//!   tmp/          files being written  never a message; emptied at start
//!   corrupt/      files that failed their checks, moved aside, never deleted
//!   ctl/          requests from `qqmail-proxy queue retry|delete` for the server
//!   daily/        per-account counts for `daily_limit` (see `daily`)
//! ```
//!
//! Durability (what a 250 promises): the body is fsync'd, renamed into `msg/`, the
//! envelope written to `tmp/`, fsync'd, renamed into `msg/`, and `msg/` fsync'd, before
//! [`Writer::commit`] returns. A state change rewrites only the envelope the same way.
//! Removal deletes the envelope first, so a crash halfway leaves an orphan body, which the
//! next start removes (it was either never acknowledged or already delivered). The
//! deliverer removes a batch's delivered messages with one directory fsync
//! ([`Store::unlink_envelope`], then [`Store::finish_removals`]): a removal survives a
//! crash of the process at once, and a power cut from that fsync on; before it, the
//! message may come back and be sent again, the duplicate window Postfix has too.
//!
//! Blocking: every call here uses `std::fs`, so the async callers run them on tokio's
//! blocking pool (the store and a [`Writer`] are `Send`): `commit`, `update`, `remove`
//! and `open` fsync, `list` reads a directory, and even [`Writer::write`] can block on a
//! slow or full disk; the session feeds it in 64 KiB batches, one hand-off per batch.
//!
//! Several processes: the server owns every write. `qqmail-proxy queue list|show` only
//! read (a rename is atomic, so a reader sees a whole old or a whole new envelope), and
//! `queue retry|delete` drop a request file into `ctl/` ([`Store::request`]); the server
//! takes them ([`Store::take_requests`]) on its periodic scan and applies them between
//! deliveries, so an operator's delete can never race a delivery's state write. Requests
//! made while no server runs are applied at its next start.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

mod daily;
pub mod envelope;
mod error;
mod fsx;
mod id;
mod scan;
mod writer;

pub use daily::DailyCount;
pub use envelope::{BodySum, Envelope, LastError, RcptState, Recipient};
pub use error::StoreError;
pub use id::{QueueId, ID_LEN};
pub use scan::{Recovery, Request};
pub use writer::{NewMessage, Writer};

/// A message whose envelope [`Store::unlink_envelope`] removed, waiting for
/// [`Store::finish_removals`].
#[derive(Debug)]
pub struct Removed {
    id: QueueId,
    len: u64,
}

/// The queue directory, shared by every task of the process.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    msg: PathBuf,
    tmp: PathBuf,
    corrupt: PathBuf,
    ctl: PathBuf,
    daily: PathBuf,
    /// `[queue] max_size`; `None` = no limit.
    max_size: Option<u64>,
    /// Bytes of stored bodies plus bodies being received.
    used: AtomicU64,
    /// Readings of `msg/` by [`Store::list`].
    lists: AtomicU64,
    /// fsyncs of `msg/`.
    msg_syncs: AtomicU64,
}

impl Store {
    fn at(dir: &Path, max_size: Option<u64>) -> Store {
        Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                msg: dir.join("msg"),
                tmp: dir.join("tmp"),
                corrupt: dir.join("corrupt"),
                ctl: dir.join("ctl"),
                daily: dir.join("daily"),
                max_size,
                used: AtomicU64::new(0),
                lists: AtomicU64::new(0),
                msg_syncs: AtomicU64::new(0),
            }),
        }
    }

    /// For the server, at start: creates the directories (0700) if needed, empties
    /// `tmp/`, removes orphan bodies, moves what fails its checks to `corrupt/` (with a
    /// log line), and returns every message sorted by next attempt.
    pub fn open(dir: &Path, max_size: Option<u64>) -> Result<(Store, Recovery), StoreError> {
        let store = Store::at(dir, max_size);
        let i = &store.inner;
        for d in [dir, &i.msg, &i.tmp, &i.corrupt, &i.ctl, &i.daily].map(AsRef::<Path>::as_ref) {
            fsx::create_dir(d)?;
        }
        let recovery = store.recover()?;
        let used = recovery.messages.iter().map(|e| e.body.len).sum();
        store.inner.used.store(used, Ordering::Release);
        Ok((store, recovery))
    }

    /// For the `queue` commands while a server may run: opens an existing queue without
    /// creating, cleaning or moving anything.
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        let store = Store::at(dir, None);
        for d in [&store.inner.msg, &store.inner.ctl] {
            fs::metadata(d).map_err(|e| StoreError::io("open", d, e))?;
        }
        Ok(store)
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes in use (stored bodies plus bodies being received): the queue-size metric.
    pub fn used_bytes(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Refuses (with [`StoreError::Full`]) a message of `size` bytes that would take the
    /// queue past `max_size`; the session asks at `MAIL FROM` with the client's `SIZE=`.
    pub fn check_room(&self, size: u64) -> Result<(), StoreError> {
        let used = self.used_bytes();
        match self.inner.max_size {
            // A new message counts as at least one byte: a full queue takes nothing.
            Some(max) if used.saturating_add(size.max(1)) > max => {
                Err(StoreError::Full { used, max })
            }
            _ => Ok(()),
        }
    }

    /// Takes `n` more bytes of `max_size`, or refuses them.
    fn reserve(&self, n: u64) -> Result<(), StoreError> {
        let used = self.inner.used.fetch_add(n, Ordering::AcqRel) + n;
        match self.inner.max_size {
            Some(max) if used > max => {
                self.inner.used.fetch_sub(n, Ordering::AcqRel);
                Err(StoreError::Full {
                    used: used - n,
                    max,
                })
            }
            _ => Ok(()),
        }
    }

    /// How many times [`Store::list`] has read every envelope in the directory: what a
    /// backlog costs the deliverer, which should read it once per pass, not per batch.
    pub fn lists(&self) -> u64 {
        self.inner.lists.load(Ordering::Relaxed)
    }

    /// How many times `msg/` was fsync'd: each costs a disk flush (milliseconds), so
    /// this is what bounds the deliverer's rate if it grows per message.
    pub fn msg_syncs(&self) -> u64 {
        self.inner.msg_syncs.load(Ordering::Relaxed)
    }

    /// Flushes `msg/`'s entries to disk (renames and unlinks in it become durable).
    fn sync_msg_dir(&self) -> Result<(), StoreError> {
        self.inner.msg_syncs.fetch_add(1, Ordering::Relaxed);
        fsx::sync_dir(&self.inner.msg)
    }

    /// Reads one message's envelope.
    pub fn get(&self, id: &QueueId) -> Result<Envelope, StoreError> {
        let path = self.env_path(id);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(id.clone()),
            _ => StoreError::io("read", &path, e),
        })?;
        let env = Envelope::decode(&bytes).map_err(|why| StoreError::Corrupt {
            path: path.clone(),
            why,
        })?;
        if env.id != *id {
            return Err(StoreError::Corrupt {
                path,
                why: format!("holds message {}", env.id),
            });
        }
        Ok(env)
    }

    /// Writes a message's new state (delivered recipients, attempts, next attempt, last
    /// error) atomically and durably. Fails with `NotFound` if it was removed.
    pub fn update(&self, env: &Envelope) -> Result<(), StoreError> {
        let dest = self.env_path(&env.id);
        if !dest.exists() {
            return Err(StoreError::NotFound(env.id.clone()));
        }
        let tmp = self.tmp_path(&format!("{}.env.{:08x}", env.id, rand::random::<u32>()));
        fsx::write_replace(&tmp, &dest, &env.encode())?;
        self.sync_msg_dir()
    }

    /// Sets a message's next attempt to `now` (the server's side of `queue retry`).
    pub fn retry_now(&self, id: &QueueId, now: SystemTime) -> Result<(), StoreError> {
        let mut env = self.get(id)?;
        env.next_attempt = now;
        self.update(&env)
    }

    /// Removes a message (delivered, bounced, or deleted by the operator): the envelope
    /// first, durably, then the body.
    pub fn remove(&self, id: &QueueId) -> Result<(), StoreError> {
        let env = self.env_path(id);
        if !env.exists() {
            return Err(StoreError::NotFound(id.clone()));
        }
        let body = self.body_path(id);
        let len = fs::metadata(&body).map_or(0, |m| m.len());
        fsx::remove(&env)?;
        self.sync_msg_dir()?;
        let _ = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(len))
            });
        if let Err(e) = fsx::remove(&body) {
            // Harmless: the next start removes it as an orphan.
            warn!(id = %id, error = %e, "queue: could not remove a delivered message's body");
        }
        Ok(())
    }

    /// The first half of removing a message: its envelope is unlinked (the message no
    /// longer exists for [`Store::list`] and [`Store::get`]), not yet durably. Several
    /// of these then share one directory fsync in [`Store::finish_removals`], which also
    /// removes the bodies: a batch of deliveries costs one disk flush, not one each.
    pub fn unlink_envelope(&self, id: &QueueId) -> Result<Removed, StoreError> {
        let env = self.env_path(id);
        if !env.exists() {
            return Err(StoreError::NotFound(id.clone()));
        }
        let len = fs::metadata(self.body_path(id)).map_or(0, |m| m.len());
        fsx::remove(&env)?;
        Ok(Removed {
            id: id.clone(),
            len,
        })
    }

    /// Makes the unlinks of `removed` durable with one fsync of `msg/`, then removes
    /// their bodies (so an envelope never outlives its body on disk) and gives their size
    /// back to `max_size`. On error the bodies stay; the next start removes them as
    /// orphans.
    pub fn finish_removals(&self, removed: Vec<Removed>) -> Result<(), StoreError> {
        if removed.is_empty() {
            return Ok(());
        }
        self.sync_msg_dir()?;
        for r in removed {
            let _ = self
                .inner
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some(u.saturating_sub(r.len))
                });
            if let Err(e) = fsx::remove(&self.body_path(&r.id)) {
                warn!(id = %r.id, error = %e, "queue: could not remove a delivered message's body");
            }
        }
        Ok(())
    }

    /// Opens a message's body for sending, checked as it is read.
    pub fn open_body(&self, env: &Envelope) -> Result<BodyReader, StoreError> {
        let path = self.body_path(&env.id);
        let file = fs::File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
        Ok(BodyReader {
            file,
            check: BodyCheck::new(env.body),
            path,
        })
    }

    /// Reads a whole body and checks its length and checksum (`queue show --check`, tests).
    pub fn verify(&self, env: &Envelope) -> Result<(), StoreError> {
        let mut r = self.open_body(env)?;
        let mut buf = vec![0u8; 64 * 1024];
        while r.read(&mut buf)? > 0 {}
        r.finish()
    }

    /// Moves a message's files to `corrupt/` and logs why; never deletes them.
    pub fn quarantine(&self, id: &QueueId, why: &str) -> Result<(), StoreError> {
        for name in [format!("{id}.env"), format!("{id}.body")] {
            let from = self.inner.msg.join(&name);
            if !from.exists() {
                continue;
            }
            let mut to = self.inner.corrupt.join(&name);
            let mut n = 1;
            while to.exists() {
                to = self.inner.corrupt.join(format!("{name}.{n}"));
                n += 1;
            }
            fsx::rename(&from, &to)?;
        }
        fsx::sync_dir(&self.inner.corrupt)?;
        self.sync_msg_dir()?;
        warn!(id = %id, why, dir = %self.inner.corrupt.display(), "queue: damaged message moved aside (not deleted)");
        Ok(())
    }

    fn env_path(&self, id: &QueueId) -> PathBuf {
        self.inner.msg.join(format!("{id}.env"))
    }

    /// Where a message's body is (the deliverer may open it with `tokio::fs` and feed a
    /// [`BodyCheck`]).
    pub fn body_path(&self, id: &QueueId) -> PathBuf {
        self.inner.msg.join(format!("{id}.body"))
    }

    fn tmp_path(&self, name: &str) -> PathBuf {
        self.inner.tmp.join(name)
    }

    fn removed_orphan(&self, path: &Path) {
        match fsx::remove(path) {
            Ok(()) => {
                info!(path = %path.display(), "queue: removed a file no message owns (never acknowledged)")
            }
            Err(e) => warn!(error = %e, "queue: could not remove an orphan file"),
        }
    }
}

/// Checks a body's length and SHA-256 as it streams to the upstream. The deliverer sends
/// the final `.` only after [`BodyCheck::finish`] said yes, so a damaged body is never
/// delivered (the upstream discards a message whose connection drops before the dot).
#[derive(Debug, Clone)]
pub struct BodyCheck {
    want: BodySum,
    len: u64,
    hasher: Sha256,
}

impl BodyCheck {
    /// Expects `want`.
    pub fn new(want: BodySum) -> BodyCheck {
        BodyCheck {
            want,
            len: 0,
            hasher: Sha256::new(),
        }
    }

    /// Feeds the next bytes read.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    /// True when everything fed matches the envelope's length and checksum.
    pub fn finish(self) -> bool {
        self.len == self.want.len && <[u8; 32]>::from(self.hasher.finalize()) == self.want.sha256
    }
}

/// A body being read, checked on the way ([`Store::open_body`]).
#[derive(Debug)]
pub struct BodyReader {
    file: fs::File,
    check: BodyCheck,
    path: PathBuf,
}

impl BodyReader {
    /// Reads the next bytes (0 at the end).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, StoreError> {
        let n = self
            .file
            .read(buf)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        self.check.update(&buf[..n]);
        Ok(n)
    }

    /// After the last read: `Corrupt` unless length and checksum match.
    pub fn finish(self) -> Result<(), StoreError> {
        let (got, want) = (self.check.len, self.check.want.len);
        if self.check.finish() {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path,
                why: format!("body is {got} bytes, or its checksum differs (want {want} bytes)"),
            })
        }
    }
}

#[cfg(test)]
mod tests;
