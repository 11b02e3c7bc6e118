//! What a message's bytes go through between the client and the sink, as one value per
//! message with no I/O: the end-of-data framing under the session's line-ending rule
//! (`proto::smtp::framing`), then the header editor (`rewrite_sender = "header"`), and
//! the proxy's own refusals. The DATA loop (`data::stream_message`) only reads, asks
//! [`Pipeline::take`] what to hand on, and writes it to its sink.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use crate::proto::smtp::command::reply;
use crate::proto::smtp::framing::DataFraming;
use crate::proto::smtp::header::{self, HeaderCollector, Headers};

/// Why the proxy itself refuses a message, whatever the upstream would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// An ambiguous end-of-data sequence (SMTP smuggling): some servers would end the
    /// message there and read the rest as commands.
    Smuggling,
    /// With `rewrite_sender = "header"`, a header block over [`header::MAX_HEADER`]: its
    /// From could not be rewritten, and must not pass as written.
    HeaderTooLarge,
    /// With `rewrite_sender = "header"`, a header block holding a bare CR: a reader that
    /// breaks lines there would see a From the rewrite did not.
    HeaderBareCr,
}

impl Refusal {
    /// The reply to the end of data.
    pub(super) fn reply(self) -> &'static str {
        match self {
            Refusal::Smuggling => reply::SMUGGLING,
            Refusal::HeaderTooLarge => header::HEADER_TOO_LARGE,
            Refusal::HeaderBareCr => header::HEADER_BARE_CR,
        }
    }

    /// Why, for the log.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::Smuggling => "ambiguous end-of-data sequence (SMTP smuggling)",
            Refusal::HeaderTooLarge => "header block too large to rewrite its From",
            Refusal::HeaderBareCr => "bare CR in the header block, whose From must be rewritten",
        }
    }
}

/// What one [`Pipeline::take`] did.
pub(super) struct Step {
    /// Client bytes consumed (the message's, terminator included; never the next command's).
    pub taken: usize,
    /// The message ended in them.
    pub ended: bool,
    /// What to hand on now, if anything.
    pub out: Option<Bytes>,
}

/// One message on its way: framing, header editing, and whether the proxy refused it.
pub(super) struct Pipeline {
    framing: DataFraming,
    /// Holds the header block until it is whole (`rewrite_sender = "header"`); `None`
    /// once it has been handed on, or when headers pass as they are.
    headers: Option<HeaderCollector>,
    refused: Option<Refusal>,
}

impl Pipeline {
    /// A message framed by `framing`, its header block collected and edited when
    /// `headers` is given.
    pub(super) fn new(framing: DataFraming, headers: Option<HeaderCollector>) -> Pipeline {
        Pipeline {
            framing,
            headers,
            refused: None,
        }
    }

    /// Why the proxy refuses the message, once it does.
    pub(super) fn refused(&self) -> Option<Refusal> {
        self.refused
    }

    /// Takes the message's part of `buf` (all of it, or up to and including the end of
    /// data) and says what to hand on: nothing once the message is refused or while the
    /// header block is incomplete.
    pub(super) fn take(&mut self, buf: &mut BytesMut, account: &str) -> Step {
        let framed = self.framing.feed(buf);
        if framed.smuggling {
            // Some servers would end the message here and read the rest as commands:
            // never let them see it.
            self.refused.get_or_insert(Refusal::Smuggling);
        }
        let taken = framed.end.unwrap_or(buf.len());
        let ended = framed.end.is_some();
        let normalised = match framed.out {
            Cow::Owned(v) => Some(v),
            Cow::Borrowed(_) => None,
        };
        let chunk = buf.split_to(taken);
        let bytes = normalised.map_or_else(|| chunk.freeze(), Bytes::from);
        Step {
            taken,
            ended,
            out: self.edit(bytes, ended, account),
        }
    }

    /// What of `chunk` goes on now: all of it; nothing once the message is refused;
    /// with header editing, nothing until the header block is whole, then the edited
    /// block and what followed it (the collector is dropped), or nothing ever if the
    /// block cannot be edited (the message is then refused).
    fn edit(&mut self, chunk: Bytes, ended: bool, account: &str) -> Option<Bytes> {
        if self.refused.is_some() {
            return None;
        }
        let Some(h) = self.headers.as_mut() else {
            return Some(chunk);
        };
        let refusal = match h.feed(&chunk, ended, account) {
            Headers::NeedMore => return None,
            Headers::Ready(bytes) => {
                self.headers = None;
                return Some(Bytes::from(bytes));
            }
            Headers::TooLarge => Refusal::HeaderTooLarge,
            Headers::BareCr => Refusal::HeaderBareCr,
        };
        self.headers = None;
        self.refused = Some(refusal);
        None
    }
}
