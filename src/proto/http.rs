//! Recognises HTTP request lines and header lines arriving on a mail port: the one rule
//! the three login phases and the SMTP relay share against cross-protocol attacks.
//!
//! A web page can make a browser POST to `http://<gateway>:2525/` (the Fetch standard
//! blocks 25, 110, 143, 465, 587, 993, 995 but not 2525, 1143 or 1110). A server that
//! treats the request line and headers as mere unknown commands then reads the request
//! body as pipelined commands — as mail from an allow-listed address. Postfix closes the
//! session on `CONNECT`, `GET` and `POST` (`smtpd_forbidden_commands`); this module also
//! catches the other methods, the request line by its shape wherever it lands (in IMAP
//! the method sits where a tag is expected), and header lines (`Host: …`).
//!
//! None of it matches a legitimate command: no SMTP, IMAP or POP3 command is named like
//! an HTTP method, and none has a first word of the form `token:` (SMTP's `MAIL FROM:`
//! and `RCPT TO:` put the colon in the second word).

/// HTTP methods (RFC 9110 §9, RFC 5789). Browsers send GET, HEAD and POST without a CORS
/// preflight, and the preflight itself is an OPTIONS; the rest are here for proxies and
/// scripts that tunnel through a browser or a misconfigured client.
const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"CONNECT", b"DELETE", b"PATCH", b"TRACE",
];

/// True if `word` (a command verb) is an HTTP method, compared case-insensitively as
/// Postfix does for `smtpd_forbidden_commands`. Only for protocols whose first word is the
/// verb (SMTP, POP3): in IMAP the first word is a client-chosen tag.
pub fn is_method(word: &[u8]) -> bool {
    METHODS.iter().any(|m| word.eq_ignore_ascii_case(m))
}

/// True if `line` (without its line ending) has the shape of an HTTP/1.x request line,
/// `method SP request-target SP HTTP/d.d` (RFC 9112 §3), whatever protocol receives it.
pub fn is_request_line(line: &[u8]) -> bool {
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    // HTTP-name is case-sensitive (RFC 9112 §2.3); the method is matched loosely.
    is_method(method)
        && !target.is_empty()
        && matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// True if `line` is an HTTP header field line, `field-name ":" SP …` (RFC 9110 §5.1,
/// RFC 9112 §5): a non-empty token, then a colon, then a space, a tab or the end of the
/// line. Browsers always write the space; requiring it keeps `Host:` apart from things
/// like a URL-ish IMAP tag (`a:1 NOOP`).
pub fn is_header_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let name = &line[..colon];
    !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && matches!(line.get(colon + 1), None | Some(b' ') | Some(b'\t'))
}

/// True if `line` is any part of an HTTP request head that a mail server could see as a
/// command line: a request line or a header line. (The empty line ending the head is not
/// caught: it is harmless, and SMTP clients send empty lines too.)
pub fn is_http_line(line: &[u8]) -> bool {
    is_request_line(line) || is_header_line(line)
}

/// `tchar` (RFC 9110 §5.6.2): the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_lines_table() {
        let cases: &[(&[u8], bool)] = &[
            // What browsers send.
            (b"POST / HTTP/1.1", true),
            (b"GET /favicon.ico HTTP/1.1", true),
            (b"OPTIONS * HTTP/1.1", true),
            (b"CONNECT smtp.qq.com:465 HTTP/1.1", true),
            (b"HEAD http://gw:2525/ HTTP/1.0", true),
            (b"post / HTTP/1.1", true),
            (b"Host: 192.168.1.10:2525", true),
            (b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)", true),
            (b"Content-Type: text/plain", true),
            (b"Content-Length: 120", true),
            (b"Origin: http://evil.example", true),
            (b"Connection: keep-alive", true),
            (b"Accept:", true),
            (b"X-Anything:\tvalue", true),
            // Legitimate commands of the three protocols.
            (b"MAIL FROM:<a@b.c>", false),
            (b"MAIL FROM: <a@b.c>", false),
            (b"RCPT TO:<x@y.z>", false),
            (b"EHLO printer.local:25", false),
            (b"AUTH PLAIN AHByaW50ZXIAc2VjcmV0", false),
            (b"a1 LOGIN user pass", false),
            (b"a:1 NOOP", false),
            (b"a1 LOGIN {5}", false),
            (b"USER printer", false),
            (b"PASS pa:ss word", false),
            (b"PASS x HTTP/1.1", false),
            (b"QUIT", false),
            (b"", false),
            // Near misses.
            (b"GET / HTTP/1", false),
            (b"GET / http/1.1", false),
            (b"GET  / HTTP/1.1", false),
            (b"GET / HTTP/1.1 x", false),
            (b"FOO / HTTP/1.1", false),
            (b"Host:x", false),
            (b":", false),
            (b"Bad Name: x", false),
        ];
        for (line, want) in cases {
            assert_eq!(
                is_http_line(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn methods_table() {
        for (word, want) in [
            (&b"GET"[..], true),
            (b"post", true),
            (b"Connect", true),
            (b"OPTIONS", true),
            (b"PUT", true),
            (b"HEAD", true),
            (b"HELO", false),
            (b"HELP", false),
            (b"QUIT", false),
            (b"TOP", false),
            (b"", false),
        ] {
            assert_eq!(is_method(word), want, "{:?}", String::from_utf8_lossy(word));
        }
    }
}
