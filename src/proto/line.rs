//! CRLF line framing with a hard length limit, shared by the three login phases.

use bytes::{Buf, BytesMut};

use crate::secrets::wipe;

/// One framing result.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole line, without its line ending. Lines ending in a bare LF are accepted too
    /// (many printers send them); a CR just before the LF is removed.
    Line(BytesMut),
    /// A line went over the limit. It is discarded, up to and including its LF (which may
    /// arrive later); this is reported once per overlong line.
    TooLong,
    /// No whole line is buffered yet.
    NeedMore,
}

/// How a session's command lines have ended so far. SMTP needs it to choose the DATA
/// framing (issue 17): a client that has only ever sent bare LFs may end its message with
/// a bare-LF dot line; one that has sent a CRLF must use `CRLF . CRLF` (RFC 5321
/// §4.1.1.4), since for it a bare LF is not a line end and `\n.\n` is a smuggling form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEndings {
    /// No line has ended yet.
    #[default]
    None,
    /// Every line so far ended in a bare LF.
    BareLf,
    /// At least one line ended in CRLF (whatever the others did).
    Crlf,
}

impl LineEndings {
    /// The endings after one more line, ended by CRLF (`crlf`) or a bare LF.
    #[must_use]
    pub fn then(self, crlf: bool) -> LineEndings {
        match (self, crlf) {
            (_, true) | (LineEndings::Crlf, _) => LineEndings::Crlf,
            _ => LineEndings::BareLf,
        }
    }
}

/// Splits a byte stream into lines of at most `max` bytes, keeping no state but a scan
/// offset (so that a line arriving one byte at a time is scanned once), whether an
/// overlong line is being skipped, and how the lines have ended ([`LineEndings`]).
#[derive(Debug, Clone)]
pub struct LineFramer {
    max: usize,
    scanned: usize,
    discarding: bool,
    endings: LineEndings,
    last_crlf: bool,
}

impl LineFramer {
    /// A framer that accepts lines of up to `max` bytes, line ending excluded.
    pub fn new(max: usize) -> Self {
        LineFramer {
            max,
            scanned: 0,
            discarding: false,
            endings: LineEndings::None,
            last_crlf: true,
        }
    }

    /// A framer that goes on from a session's earlier one (the SMTP relay after the login
    /// phase): the line endings seen so far carry over.
    #[must_use]
    pub fn with_endings(mut self, endings: LineEndings) -> Self {
        self.endings = endings;
        self
    }

    /// How the lines framed so far have ended (the tails of overlong lines, whose CR may
    /// have been dropped with the rest, are not counted).
    pub fn endings(&self) -> LineEndings {
        self.endings
    }

    /// The line ending of the last line framed: CRLF, or `\n` for a bare LF (for a line
    /// handed on as it was sent).
    pub fn last_ending(&self) -> &'static [u8] {
        if self.last_crlf {
            b"\r\n"
        } else {
            b"\n"
        }
    }

    /// True while the rest of an overlong line is being skipped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Takes the next line from the front of `buf`.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Frame {
        loop {
            let start = self.scanned.min(buf.len());
            match memchr::memchr(b'\n', &buf[start..]) {
                Some(i) => {
                    let end = start + i + 1;
                    self.scanned = 0;
                    if self.discarding {
                        // The tail of a line already reported as too long.
                        wipe(&mut buf[..end]);
                        buf.advance(end);
                        self.discarding = false;
                        continue;
                    }
                    let mut line = buf.split_to(end);
                    line.truncate(line.len() - 1);
                    self.last_crlf = line.last() == Some(&b'\r');
                    if self.last_crlf {
                        line.truncate(line.len() - 1);
                    }
                    self.endings = self.endings.then(self.last_crlf);
                    if line.len() > self.max {
                        wipe(&mut line);
                        return Frame::TooLong;
                    }
                    return Frame::Line(line);
                }
                None => {
                    if self.discarding {
                        wipe(&mut buf[..]);
                        buf.clear();
                        self.scanned = 0;
                        return Frame::NeedMore;
                    }
                    // `max + 1` leaves room for the CR of a CRLF that has not arrived.
                    if buf.len() > self.max + 1 {
                        wipe(&mut buf[..]);
                        buf.clear();
                        self.scanned = 0;
                        self.discarding = true;
                        return Frame::TooLong;
                    }
                    self.scanned = buf.len();
                    return Frame::NeedMore;
                }
            }
        }
    }
}

/// Splits off the first space-separated word of `line` (the command verb), returning it
/// and the rest with leading spaces removed.
pub fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', line) {
        Some(i) => {
            let rest = &line[i + 1..];
            let skip = rest.iter().take_while(|&&b| b == b' ').count();
            (&line[..i], &rest[skip..])
        }
        None => (line, &[]),
    }
}

