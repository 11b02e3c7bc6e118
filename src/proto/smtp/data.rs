//! Finds the end of a DATA message (`CRLF . CRLF`, RFC 5321 §4.1.1.4) in a byte stream,
//! and the ambiguous end-of-data forms used for SMTP smuggling (a dot line introduced or
//! ended by a bare LF), which some servers honour and others do not.
//!
//! Only line feeds are examined (found with `memchr`, SIMD-accelerated) plus at most
//! three bytes after each: a message body costs a vectorised scan, not per-byte work.

/// Progress through a possible dot line that started at a line feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// Nothing pending.
    None,
    /// Seen LF (`cr`: it was preceded by CR).
    Lf { cr: bool },
    /// Seen LF `.`.
    LfDot { cr: bool },
    /// Seen LF `.` CR.
    LfDotCr { cr: bool },
}

/// The outcome of one step of the carry machine.
enum Step {
    /// Still undecided; wants the next byte.
    Pending(Carry),
    /// Not a dot line (or a stuffed `..` line): nothing to report.
    Resolved,
    /// `CRLF . CRLF`: the message ends after this byte.
    End,
    /// A dot line with a bare LF on either side.
    Smuggling,
}

fn step(carry: Carry, byte: u8) -> Step {
    match (carry, byte) {
        (Carry::None, _) => Step::Resolved,
        (Carry::Lf { cr }, b'.') => Step::Pending(Carry::LfDot { cr }),
        (Carry::Lf { .. }, _) => Step::Resolved,
        (Carry::LfDot { cr }, b'\r') => Step::Pending(Carry::LfDotCr { cr }),
        (Carry::LfDot { .. }, b'\n') => Step::Smuggling,
        (Carry::LfDot { .. }, _) => Step::Resolved,
        (Carry::LfDotCr { cr: true }, b'\n') => Step::End,
        (Carry::LfDotCr { cr: false }, b'\n') => Step::Smuggling,
        (Carry::LfDotCr { .. }, _) => Step::Resolved,
    }
}

/// What one chunk contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scan {
    /// The message ends in this chunk: `chunk[..end]` is its last part, terminator
    /// included; anything after belongs to the next command.
    pub end: Option<usize>,
    /// An ambiguous end-of-data sequence was completed at this index (reported once per
    /// message). The chunk must not be forwarded.
    pub smuggling: Option<usize>,
}

/// Scans a DATA stream chunk by chunk.
#[derive(Debug, Clone)]
pub struct DataScanner {
    carry: Carry,
    last_cr: bool,
    smuggled: bool,
}

impl Default for DataScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DataScanner {
    /// A scanner at the start of a message (just after the DATA command's CRLF, so an
    /// immediate `.CRLF` is an empty message).
    pub fn new() -> DataScanner {
        DataScanner {
            carry: Carry::Lf { cr: true },
            last_cr: false,
            smuggled: false,
        }
    }

    /// True once a smuggling sequence has been seen in this message.
    pub fn smuggled(&self) -> bool {
        self.smuggled
    }

