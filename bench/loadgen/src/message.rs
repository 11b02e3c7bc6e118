//! The benchmark message: an RFC 5322 header block and 78-character body lines, exactly
//! `size` bytes, ending in CRLF. No line starts with a dot, so SMTP DATA and POP3 RETR
//! need no dot-stuffing (RFC 5321 §4.5.2, RFC 1939 §3) and the bytes on the wire are the
//! bytes counted.

const HEADER: &[u8] = b"From: bench <tester@qq.com>\r\n\
To: sink <sink@example.test>\r\n\
Subject: qqmail-proxy benchmark\r\n\
Message-ID: <bench@qqmail-proxy.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n";

const LINE: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-the-quick-fox\r\n";

/// A message of exactly `size` bytes (at least the header plus one short line).
pub fn message(size: usize) -> Vec<u8> {
    let size = size.max(HEADER.len() + 3);
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(HEADER);
    while m.len() + LINE.len() <= size {
        m.extend_from_slice(LINE);
    }
    // The last line is shorter: letters, then CRLF.
    let rest = size - m.len();
    if rest > 0 {
        if rest >= 3 {
            m.resize(m.len() + rest - 2, b'z');
            m.extend_from_slice(b"\r\n");
        } else {
            // One or two bytes left: lengthen the last full line instead.
            let cut = m.len() - 2;
            m.truncate(cut);
            m.resize(m.len() + rest, b'y');
            m.extend_from_slice(b"\r\n");
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_end_in_crlf() {
        for size in [0, 10, 300, 301, 302, 303, 10_240, 2_000_000] {
            let m = message(size);
            assert_eq!(m.len(), size.max(HEADER.len() + 3), "size {size}");
            assert!(m.ends_with(b"\r\n"));
            assert!(memchr::memmem::find(&m, b"\n.").is_none());
        }
    }
}
