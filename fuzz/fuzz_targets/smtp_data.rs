//! Fuzz target: the DATA end scanner, the From rewriter and the header collector. `DataScanner` fed in
//! arbitrary chunks must report the same end and smuggling position as when fed the
//! whole stream, and both must match a naive reference; `header::rewrite_originator` and
//! `header::header_end` must never panic, a rewrite must be stable, and the
//! `header::HeaderCollector` must decide the same at any chunking. The bare-LF framing
//! (`framing::DataFraming`) must hand on the same bytes at any chunking, with no bare LF
//! left, ending where a strict reader of its output ends; `header::add_missing` must be
//! stable (a second pass adds nothing).
//!
//! Input layout: byte 0 and 1 pick chunk sizes (cycled), the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qqmail_proxy::proto::line::LineEndings;
use qqmail_proxy::proto::smtp::data::DataScanner;
use qqmail_proxy::proto::smtp::framing::DataFraming;
use qqmail_proxy::proto::smtp::header;

const ACCOUNT: &str = "12345@qq.com";

/// Absolute (end, first smuggling index) when `stream` is fed in the given chunk sizes.
fn scan(stream: &[u8], sizes: &[usize]) -> (Option<usize>, Option<usize>) {
    let mut scanner = DataScanner::new();
    let mut offset = 0;
    let mut smuggling = None;
    let mut rest = stream;
    let mut step = 0;
    while !rest.is_empty() {
        let size = sizes[step % sizes.len()].min(rest.len());
        step += 1;
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        let found = scanner.feed(piece);
        if let Some(at) = found.smuggling {
            assert!(at < piece.len(), "smuggling index outside the chunk");
            assert!(smuggling.is_none(), "smuggling reported twice");
            smuggling = Some(offset + at);
        }
        if let Some(end) = found.end {
            assert!(end <= piece.len(), "end outside the chunk");
            return (Some(offset + end), smuggling);
        }
        offset += piece.len();
    }
    (None, smuggling)
}

/// The same answer the slow way: every dot at a line start, in order. A line starts
/// after any LF or CR (the stream's start counts as following a CRLF, since DATA's own
/// line ended in one); the break before the dot was a CRLF only if it was an LF after a
/// CR. The index reported is that of the byte that decided the dot line.
fn reference(stream: &[u8]) -> (Option<usize>, Option<usize>) {
    let mut smuggling = None;
    for (i, _) in stream.iter().enumerate().filter(|(_, &b)| b == b'.') {
        let before = match i.checked_sub(1).map(|p| stream[p]) {
            None => Some(true),
            Some(b'\n') => Some(i >= 2 && stream[i - 2] == b'\r'),
            Some(b'\r') => Some(false),
            Some(_) => None,
        };
        let Some(crlf_before) = before else { continue };
        match (stream.get(i + 1), stream.get(i + 2)) {
            (Some(b'\n'), _) => {
                smuggling.get_or_insert(i + 1);
            }
            (Some(b'\r'), Some(b'\n')) if crlf_before => return (Some(i + 3), smuggling),
            (Some(b'\r'), Some(_)) => {
                smuggling.get_or_insert(i + 2);
            }
            _ => {}
        }
    }
    (None, smuggling)
}

/// What a header collector (limit `limit`) sends of `stream` fed in `size`-byte pieces,
/// the last one marked as the end of data; `None` when it refuses the message.
fn collect(stream: &[u8], size: usize, limit: usize) -> Option<Vec<u8>> {
    let mut c = header::HeaderCollector::new(limit);
    let pieces: Vec<&[u8]> = stream.chunks(size).collect();
    for (i, piece) in pieces.iter().enumerate() {
        match c.feed(piece, i + 1 == pieces.len(), ACCOUNT) {
            header::Headers::NeedMore => {}
            header::Headers::TooLarge | header::Headers::BareCr => return None,
            header::Headers::Ready(mut out) => {
                out.extend(pieces[i + 1..].iter().flat_map(|p| p.iter()));
                return Some(out);
            }
        }
    }
    Some(Vec::new())
}

/// What the bare-LF framing hands on for `stream` fed in `size`-byte pieces, the end (in
/// the client's bytes) and whether it saw smuggling.
fn frame_bare_lf(stream: &[u8], size: usize) -> (Vec<u8>, Option<usize>, bool) {
    let mut framing = DataFraming::for_session(LineEndings::BareLf);
    let (mut out, mut offset, mut smuggling) = (Vec::new(), 0, false);
    for piece in stream.chunks(size) {
        let framed = framing.feed(piece);
        smuggling |= framed.smuggling;
        out.extend_from_slice(&framed.out);
        if let Some(end) = framed.end {
            return (out, Some(offset + end), smuggling);
        }
        offset += piece.len();
    }
    (out, None, smuggling)
}

fuzz_target!(|data: &[u8]| {
    let sizes: Vec<usize> = data.iter().take(2).map(|&b| usize::from(b) + 1).collect();
    let stream = data.get(2..).unwrap_or_default();
    let sizes = if sizes.is_empty() { vec![1] } else { sizes };

    let whole = scan(stream, &[stream.len().max(1)]);
    assert_eq!(scan(stream, &sizes), whole, "chunking changed the result");
    assert_eq!(
        scan(stream, &[1]),
        whole,
        "byte-at-a-time changed the result"
    );
    assert_eq!(
        reference(stream),
        whole,
        "scanner disagrees with the reference"
    );

    let end = header::header_end(stream);
    if let Some(end) = end {
        assert!(end <= stream.len());
    }
    let block = &stream[..end.unwrap_or(stream.len())];
    if let Some(out) = header::rewrite_originator(block, ACCOUNT) {
        // The rewritten block already names the account: a second pass changes nothing.
        assert_eq!(
            header::rewrite_originator(&out, ACCOUNT),
            None,
            "rewrite is not stable"
        );
    }

    // The bare-LF framing: chunking changes nothing, no bare LF goes on, and a strict
    // reader of what goes on (the upstream) ends where the framing did.
    let framed = frame_bare_lf(stream, sizes[0]);
    assert_eq!(
        frame_bare_lf(stream, stream.len().max(1)),
        framed,
        "chunking changed the framing"
    );
    let (out, end, smuggling) = &framed;
    assert!(
        !out.iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || out[i - 1] != b'\r')),
        "a bare LF went on"
    );
    let strict = scan(out, &[out.len().max(1)]);
    assert_eq!(
        strict.0.is_some(),
        end.is_some(),
        "the upstream would end elsewhere"
    );
    assert_eq!(
        strict.1.is_some(),
        *smuggling,
        "smuggling judged differently"
    );

    let missing = header::Missing {
        date: "Mon, 7 Dec 2026 08:00:00 +0800".into(),
        message_id: "<1.2.3@gw.example>".into(),
    };
    if let Some(out) = header::add_missing(block, &missing, ACCOUNT) {
        assert_eq!(
            header::add_missing(&out, &missing, ACCOUNT),
            None,
            "add_missing is not stable"
        );
    }

    // The header collector: chunking never changes what it sends or whether it refuses.
    if !stream.is_empty() {
        let limit = usize::from(data[0]);
        assert_eq!(
            collect(stream, sizes[0], limit),
            collect(stream, stream.len(), limit),
            "chunking changed the header collector's result"
        );
    }
});