/// True if a command line (its line ending already removed) holds a control byte: NUL,
/// a CR that did not end the line, DEL, or any other C0 byte except HTAB. Such a line is
/// refused, never interpreted or passed on: an upstream that ends lines at a bare CR
/// would read the rest as a second command (injection). HTAB is let through: RFC 5321
/// commands use SP, but no SMTP, IMAP or POP3 peer treats a tab as a line end, so it
/// cannot inject, and sloppy legacy devices may send one. Bytes from 0x80 up are text
/// (UTF-8 user names and passwords).
pub fn has_control(line: &[u8]) -> bool {
    line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize, chunk: usize) -> Vec<Frame> {
        let mut f = LineFramer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match f.next_frame(&mut buf) {
                    Frame::NeedMore => break,
                    other => out.push(other),
                }
            }
        }
        out
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(BytesMut::from(s))
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], usize, Vec<Frame>)] = &[
            (b"EHLO x\r\n", 100, vec![line(b"EHLO x")]),
            (b"EHLO x\n", 100, vec![line(b"EHLO x")]),
            (b"A\r\nB\r\n", 100, vec![line(b"A"), line(b"B")]),
            (b"\r\n", 100, vec![line(b"")]),
            (b"12345\r\n", 5, vec![line(b"12345")]),
            (b"123456\r\nok\r\n", 5, vec![Frame::TooLong, line(b"ok")]),
            (b"partial", 100, vec![]),
            (b"a\rb\r\n", 100, vec![line(b"a\rb")]),
        ];
        for (input, max, want) in cases {
            for chunk in [1, 2, 3, 5, 7, 64, 512] {
                assert_eq!(
                    &frames(input, *max, chunk),
                    want,
                    "input {:?} chunk {chunk}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn endings_table() {
        use LineEndings::*;
        let cases: &[(&[u8], LineEndings, &[u8])] = &[
            (b"", None, b"\r\n"),
            (b"partial", None, b"\r\n"),
            (b"EHLO x\n", BareLf, b"\n"),
            (b"EHLO x\nAUTH LOGIN\nMAIL FROM:<a>\n", BareLf, b"\n"),
            (b"EHLO x\r\n", Crlf, b"\r\n"),
            (b"EHLO x\nMAIL FROM:<a>\r\n", Crlf, b"\r\n"),
            (b"EHLO x\r\nMAIL FROM:<a>\n", Crlf, b"\n"),
            // A bare CR inside the line is text; the line still ends in a bare LF.
            (b"a\rb\n", BareLf, b"\n"),
            // An overlong line found whole counts; one skipped in pieces does not.
            (b"12345678901234567\nok\n", BareLf, b"\n"),
        ];
        for (input, want, last) in cases {
            for chunk in [1, 2, 3, 5, 7, 64, 512] {
                let mut f = LineFramer::new(16);
                let mut buf = BytesMut::new();
                for piece in input.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    while f.next_frame(&mut buf) != Frame::NeedMore {}
                }
                let what = format!("{:?} chunk {chunk}", String::from_utf8_lossy(input));
                assert_eq!(f.endings(), *want, "{what}");
                assert_eq!(f.last_ending(), *last, "{what}");
            }
        }
        assert_eq!(LineFramer::new(5).with_endings(Crlf).endings(), Crlf);
        let mut f = LineFramer::new(5).with_endings(Crlf);
        let mut buf = BytesMut::from(&b"QUIT\n"[..]);
        f.next_frame(&mut buf);
        assert_eq!(
            f.endings(),
            Crlf,
            "a CRLF seen in the login phase is not forgotten"
        );
    }

    #[test]
    fn overlong_without_newline_is_bounded_and_reported_once() {
        let mut f = LineFramer::new(10);
        let mut buf = BytesMut::new();
        let mut reports = 0;
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'x'; 1024]);
            if f.next_frame(&mut buf) == Frame::TooLong {
                reports += 1;
            }
            assert!(buf.len() <= 1024);
        }
        assert_eq!(reports, 1);
        buf.extend_from_slice(b"tail\r\nNOOP\r\n");
        assert_eq!(f.next_frame(&mut buf), line(b"NOOP"));
    }

    #[test]
    fn control_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"MAIL FROM:<a@b.c> SIZE=10", false),
            (b"RCPT TO:<a@b.c>\tNOTIFY=NEVER", false),
            (b"USER \xe7\x94\xa8\xe6\x88\xb7", false),
            (b"", false),
            (b"MAIL FROM:<a@b.c> SIZE=10\rRCPT TO:<x@y.z>", true),
            (b"RCPT TO:<x@y.z>\0", true),
            (b"a1 LOGIN user \"pa\x1bss\"", true),
            (b"NOOP\x7f", true),
            (b"USER a\x01", true),
        ];
        for (line, want) in cases {
            assert_eq!(
                has_control(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn split_word_table() {
        assert_eq!(
            split_word(b"MAIL FROM:<a>"),
            (&b"MAIL"[..], &b"FROM:<a>"[..])
        );
        assert_eq!(split_word(b"QUIT"), (&b"QUIT"[..], &b""[..]));
        assert_eq!(split_word(b"AUTH   PLAIN"), (&b"AUTH"[..], &b"PLAIN"[..]));
    }
}
