//! SMTP command parsing (RFC 5321 §4.1) and the replies the proxy writes itself.

use crate::proto::http;

/// A parsed command line (without CRLF). Arguments borrow from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO domain`.
    Ehlo(&'a [u8]),
    /// `HELO domain`.
    Helo(&'a [u8]),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// Mechanism name.
        mechanism: &'a [u8],
        /// Initial response, if any.
        initial: Option<&'a [u8]>,
    },
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path without brackets (may be empty: `<>`).
        path: &'a [u8],
        /// ESMTP parameters (SIZE=, BODY=, ...), as written.
        params: &'a [u8],
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward path as written, brackets included.
        arg: &'a [u8],
    },
    /// `DATA`.
    Data,
    /// `BDAT` (RFC 3030; not offered).
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY` / `EXPN`.
    Vrfy,
    /// `HELP`.
    Help,
    /// `MAIL`/`RCPT` with an unparseable argument, or any line with a control byte.
    BadSyntax(&'static str),
    /// An HTTP request line or header (cross-protocol attack, see `proto::http`): answer
    /// once and close, reading nothing more.
    Http,
    /// Anything else.
    Unknown,
}

fn verb_is(word: &[u8], verb: &str) -> bool {
    word.eq_ignore_ascii_case(verb.as_bytes())
}

/// Parses one command line (shared by the login phase and the relay after it).
pub fn parse(line: &[u8]) -> Command<'_> {
    let (verb, rest) = super::super::line::split_word(line);
    // HTTP first: an attack is closed on, whatever else is wrong with the line.
    if http::is_method(verb) || http::is_http_line(line) {
        return Command::Http;
    }
    // Nothing with a control byte reaches the upstream, in any argument (see
    // `line::has_control`).
    if super::super::line::has_control(line) {
        return Command::BadSyntax(reply::CONTROL);
    }
    let rest = rest.trim_ascii_end();
    match () {
        _ if verb_is(verb, "EHLO") => Command::Ehlo(rest),
        _ if verb_is(verb, "HELO") => Command::Helo(rest),
        _ if verb_is(verb, "STARTTLS") && rest.is_empty() => Command::StartTls,
        _ if verb_is(verb, "AUTH") => {
            let (mechanism, initial) = super::super::line::split_word(rest);
            Command::Auth {
                mechanism,
                initial: (!initial.is_empty()).then_some(initial),
            }
        }
        _ if verb_is(verb, "MAIL") => match strip_keyword(rest, b"FROM:") {
            Some(arg) => match split_path(arg) {
                Some((path, params)) => Command::Mail { path, params },
                None => Command::BadSyntax("501 5.1.7 Bad sender address syntax\r\n"),
            },
            None => Command::BadSyntax("501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
        },
        _ if verb_is(verb, "RCPT") => match strip_keyword(rest, b"TO:") {
            Some(arg) if !arg.is_empty() => Command::Rcpt { arg },
            _ => Command::BadSyntax("501 5.5.4 Syntax: RCPT TO:<address>\r\n"),
        },
        _ if verb_is(verb, "DATA") => Command::Data,
        _ if verb_is(verb, "BDAT") => Command::Bdat,
        _ if verb_is(verb, "RSET") => Command::Rset,
        _ if verb_is(verb, "NOOP") => Command::Noop,
        _ if verb_is(verb, "QUIT") => Command::Quit,
        _ if verb_is(verb, "VRFY") || verb_is(verb, "EXPN") => Command::Vrfy,
        _ if verb_is(verb, "HELP") => Command::Help,
        _ => Command::Unknown,
    }
}

/// `FROM:` / `TO:` case-insensitively, tolerating a space after the colon (many old
/// clients send `MAIL FROM: <a@b>`, which Postfix and Sendmail accept too).
fn strip_keyword<'a>(rest: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(rest[keyword.len()..].trim_ascii_start())
}

/// Splits `<path> params` (or a bare `path params`, as some printers send) into the
/// path without brackets and the parameters.
fn split_path(arg: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(inner) = arg.strip_prefix(b"<") {
        let end = memchr::memchr(b'>', inner)?;
        let path = &inner[..end];
        let params = inner[end + 1..].trim_ascii();
        if path.contains(&b'<') || path.iter().any(|b| b.is_ascii_control()) {
            return None;
        }
        return Some((path, params));
    }
    let (path, params) = super::super::line::split_word(arg);
    if path.is_empty() || path.contains(&b'>') {
        return None;
    }
    Some((path, params.trim_ascii()))
}

/// What the EHLO reply advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extensions {
    /// STARTTLS is offered (off when disabled or already under TLS).
    pub starttls: bool,
    /// AUTH is offered (off while TLS is required and not yet active).
    pub auth: bool,
    /// SIZE value (RFC 1870 §4): `Some(n)` or `None` for a bare `SIZE`.
    pub size: Option<u64>,
}

/// The EHLO reply (RFC 5321 §4.1.1.1). `AUTH=PLAIN LOGIN` is repeated in the pre-RFC
/// form for old Outlook versions and printers that only look for it.
pub fn ehlo_reply(hostname: &str, client: &[u8], ext: &Extensions) -> Vec<u8> {
    let client: String = String::from_utf8_lossy(client)
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let mut lines = vec![format!("{hostname} Hello {client}")];
    lines.push("PIPELINING".into());
    lines.push(match ext.size {
        Some(n) if n > 0 => format!("SIZE {n}"),
        _ => "SIZE".into(),
    });
    lines.push("8BITMIME".into());
    if ext.starttls {
        lines.push("STARTTLS".into());
    }
    if ext.auth {
        lines.push("AUTH PLAIN LOGIN".into());
        lines.push("AUTH=PLAIN LOGIN".into());
    }
    lines.push("ENHANCEDSTATUSCODES".into());
    let last = lines.len() - 1;
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        out.extend_from_slice(if i == last { b"250 " } else { b"250-" });
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `MAIL FROM:<sender> params` for the upstream.
pub fn mail_from(sender: &[u8], params: &[u8]) -> Vec<u8> {
    let mut out = b"MAIL FROM:<".to_vec();
    out.extend_from_slice(sender);
    out.push(b'>');
    if !params.is_empty() {
        out.push(b' ');
        out.extend_from_slice(params);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Replies the proxy writes itself.
pub mod reply {
    /// RFC 5321 §4.2.4.
    pub const UNKNOWN: &str = "500 5.5.2 Error: command not recognized\r\n";
    /// A line with a control byte (NUL, bare CR, ...): refused, never passed upstream.
    pub const CONTROL: &str = "501 5.5.2 Syntax error: control characters are not allowed\r\n";
    /// An HTTP request on the SMTP port (Postfix answers its forbidden commands with 221).
    pub const HTTP_REFUSED: &str =
        "221 2.7.0 Error: HTTP request refused; this is an SMTP server, closing connection\r\n";
    /// Overlong line (RFC 5321 §4.5.3.1.4).
    pub const TOO_LONG: &str = "500 5.5.6 Error: line too long\r\n";
    /// RFC 5321 §4.1.1.9.
    pub const OK: &str = "250 2.0.0 Ok\r\n";
    /// RFC 5321 §3.5.3.
    pub const VRFY: &str =
        "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
    /// HELP.
    pub const HELP: &str =
        "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT\r\n";
    /// QUIT.
    pub const BYE: &str = "221 2.0.0 Bye\r\n";
    /// Sequence errors.
    pub const EHLO_FIRST: &str = "503 5.5.1 Error: send HELO/EHLO first\r\n";
    /// MAIL without AUTH from an address that is not allow-listed.
    pub const AUTH_REQUIRED: &str = "530 5.7.0 Authentication required\r\n";
    /// RFC 3207 §4.
    pub const TLS_FIRST: &str = "530 5.7.0 Must issue a STARTTLS command first\r\n";
    /// STARTTLS not offered.
    pub const NO_TLS: &str = "502 5.5.1 Error: STARTTLS not available\r\n";
    /// STARTTLS twice.
    pub const ALREADY_TLS: &str = "503 5.5.1 Error: TLS already active\r\n";
    /// RFC 3207 §4.
    pub const TLS_READY: &str = "220 2.0.0 Ready to start TLS\r\n";
    /// RFC 4954 §4.
    pub const AUTH_AGAIN: &str = "503 5.5.1 Error: already authenticated\r\n";
    /// RFC 4954 §4.
    pub const MECHANISM: &str = "504 5.5.4 Unrecognized authentication mechanism\r\n";
    /// RFC 4954 §4.
    pub const CANCELLED: &str = "501 5.7.0 Authentication cancelled\r\n";
    /// RFC 4954 §4.
    pub const BAD_BASE64: &str = "501 5.5.2 Invalid base64 data\r\n";
    /// RFC 4954 §6.
    pub const AUTH_OK: &str = "235 2.7.0 Authentication successful\r\n";
    /// RFC 4954 §6.
    pub const AUTH_FAILED: &str = "535 5.7.8 Error: authentication failed\r\n";
    /// Closing after repeated failures.
    pub const TOO_MANY_FAILURES: &str = "421 4.7.0 Error: too many failed authentications\r\n";
    /// Closing after repeated protocol errors (as Postfix's smtpd_hard_error_limit).
    pub const TOO_MANY_ERRORS: &str = "421 4.7.0 Error: too many errors\r\n";
    /// Not offered.
    pub const NOT_IMPLEMENTED: &str = "502 5.5.1 Error: command not implemented\r\n";
    /// RCPT/DATA without MAIL.
    pub const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command\r\n";
    /// DATA without RCPT.
    pub const NEED_RCPT: &str = "503 5.5.1 Error: need RCPT command\r\n";
    /// MAIL inside a transaction.
    pub const NESTED_MAIL: &str = "503 5.5.1 Error: nested MAIL command\r\n";
    /// Shutdown.
    pub const SHUTDOWN: &str = "421 4.3.2 Service shutting down, closing transmission channel\r\n";
    /// Upstream failed mid-message: the message was not accepted (RFC 5321 §4.2.5).
    pub const DATA_LOST: &str =
        "451 4.4.2 Error: connection to the upstream server was lost; message not sent, try again\r\n";
    /// Upstream timed out on the final reply.
    pub const DATA_TIMEOUT: &str =
        "451 4.4.2 Error: upstream server did not confirm the message in time; not sent, try again\r\n";
    /// Message refused locally for an ambiguous end-of-data sequence.
    pub const SMUGGLING: &str =
        "554 5.6.11 Error: bare CR or LF next to a dot line (SMTP smuggling); message rejected\r\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&[u8], Command)] = &[
            (b"EHLO printer.local", Command::Ehlo(b"printer.local")),
            (b"ehlo x", Command::Ehlo(b"x")),
            (b"HELO x", Command::Helo(b"x")),
            (b"STARTTLS", Command::StartTls),
            (b"STARTTLS now", Command::Unknown),
            (
                b"AUTH PLAIN",
                Command::Auth {
                    mechanism: b"PLAIN",
                    initial: None,
                },
            ),
            (
                b"AUTH PLAIN AGZvbwBiYXI=",
                Command::Auth {
                    mechanism: b"PLAIN",
                    initial: Some(b"AGZvbwBiYXI="),
                },
            ),
            (
                b"MAIL FROM:<a@b.c>",
                Command::Mail {
                    path: b"a@b.c",
                    params: b"",
                },
            ),
            (
                b"mail from:<a@b.c> SIZE=100 BODY=8BITMIME",
                Command::Mail {
                    path: b"a@b.c",
                    params: b"SIZE=100 BODY=8BITMIME",
                },
            ),
            (
                b"MAIL FROM: <a@b.c>",
                Command::Mail {
                    path: b"a@b.c",
                    params: b"",
                },
            ),
            (
                b"MAIL FROM:<>",
                Command::Mail {
                    path: b"",
                    params: b"",
                },
            ),
            (
                b"MAIL FROM:scanner@printer.local",
                Command::Mail {
                    path: b"scanner@printer.local",
                    params: b"",
                },
            ),
            (
                b"MAIL FROM:<a@b",
                Command::BadSyntax("501 5.1.7 Bad sender address syntax\r\n"),
            ),
            (
                b"MAIL TO:<a@b>",
                Command::BadSyntax("501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
            ),
            (b"RCPT TO:<x@y.z>", Command::Rcpt { arg: b"<x@y.z>" }),
            (
                b"RCPT TO:",
                Command::BadSyntax("501 5.5.4 Syntax: RCPT TO:<address>\r\n"),
            ),
            (b"DATA", Command::Data),
            (b"BDAT 100 LAST", Command::Bdat),
            (b"RSET", Command::Rset),
            (b"NOOP", Command::Noop),
            (b"QUIT", Command::Quit),
            (b"VRFY root", Command::Vrfy),
            (b"HELP", Command::Help),
            (b"\xff\xfe\x00", Command::BadSyntax(reply::CONTROL)),
            (b"\xff\xfe", Command::Unknown),
            // Control bytes anywhere, in any argument (issue 16, item 5).
            (
                b"MAIL FROM:<a@b.c> SIZE=10\rRCPT TO:<x@y.z>",
                Command::BadSyntax(reply::CONTROL),
            ),
            (b"RCPT TO:<x@y.z>\0", Command::BadSyntax(reply::CONTROL)),
            (
                b"RCPT TO:<x@y.z> NOTIFY=\x1b[2K",
                Command::BadSyntax(reply::CONTROL),
            ),
            (b"EHLO a\rb", Command::BadSyntax(reply::CONTROL)),
            (b"NOOP\x7f", Command::BadSyntax(reply::CONTROL)),
            (
                b"RCPT TO:<x@y.z>\tNOTIFY=NEVER",
                Command::Rcpt {
                    arg: b"<x@y.z>\tNOTIFY=NEVER",
                },
            ),
            // HTTP (issue 16, item 1).
            (b"POST / HTTP/1.1", Command::Http),
            (b"GET", Command::Http),
            (b"connect smtp.qq.com:465", Command::Http),
            (b"Host: 127.0.0.1:2525", Command::Http),
            (b"Content-Type: text/plain\r", Command::Http),
            (b"", Command::Unknown),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn ehlo_replies() {
        let r = ehlo_reply(
            "localhost",
            b"pc",
            &Extensions {
                starttls: true,
                auth: true,
                size: Some(73_400_320),
            },
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "250-localhost Hello pc\r\n250-PIPELINING\r\n250-SIZE 73400320\r\n250-8BITMIME\r\n\
250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n"
        );
        let r = ehlo_reply(
            "h",
            b"\r\nx",
            &Extensions {
                starttls: false,
                auth: false,
                size: None,
            },
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "250-h Hello x\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
        );
        assert_eq!(
            mail_from(b"a@qq.com", b"SIZE=5"),
            b"MAIL FROM:<a@qq.com> SIZE=5\r\n"
        );
        assert_eq!(mail_from(b"a@qq.com", b""), b"MAIL FROM:<a@qq.com>\r\n");
    }
}