    /// Scans the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> Scan {
        let mut scan = Scan::default();
        let mut from = 0;
        // Finish a sequence that started in an earlier chunk.
        while self.carry != Carry::None && from < chunk.len() {
            let byte = chunk[from];
            match step(self.carry, byte) {
                Step::Pending(c) => {
                    self.carry = c;
                    from += 1;
                }
                Step::Resolved => self.carry = Carry::None,
                Step::End => {
                    self.carry = Carry::None;
                    scan.end = Some(from + 1);
                    return scan;
                }
                Step::Smuggling => {
                    self.carry = Carry::None;
                    self.flag(&mut scan, from);
                }
            }
        }
        if self.carry != Carry::None {
            // The chunk was consumed by the pending sequence.
            self.last_cr = chunk.last() == Some(&b'\r');
            return scan;
        }
        for lf in memchr::memchr_iter(b'\n', &chunk[from..]).map(|i| i + from) {
            let cr = if lf > 0 {
                chunk[lf - 1] == b'\r'
            } else {
                self.last_cr
            };
            let mut carry = Carry::Lf { cr };
            let mut at = lf + 1;
            loop {
                let Some(&byte) = chunk.get(at) else {
                    // Decided by the next chunk.
                    self.carry = carry;
                    self.last_cr = chunk.last() == Some(&b'\r');
                    return scan;
                };
                match step(carry, byte) {
                    Step::Pending(c) => {
                        carry = c;
                        at += 1;
                    }
                    Step::Resolved => break,
                    Step::End => {
                        scan.end = Some(at + 1);
                        return scan;
                    }
                    Step::Smuggling => {
                        self.flag(&mut scan, at);
                        break;
                    }
                }
            }
        }
        self.last_cr = chunk.last() == Some(&b'\r');
        scan
    }

    fn flag(&mut self, scan: &mut Scan, at: usize) {
        if !self.smuggled {
            self.smuggled = true;
            scan.smuggling = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in `chunk`-sized pieces; returns (absolute end, absolute smuggling).
    fn run(input: &[u8], chunk: usize) -> (Option<usize>, Option<usize>) {
        let mut s = DataScanner::new();
        let mut offset = 0;
        let mut smuggling = None;
        for piece in input.chunks(chunk) {
            let scan = s.feed(piece);
            if let Some(at) = scan.smuggling {
                smuggling.get_or_insert(offset + at);
            }
            if let Some(end) = scan.end {
                return (Some(offset + end), smuggling);
            }
            offset += piece.len();
        }
        (None, smuggling)
    }

    #[test]
    fn table_at_every_chunk_size() {
        let cases: &[(&[u8], Option<usize>, bool)] = &[
            (b".\r\n", Some(3), false),
            (b"Subject: x\r\n\r\nbody\r\n.\r\n", Some(23), false),
            (b"a\r\n.\r\nMAIL FROM:<x>\r\n", Some(6), false),
            (b"a\r\n..\r\nb\r\n.\r\n", Some(13), false),
            (b"a\r\n.x\r\n.\r\n", Some(10), false),
            (b"no end\r\n", None, false),
            (b"a\r\n.", None, false),
            (b"a\r\n.\r", None, false),
            // Smuggling forms: a dot line with a bare LF on either side.
            (b"a\n.\r\nb\r\n.\r\n", Some(11), true),
            (b"a\r\n.\nb\r\n.\r\n", Some(11), true),
            (b"a\n.\nb\r\n.\r\n", Some(10), true),
            // Bare LFs that do not form dot lines are harmless.
            (b"a\nb\nc\r\n.\r\n", Some(10), false),
            (b"\r\n\r\n.\r\n", Some(7), false),
        ];
        for (input, end, smuggled) in cases {
            for chunk in [1, 2, 3, 4, 5, 7, 64, 512] {
                let (got_end, got_smuggling) = run(input, chunk);
                assert_eq!(
                    got_end,
                    *end,
                    "{:?} chunk {chunk}",
                    String::from_utf8_lossy(input)
                );
                assert_eq!(
                    got_smuggling.is_some(),
                    *smuggled,
                    "{:?} chunk {chunk}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn large_body_with_dots() {
        let mut msg = Vec::new();
        for i in 0..10_000 {
            msg.extend_from_slice(format!("..line {i} with a leading dot\r\n").as_bytes());
        }
        msg.extend_from_slice(b".\r\n");
        assert_eq!(run(&msg, 8192), (Some(msg.len()), None));
    }

    /// Feeds `input` in pieces of the given sizes (cycled); same result as [`run`].
    fn run_sizes(input: &[u8], sizes: &[usize]) -> (Option<usize>, Option<usize>) {
        let mut s = DataScanner::new();
        let (mut offset, mut smuggling, mut step) = (0, None, 0);
        let mut rest = input;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(sizes[step % sizes.len()].min(rest.len()));
            step += 1;
            rest = tail;
            let scan = s.feed(piece);
            if let Some(at) = scan.smuggling {
                smuggling.get_or_insert(offset + at);
            }
            if let Some(end) = scan.end {
                return (Some(offset + end), smuggling);
            }
            offset += piece.len();
        }
        (None, smuggling)
    }

    /// The same answer the slow way: every line start in order (the stream's start
    /// counts as following a CRLF, since the DATA command's line ended in one).
    fn reference(stream: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut smuggling = None;
        let mut starts = vec![(0usize, true)];
        for (i, &b) in stream.iter().enumerate() {
            if b == b'\n' {
                starts.push((i + 1, i > 0 && stream[i - 1] == b'\r'));
            }
        }
        for (start, after_crlf) in starts {
            let line = &stream[start..];
            if line.starts_with(b".\r\n") {
                if after_crlf {
                    return (Some(start + 3), smuggling);
                }
                smuggling.get_or_insert(start + 2);
            } else if line.starts_with(b".\n") {
                smuggling.get_or_insert(start + 1);
            }
        }
        (None, smuggling)
    }

    /// One message line: any bytes but LF, often starting with a dot.
    fn message_line() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = any::<u8>().prop_filter("no LF inside a line", |b| *b != b'\n');
        prop_oneof![
            proptest::collection::vec(byte.clone(), 0..40),
            proptest::collection::vec(byte, 0..10).prop_map(|l| [&b"."[..], &l].concat()),
            Just(b".".to_vec()),
            Just(b"\r".to_vec()),
        ]
    }

    proptest::proptest! {
        /// A message dot-stuffed as RFC 5321 §4.5.2 says, with CRLF line endings and the
        /// terminator, followed by the next commands, ends exactly after the terminator,
        /// whatever the chunking, and is never taken for smuggling.
        #[test]
        fn stuffed_message_ends_at_its_terminator(
            lines in proptest::collection::vec(message_line(), 0..30),
            after in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            sizes in proptest::collection::vec(1usize..70, 1..6),
        ) {
            let mut msg = Vec::new();
            for line in &lines {
                if line.first() == Some(&b'.') {
                    msg.push(b'.');
                }
                msg.extend_from_slice(line);
                msg.extend_from_slice(b"\r\n");
            }
            msg.extend_from_slice(b".\r\n");
            let end = msg.len();
            msg.extend_from_slice(&after);
            proptest::prop_assert_eq!(run_sizes(&msg, &sizes), (Some(end), None));
            proptest::prop_assert_eq!(run_sizes(&msg, &[msg.len()]), (Some(end), None));
        }

        /// Random bytes (biased towards the interesting ones) never panic, chunking never
        /// changes where the message ends or where smuggling is seen, and both agree
        /// with the slow reference.
        #[test]
        fn random_bytes_same_result_at_any_chunking(
            input in proptest::collection::vec(
                proptest::sample::select(&b"\r\n.\r\nx"[..]), 0..300),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            sizes in proptest::collection::vec(1usize..50, 1..6),
        ) {
            let mut all = input;
            all.extend_from_slice(&noise);
            let whole = run_sizes(&all, &[all.len().max(1)]);
            proptest::prop_assert_eq!(run_sizes(&all, &sizes), whole);
            proptest::prop_assert_eq!(run_sizes(&all, &[1]), whole);
            proptest::prop_assert_eq!(reference(&all), whole);
        }
    }
}
