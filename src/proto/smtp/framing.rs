//! The end of a DATA message under the session's line-ending rule (issue 17).
//!
//! RFC 5321 §2.3.8 makes CRLF the only line end and §4.1.1.4 ends the message at
//! `CRLF . CRLF`; a bare LF is not a line end there, and a dot line with a bare LF on
//! either side is the SMTP smuggling form (CVE-2023-51764/5/6) that [`DataScanner`]
//! refuses. Yet many printers end every line, commands and message alike, with a bare LF,
//! and so end DATA with `\n.\n`: refused by the fixed servers, they wait for a timeout.
//!
//! The rule here is per session. A session that has sent CRLF (or mixed CRLF and bare
//! LF) is framed strictly, as before. A session whose every command line ended in a bare
//! LF speaks one consistent dialect, so its message is read in it: each bare LF becomes
//! CRLF *before* the strict scanner sees the bytes, and the normalised bytes are what the
//! upstream receives. The scanner and the upstream therefore read the very same bytes,
//! with no bare LF left: the end the proxy finds is the only end the upstream can find,
//! and a bare-CR dot line (`\r.\r`) is still refused. Smuggling needs two readers that
//! disagree; there is only one reading left.

use std::borrow::Cow;

use super::data::DataScanner;
use crate::proto::line::LineEndings;

/// What one chunk of client bytes contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'c> {
    /// The message ends in this chunk: `chunk[..end]` is its last part, terminator
    /// included; anything after belongs to the next command.
    pub end: Option<usize>,
    /// An ambiguous end-of-data sequence was seen: the message must be refused.
    pub smuggling: bool,
    /// The bytes to hand on for `chunk[..end]` (the whole chunk without an end): the
    /// chunk itself, or with bare LFs made CRLF.
    pub out: Cow<'c, [u8]>,
}

/// How a session's DATA is framed: one per message, chosen from the session's
/// [`LineEndings`] when DATA is accepted.
#[derive(Debug, Clone)]
pub enum DataFraming {
    /// CRLF (or mixed) sessions: bytes pass as sent; ambiguous ends are refused.
    Strict(DataScanner),
    /// Sessions whose every command line ended in a bare LF: each bare LF becomes CRLF
    /// first. `after_cr`: the previous chunk ended in a CR (so an LF starting this one
    /// completes a CRLF and is not doubled).
    BareLf {
        /// The strict scanner, fed the normalised bytes.
        scanner: DataScanner,
        /// The last byte seen was a CR.
        after_cr: bool,
    },
}

impl DataFraming {
    /// The framing for a message of a session whose command lines ended as `endings`
    /// (the DATA command's own line included).
    pub fn for_session(endings: LineEndings) -> DataFraming {
        match endings {
            LineEndings::BareLf => DataFraming::BareLf {
                scanner: DataScanner::new(),
                after_cr: false,
            },
            LineEndings::None | LineEndings::Crlf => DataFraming::Strict(DataScanner::new()),
        }
    }

    /// True for the bare-LF rule.
    pub fn is_bare_lf(&self) -> bool {
        matches!(self, DataFraming::BareLf { .. })
    }

    /// Scans the next chunk.
    pub fn feed<'c>(&mut self, chunk: &'c [u8]) -> Framed<'c> {
        match self {
            DataFraming::Strict(scanner) => {
                let scan = scanner.feed(chunk);
                let n = scan.end.unwrap_or(chunk.len());
                Framed {
                    end: scan.end,
                    smuggling: scan.smuggling.is_some(),
                    out: Cow::Borrowed(&chunk[..n]),
                }
            }
            DataFraming::BareLf { scanner, after_cr } => feed_bare_lf(scanner, after_cr, chunk),
        }
    }
}

/// The bare-LF rule: the chunk is taken one line piece at a time (up to and including an
/// LF, or the tail without one), each piece normalised and then scanned, so that an end
/// found by the scanner (always at an LF, the last byte of a piece) maps back to the
/// index in the client's bytes just after that LF.
fn feed_bare_lf<'c>(scanner: &mut DataScanner, after_cr: &mut bool, chunk: &[u8]) -> Framed<'c> {
    let mut out = Vec::with_capacity(chunk.len() + chunk.len() / 16 + 2);
    let mut smuggling = false;
    let mut at = 0;
    while at < chunk.len() {
        let (piece, lf) = match memchr::memchr(b'\n', &chunk[at..]) {
            Some(i) => (&chunk[at..at + i + 1], true),
            None => (&chunk[at..], false),
        };
        at += piece.len();
        let start = out.len();
        if lf {
            let text = &piece[..piece.len() - 1];
            out.extend_from_slice(text);
            let cr_before = text.last().map_or(*after_cr, |&b| b == b'\r');
            if !cr_before {
                out.push(b'\r');
            }
            out.push(b'\n');
        } else {
            out.extend_from_slice(piece);
        }
        *after_cr = piece.last() == Some(&b'\r');
        let scan = scanner.feed(&out[start..]);
        smuggling |= scan.smuggling.is_some();
        if let Some(end) = scan.end {
            out.truncate(start + end);
            return Framed {
                end: Some(at),
                smuggling,
                out: Cow::Owned(out),
            };
        }
    }
    Framed {
        end: None,
        smuggling,
        out: Cow::Owned(out),
    }
}

#[cfg(test)]
mod tests;
