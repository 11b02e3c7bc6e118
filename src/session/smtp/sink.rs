//! Where the DATA loop (`data::stream_message`) sends a message: the upstream (relay),
//! a queue writer (queue mode), or both (fallback), and what the loop hands back.

use super::data::{Interrupt, Refusal};
use crate::proto::smtp::command::reply;
use std::time::SystemTime;

use crate::queue::store::{NewMessage, Store, StoreError, Writer};
use crate::upstream::smtp::Reply;

/// Where the message's bytes go.
pub(super) enum Sink {
    /// The upstream (`Relay::up`), as they come.
    Upstream,
    /// A queue writer; failed once the store failed (the rest is read and dropped,
    /// and the client is told 452 4.3.1).
    Store(Box<Spool>),
    /// `fallback`: the upstream, and a copy into a queue writer that outlives an
    /// upstream failure (the rest of the message still goes into the copy).
    Both(Box<Spool>),
}

impl Sink {
    /// The reply when the message is lost without a better one.
    pub(super) fn lost_reply(&self) -> &'static str {
        match self {
            Sink::Upstream | Sink::Both(_) => reply::DATA_LOST,
            Sink::Store(_) => super::queued::STORE_FAULT,
        }
    }
}

/// A message read to its end.
pub(super) struct Streamed {
    /// The proxy refused it.
    pub refused: Option<Refusal>,
    /// The upstream interrupted it.
    pub interrupted: Option<(Interrupt, Option<Reply>)>,
    /// Bytes read from the client, terminator included.
    pub size: usize,
    /// Where it went.
    pub sink: Sink,
}

/// Message bytes gathered before one write to the queue's file: the relay's chunk size.
/// Each batch is written on tokio's blocking pool (a write can block on a slow or full
/// disk), so a message costs one hand-off per 64 KiB, not one per client packet.
const BATCH: usize = 64 * 1024;

/// The queue's copy of a message as it streams in: a [`Writer`] fed in [`BATCH`]es off
/// the async threads. Once the store fails, the failure replaces the writer (the rest is
/// dropped and the client is told 452 4.3.1, or in fallback the relay goes on alone).
pub(super) struct Spool {
    /// `None` only while a batch is being written.
    w: Option<Result<Writer, StoreError>>,
    buf: Vec<u8>,
    /// Batches handed to the blocking pool (for the tests).
    #[cfg(test)]
    batches: usize,
}

impl Spool {
    /// Over a writer just begun (or the failure to begin one).
    pub(super) fn new(w: Result<Writer, StoreError>) -> Spool {
        Spool {
            w: Some(w),
            buf: Vec::new(),
            #[cfg(test)]
            batches: 0,
        }
    }

    /// False once the store failed.
    pub(super) fn is_ok(&self) -> bool {
        matches!(self.w, Some(Ok(_)))
    }

    /// Adds a chunk of the message; `ended`: it is the last one, and ends with the final
    /// `.` line, which the store does not keep (see `queue`). The last chunk is written at
    /// once, so [`Spool::finish`] finds nothing pending.
    pub(super) async fn push(&mut self, bytes: &[u8], ended: bool) {
        if !self.is_ok() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if ended && self.buf.ends_with(b".\r\n") {
            self.buf.truncate(self.buf.len() - 3);
        }
        if ended || self.buf.len() >= BATCH {
            self.flush().await;
        }
    }

    /// Writes the gathered bytes on the blocking pool.
    async fn flush(&mut self) {
        let mut w = match self.w.take() {
            Some(Ok(w)) => w,
            other => {
                self.w = other;
                return;
            }
        };
        let mut buf = std::mem::take(&mut self.buf);
        let id = w.id().to_string();
        #[cfg(test)]
        {
            self.batches += 1;
        }
        let done = tokio::task::spawn_blocking(move || {
            let r = w.write(&buf);
            buf.clear();
            // A writer that failed is dropped here, off the async threads: its Drop
            // removes the temporary file.
            r.map(|()| (w, buf))
        })
        .await;
        self.w = Some(match done {
            Ok(Ok((w, buf))) => {
                self.buf = buf;
                Ok(w)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StoreError::io(
                "write",
                std::path::Path::new(&id),
                std::io::Error::other(e.to_string()),
            )),
        });
    }

    /// The writer, every byte pushed written, ready to commit (or drop).
    pub(super) fn finish(mut self) -> Result<Writer, StoreError> {
        match self.w.take() {
            Some(Ok(_)) if !self.buf.is_empty() => Err(StoreError::io(
                "write",
                std::path::Path::new("-"),
                std::io::Error::other("message copy not flushed"),
            )),
            Some(w) => w,
            None => Err(StoreError::io(
                "write",
                std::path::Path::new("-"),
                std::io::Error::other("message copy lost"),
            )),
        }
    }
}

/// Begins a queue writer on the blocking pool (it creates a file).
pub(super) async fn begin(
    store: &Store,
    msg: NewMessage,
    size_hint: Option<u64>,
) -> Result<Writer, StoreError> {
    let store = store.clone();
    let dir = store.dir().to_path_buf();
    tokio::task::spawn_blocking(move || store.begin(msg, SystemTime::now(), size_hint))
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::io(
                "create",
                &dir,
                std::io::Error::other(e.to_string()),
            ))
        })
}

#[cfg(test)]
mod tests;
