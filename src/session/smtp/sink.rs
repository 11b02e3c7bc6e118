//! Where the DATA loop (`data::stream_message`) sends a message: the upstream (relay),
//! a queue writer (queue mode), or both (fallback), and what the loop hands back.

use super::data::{Interrupt, Refusal};
use crate::proto::smtp::command::reply;
use crate::queue::store::{StoreError, Writer};
use crate::upstream::smtp::Reply;

/// Where the message's bytes go.
pub(super) enum Sink {
    /// The upstream (`Relay::up`), as they come.
    Upstream,
    /// A queue writer; an `Err` once the store failed (the rest is read and dropped,
    /// and the client is told 452 4.3.1).
    Store(Box<Result<Writer, StoreError>>),
    /// `fallback`: the upstream, and a copy into a queue writer that outlives an
    /// upstream failure (the rest of the message still goes into the copy).
    Both(Box<Result<Writer, StoreError>>),
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

/// Writes a chunk into the queue writer (unless it already failed; the failure then
/// replaces it). The store keeps the body without the final `.` line (see `queue`).
pub(super) fn store_chunk(w: &mut Result<Writer, StoreError>, bytes: &[u8], ended: bool) {
    let body = if ended {
        bytes.strip_suffix(b".\r\n").unwrap_or(bytes)
    } else {
        bytes
    };
    let failed = match w {
        Ok(writer) => writer.write(body).err(),
        Err(_) => None,
    };
    if let Some(e) = failed {
        *w = Err(e);
    }
}
