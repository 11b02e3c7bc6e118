//! Receiving one message into the queue: the body streams into a temporary file with no
//! fsync (so `fallback` mode, which copies every relayed message here and keeps the copy
//! only when the upstream fails temporarily, costs a page-cache write per chunk), and
//! [`Writer::commit`] makes it durable before the client may be told 250.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::envelope::{BodySum, Envelope, Recipient};
use super::{fsx, QueueId, Store, StoreError};

/// Buffer in front of the temporary body file: one write(2) per 64 KiB, the relay's
/// chunk size, whatever size the client's packets were.
const WRITE_BUF: usize = 64 * 1024;

/// What the session knows when a message starts (after the last `RCPT TO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The configured account that will deliver it.
    pub account: String,
    /// `MAIL FROM` as it will be sent upstream (after the sender rewrite).
    pub sender: String,
    /// The client said `MAIL FROM:<>`: never bounce this message.
    pub null_sender: bool,
    /// The accepted recipients, in order.
    pub recipients: Vec<String>,
}

/// A message being received. Dropping it (or [`Writer::abort`]) removes the temporary
/// file and gives back its share of `max_size`: nothing was acknowledged.
#[derive(Debug)]
pub struct Writer {
    store: Store,
    id: QueueId,
    msg: NewMessage,
    queued_at: SystemTime,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    len: u64,
    /// Set once committed: Drop then leaves the files and the accounting alone.
    done: bool,
}

impl Store {
    /// Starts receiving a message that arrived at `now`. `size_hint` (the client's
    /// `SIZE=`, RFC 1870) lets a message that cannot fit be refused before its body is
    /// sent; the limit is checked again as the body streams in.
    pub fn begin(
        &self,
        msg: NewMessage,
        now: SystemTime,
        size_hint: Option<u64>,
    ) -> Result<Writer, StoreError> {
        self.check_room(size_hint.unwrap_or(0))?;
        // A collision (same microsecond, same 32 random bits) only costs another draw.
        let (id, tmp, file) = loop {
            let id = QueueId::generate(now);
            let tmp = self.tmp_path(&format!("{id}.body"));
            match fsx::create_new(&tmp) {
                Ok(f) if !self.env_path(&id).exists() => break (id, tmp, f),
                Ok(_) => {
                    let _ = fs::remove_file(&tmp);
                }
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        };
        Ok(Writer {
            store: self.clone(),
            id,
            msg,
            queued_at: now,
            tmp,
            file: Some(BufWriter::with_capacity(WRITE_BUF, file)),
            hasher: Sha256::new(),
            len: 0,
            done: false,
        })
    }
}

impl Writer {
    /// The ID the message will have once committed.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends body bytes: everything after the `354` up to, not including, the final
    /// `.` line, exactly as the relay forwards it (see the module docs of
    /// [`crate::queue`]). Fails with [`StoreError::Full`] past `max_size`, or with the
    /// filesystem's fault; the caller then drops the writer.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let n = chunk.len() as u64;
        self.store.reserve(n)?;
        self.len += n;
        self.hasher.update(chunk);
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed());
        };
        file.write_all(chunk)
            .map_err(|e| StoreError::io("write", &self.tmp, e))
    }

    /// Makes the message durable: the body is flushed and fsync'd and renamed into the
    /// queue, then the envelope is written beside it (temporary file, fsync, rename), and
    /// the directory is fsync'd. Only when this returns `Ok` may the client get 250; the
    /// message then exists, and a crash at any later instant cannot lose it. On `Err`
    /// nothing is left behind.
    pub fn commit(mut self) -> Result<Envelope, StoreError> {
        let file = self.file.take().ok_or_else(|| self.closed())?;
        let file = file
            .into_inner()
            .map_err(|e| StoreError::io("write", &self.tmp, e.into_error()))?;
        file.sync_data()
            .map_err(|e| StoreError::io("fsync", &self.tmp, e))?;
        drop(file);
        let store = self.store.clone();
        let body = store.body_path(&self.id);
        fsx::rename(&self.tmp, &body)?;
        let env = Envelope {
            id: self.id.clone(),
            account: std::mem::take(&mut self.msg.account),
            sender: std::mem::take(&mut self.msg.sender),
            null_sender: self.msg.null_sender,
            recipients: self
                .msg
                .recipients
                .drain(..)
                .map(Recipient::pending)
                .collect(),
            queued_at: self.queued_at,
            next_attempt: self.queued_at,
            attempts: 0,
            last_error: None,
            possibly_duplicated: false,
            body: BodySum {
                len: self.len,
                sha256: self.hasher.clone().finalize().into(),
            },
        };
        let written = fsx::write_replace(
            &store.tmp_path(&format!("{}.env", self.id)),
            &store.env_path(&self.id),
            &env.encode(),
        )
        .and_then(|()| store.sync_msg_dir());
        if let Err(e) = written {
            // Without its envelope the body is not a message: take it back out (if even
            // this fails, the scan at the next start removes it as an orphan).
            let _ = fs::remove_file(store.env_path(&self.id));
            let _ = fs::remove_file(&body);
            return Err(e);
        }
        self.done = true;
        Ok(env)
    }

    /// Gives up on the message (the client left, or the upstream took it in `fallback`).
    pub fn abort(self) {}

    fn closed(&self) -> StoreError {
        StoreError::Io {
            op: "write",
            path: self.tmp.clone(),
            source: std::io::Error::other("writer already closed"),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        drop(self.file.take());
        let _ = fs::remove_file(&self.tmp);
        self.store.inner.used.fetch_sub(self.len, Ordering::AcqRel);
    }
}
