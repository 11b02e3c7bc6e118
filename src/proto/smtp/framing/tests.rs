//! The DATA framing as tables (bytes in -> end, smuggling, bytes out), each replayed in
//! chunks of 1..512 bytes.

use super::*;
use LineEndings::{BareLf, Crlf};

/// Feeds `input` in `chunk`-sized pieces until the end; returns (absolute end, smuggling,
/// everything handed on).
fn run(endings: LineEndings, input: &[u8], chunk: usize) -> (Option<usize>, bool, Vec<u8>) {
    let mut framing = DataFraming::for_session(endings);
    let (mut offset, mut smuggling, mut out) = (0, false, Vec::new());
    for piece in input.chunks(chunk) {
        let framed = framing.feed(piece);
        smuggling |= framed.smuggling;
        out.extend_from_slice(&framed.out);
        if let Some(end) = framed.end {
            return (Some(offset + end), smuggling, out);
        }
        offset += piece.len();
    }
    (None, smuggling, out)
}

/// (session's endings, bytes in, end, smuggling, bytes handed on).
type Case = (
    LineEndings,
    &'static [u8],
    Option<usize>,
    bool,
    &'static [u8],
);

#[test]
fn table_at_every_chunk_size() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // Bare-LF sessions: the LF dot line ends the message; every LF goes on as CRLF.
        (BareLf, b"Subject: scan\n\npage 1\n.\n", Some(24), false,
            b"Subject: scan\r\n\r\npage 1\r\n.\r\n"),
        (BareLf, b".\n", Some(2), false, b".\r\n"),
        (BareLf, b"a\n.\nQUIT\n", Some(4), false, b"a\r\n.\r\n"),
        // Stuffed dot lines stay stuffed (the upstream unstuffs them, RFC 5321 §4.5.2).
        (BareLf, b"..x\n..\n.\n", Some(9), false, b"..x\r\n..\r\n.\r\n"),
        // CRLF lines inside pass as they are; the standard end is an end too.
        (BareLf, b"a\r\nb\n.\r\n", Some(8), false, b"a\r\nb\r\n.\r\n"),
        (BareLf, b"a\n.\r\n", Some(5), false, b"a\r\n.\r\n"),
        // Not ended yet: what came so far is handed on, normalised.
        (BareLf, b"a\nb", None, false, b"a\r\nb"),
        (BareLf, b"a\r", None, false, b"a\r"),
        // A bare CR is not a line end to this rule: its dot lines are still refused.
        (BareLf, b"a\r.\rb\n.\n", Some(8), true, b"a\r.\rb\r\n.\r\n"),
        (BareLf, b"a\n.\rb\n.\n", Some(8), true, b"a\r\n.\rb\r\n.\r\n"),
        // CRLF and mixed sessions: today's rule, bytes as sent.
        (Crlf, b"a\r\n.\r\nQUIT\r\n", Some(6), false, b"a\r\n.\r\n"),
        (Crlf, b"a\nb\r\n.\r\n", Some(8), false, b"a\nb\r\n.\r\n"),
        (Crlf, b"a\n.\nb\r\n.\r\n", Some(10), true, b"a\n.\nb\r\n.\r\n"),
        (Crlf, b"a\n.\n", None, true, b"a\n.\n"),
        (LineEndings::None, b"a\n.\n", None, true, b"a\n.\n"),
    ];
    for (endings, input, end, smuggling, out) in cases {
        for chunk in [1, 2, 3, 4, 5, 7, 64, 512] {
            let what = format!(
                "{endings:?} {:?} chunk {chunk}",
                String::from_utf8_lossy(input)
            );
            let got = run(*endings, input, chunk);
            assert_eq!(got.0, *end, "end: {what}");
            assert_eq!(got.1, *smuggling, "smuggling: {what}");
            assert_eq!(
                String::from_utf8_lossy(&got.2),
                String::from_utf8_lossy(out),
                "out: {what}"
            );
        }
    }
}

#[test]
fn a_crlf_split_across_chunks_is_not_doubled() {
    let mut framing = DataFraming::for_session(BareLf);
    assert!(framing.is_bare_lf());
    assert_eq!(framing.feed(b"a\r").out.as_ref(), b"a\r");
    assert_eq!(framing.feed(b"\nb\n").out.as_ref(), b"\nb\r\n");
    let last = framing.feed(b".\nNOOP\n");
    assert_eq!((last.end, last.out.as_ref()), (Some(2), &b".\r\n"[..]));
    assert!(!DataFraming::for_session(Crlf).is_bare_lf());
}

proptest::proptest! {
    /// Whatever a bare-LF session sends, what goes on holds no bare LF, and the strict
    /// scanner reading it (as the upstream would) finds the same end and never calls it
    /// smuggling unless the framing did: the proxy and the upstream cannot disagree.
    #[test]
    fn normalised_output_reads_the_same_to_a_strict_reader(
        input in proptest::collection::vec(
            proptest::sample::select(&b"\r\n.\n\nx.\r"[..]), 0..200),
        chunk in 1usize..40,
    ) {
        let (end, smuggling, out) = run(BareLf, &input, chunk);
        let bare_lf = out.iter().enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || out[i - 1] != b'\r'));
        proptest::prop_assert!(!bare_lf, "bare LF in {:?}", out);
        let mut strict = DataScanner::new();
        let scan = strict.feed(&out);
        proptest::prop_assert_eq!(scan.end.is_some(), end.is_some());
        if let Some(e) = scan.end {
            proptest::prop_assert_eq!(e, out.len());
        }
        proptest::prop_assert_eq!(scan.smuggling.is_some(), smuggling);
    }
}
