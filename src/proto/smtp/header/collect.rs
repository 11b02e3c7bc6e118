//! Holds the start of a DATA stream until its header block is whole, so that it can be
//! edited before any of it reaches the upstream: its From rewritten (`rewrite_sender =
//! "header"`), missing fields added (`add_missing_headers`). With the rewrite, a header
//! block over [`MAX_HEADER`] is refused instead of passing unchecked (a From hidden past
//! the limit would otherwise reach the recipient as written); when fields are only added,
//! such a block passes as it is.

use super::{add_missing, rewrite_originator, Missing};

/// Largest header block (blank line included) taken for `rewrite_sender = "header"`. Real
/// header blocks are a few KiB; Postfix's `header_size_limit` is 100 KiB per field.
pub const MAX_HEADER: usize = 256 * 1024;

/// The reply to a message whose header block is over [`MAX_HEADER`] (RFC 3463 5.3.4:
/// message too big for system). It says why, since the client's author must fix it.
pub const HEADER_TOO_LARGE: &str = "552 5.3.4 Error: message header block over 256 KiB; \
    its From cannot be rewritten to the account (rewrite_sender = \"header\"); message rejected\r\n";

/// The reply to a message whose header block holds a bare CR (RFC 5322 §2.2 allows CR
/// only before LF). Fields are told apart at LF; a reader that also breaks lines at a
/// bare CR would see a field the rewrite did not (`Subject: x<CR>From: boss@…`), so the
/// From could pass unrewritten.
pub const HEADER_BARE_CR: &str = "554 5.6.0 Error: bare CR in the message header; its From \
    cannot be rewritten safely (rewrite_sender = \"header\"); message rejected\r\n";

/// What [`HeaderCollector::feed`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Headers {
    /// The header block is not complete yet: nothing may be sent.
    NeedMore,
    /// Everything collected so far, header block rewritten: send it, then the rest of the
    /// message as it comes.
    Ready(Vec<u8>),
    /// The header block is over the limit: refuse the message, send none of it.
    TooLarge,
    /// The header block holds a bare CR: refuse the message, send none of it.
    BareCr,
}

/// Collects DATA bytes (as the client sent them: dot-stuffed, terminator included) until
/// the header block ends (RFC 5322 §2.1: at the first empty line) or the message does.
/// Each byte is scanned once, however small the reads: a client that trickles a large
/// header byte by byte costs linear time, not quadratic. Once `feed` returns anything but
/// [`Headers::NeedMore`], the collector is done and is dropped by its owner.
#[derive(Debug, Clone)]
pub struct HeaderCollector {
    limit: usize,
    /// `rewrite_sender = "header"`: the From is rewritten, and a block that cannot be
    /// checked (too large, bare CR) refuses the message.
    rewrite: bool,
    /// `add_missing_headers`: what to add when missing.
    missing: Option<Missing>,
    buf: Vec<u8>,
    /// Start of the line not yet ended by an LF.
    line_start: usize,
}

impl HeaderCollector {
    /// A collector that rewrites the From, refusing header blocks over `limit` bytes
    /// ([`MAX_HEADER`] in the relay).
    pub fn new(limit: usize) -> HeaderCollector {
        HeaderCollector {
            limit,
            rewrite: true,
            missing: None,
            buf: Vec::new(),
            line_start: 0,
        }
    }

    /// A collector that only adds missing fields: a header block over `limit` bytes (or
    /// with a bare CR) passes as it is, since nothing in it would be changed.
    pub fn adding_only(limit: usize, missing: Missing) -> HeaderCollector {
        HeaderCollector {
            rewrite: false,
            missing: Some(missing),
            ..HeaderCollector::new(limit)
        }
    }

    /// The same collector, also adding missing fields (after the From rewrite).
    #[must_use]
    pub fn also_adding(mut self, missing: Missing) -> HeaderCollector {
        self.missing = Some(missing);
        self
    }

    /// Over the limit: refused when the From must be rewritten, else passed unchanged.
    fn too_large(&mut self) -> Headers {
        if self.rewrite {
            Headers::TooLarge
        } else {
            Headers::Ready(std::mem::take(&mut self.buf))
        }
    }

    /// Takes the next chunk; `ended`: it ends with the end-of-data terminator (`.` CRLF).
    pub fn feed(&mut self, chunk: &[u8], ended: bool, account: &str) -> Headers {
        self.buf.extend_from_slice(chunk);
        if let Some(end) = self.blank_line_end() {
            if end > self.limit {
                return self.too_large();
            }
            let body = self.buf.split_off(end);
            return self.rewritten(body, account);
        }
        if ended {
            // The whole message is header lines; the terminator stays last.
            let block = self.buf.len().saturating_sub(3);
            if block > self.limit {
                return self.too_large();
            }
            let tail = self.buf.split_off(block);
            return self.rewritten(tail, account);
        }
        // Whether the block ends at a later blank line or at the end of data (whose 3
        // bytes may have begun arriving), it is at least this long: past the limit already.
        if self.buf.len().saturating_sub(2) > self.limit {
            return self.too_large();
        }
        Headers::NeedMore
    }

    /// The index just after the first empty line (CRLF or bare LF, as
    /// [`header_end`](super::header_end)), scanning only lines not seen before.
    fn blank_line_end(&mut self) -> Option<usize> {
        while let Some(i) = memchr::memchr(b'\n', &self.buf[self.line_start..]) {
            let end = self.line_start + i + 1;
            if matches!(&self.buf[self.line_start..end], b"\n" | b"\r\n") {
                return Some(end);
            }
            self.line_start = end;
        }
        None
    }

    /// The collected header block, edited (From rewritten, missing fields added),
    /// followed by `rest`; or, when the From must be rewritten, the refusal of a block
    /// holding a bare CR.
    fn rewritten(&mut self, rest: Vec<u8>, account: &str) -> Headers {
        let mut block = std::mem::take(&mut self.buf);
        if self.rewrite {
            if has_bare_cr(&block) {
                return Headers::BareCr;
            }
            block = rewrite_originator(&block, account).unwrap_or(block);
        }
        if let Some(m) = &self.missing {
            block = add_missing(&block, m, account).unwrap_or(block);
        }
        block.extend_from_slice(&rest);
        Headers::Ready(block)
    }
}

/// Whether `block` holds a CR that is not followed by an LF.
fn has_bare_cr(block: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', block).any(|i| block.get(i + 1) != Some(&b'\n'))
}
