//! IMAP command syntax for the login phase (RFC 3501 §9, RFC 9051 §9, RFC 7888): tags,
//! command names, literal markers and the argument parsers, over bytes, never panicking.

use crate::proto::Credentials;
use crate::secrets::{wipe, Secret};

/// A command tag: 1*<any ASTRING-CHAR except "+"> (RFC 3501 §9).
#[derive(Debug, Clone)]
pub(super) struct Tag(Vec<u8>);

/// The commands this phase knows; everything else waits for the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Capability,
    Noop,
    Logout,
    Id,
    StartTls,
    Login,
    Authenticate,
    /// A well-formed command name valid only after login (SELECT, LIST...).
    Other,
    /// No command name, or one that is not an atom.
    Invalid,
}

impl Verb {
    pub(super) fn parse(word: &[u8]) -> Verb {
        const KNOWN: &[(&[u8], Verb)] = &[
            (b"CAPABILITY", Verb::Capability),
            (b"NOOP", Verb::Noop),
            (b"LOGOUT", Verb::Logout),
            (b"ID", Verb::Id),
            (b"STARTTLS", Verb::StartTls),
            (b"LOGIN", Verb::Login),
            (b"AUTHENTICATE", Verb::Authenticate),
        ];
        if word.is_empty() || !word.iter().all(|&b| is_atom_char(b)) {
            return Verb::Invalid;
        }
        // Command names are case-insensitive (RFC 3501 §9, preamble).
        KNOWN
            .iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name))
            .map_or(Verb::Other, |&(_, verb)| verb)
    }
}

/// The start of a command: its tag (when valid), its verb, and where in the first line
/// the arguments start.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) tag: Option<Tag>,
    pub(super) verb: Verb,
    pub(super) args: usize,
}

impl Head {
    pub(super) fn parse(line: &[u8]) -> Head {
        let Some(sp) = memchr::memchr(b' ', line) else {
            // No command after the tag: we cannot even tell that a tag was meant.
            return Head {
                tag: None,
                verb: Verb::Invalid,
                args: line.len(),
            };
        };
        let (tag, rest) = line.split_at(sp);
        let rest = rest.get(1..).unwrap_or_default();
        let word_len = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let tag =
            (!tag.is_empty() && tag.iter().all(|&b| is_tag_char(b))).then(|| Tag(tag.to_vec()));
        Head {
            tag,
            verb: Verb::parse(rest.get(..word_len).unwrap_or_default()),
            args: sp + 1 + word_len,
        }
    }
}

/// A growable buffer that may hold a password: wiped when dropped, and when its bytes
/// move to a larger allocation, so no stale copy is left behind on the heap.
pub(super) struct WipeBuf(Vec<u8>);

impl WipeBuf {
    pub(super) fn new() -> Self {
        WipeBuf(Vec::new())
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn reserve(&mut self, extra: usize) {
        let need = self.0.len().saturating_add(extra);
        if need > self.0.capacity() {
            let mut bigger = Vec::with_capacity(need.max(self.0.capacity().saturating_mul(2)));
            bigger.extend_from_slice(&self.0);
            wipe(&mut self.0);
            self.0 = bigger;
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    pub(super) fn from(&self, start: usize) -> &[u8] {
        self.0.get(start..).unwrap_or_default()
    }
}

impl Drop for WipeBuf {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::fmt::Debug for WipeBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WipeBuf({} bytes)", self.0.len())
    }
}

/// A literal announced at the very end of a line: `{n}` or, RFC 7888, `{n+}`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Marker {
    pub(super) len: usize,
    pub(super) non_sync: bool,
}

impl Marker {
    pub(super) fn find(line: &[u8]) -> Option<Marker> {
        let body = line.strip_suffix(b"}")?;
        let open = memchr::memrchr(b'{', body)?;
        let digits = body.get(open + 1..)?;
        let (digits, non_sync) = match digits.strip_suffix(b"+") {
            Some(d) => (d, true),
            None => (digits, false),
        };
        Some(Marker {
            len: parse_number(digits)?,
            non_sync,
        })
    }
}

/// A decimal number; saturates instead of overflowing (a huge literal is refused anyway).
fn parse_number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// ATOM-CHAR or `]` (ASTRING-CHAR, RFC 3501 §9), i.e. 0x21..0x7E but for atom-specials.
fn is_astring_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\".contains(&b)
}

fn is_atom_char(b: u8) -> bool {
    is_astring_char(b) && b != b']'
}

/// `tag = 1*<any ASTRING-CHAR except "+">` (RFC 3501 §9).
fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// Arguments in an astring position. Deliberately more lenient than RFC 3501 §9 for
/// legacy clients that send passwords unquoted: list wildcards and 8-bit bytes are
/// accepted in atoms (only here; tags and command names stay strict).
fn is_lenient_atom_byte(b: u8) -> bool {
    b >= 0x80 || b == b'%' || b == b'*' || is_astring_char(b)
}

/// A cursor over a collected command, after its command name.
pub(super) struct Parser<'a> {
    rest: &'a [u8],
}

impl<'a> Parser<'a> {
    /// A parser over the arguments that follow a command name.
    pub(super) fn new(rest: &'a [u8]) -> Self {
        Parser { rest }
    }

    /// One or more spaces (one is the grammar; more is tolerated).
    fn sp(&mut self) -> Option<()> {
        let n = self.rest.iter().take_while(|&&b| b == b' ').count();
        self.rest = self.rest.get(n..)?;
        (n > 0).then_some(())
    }

    /// True when only (tolerated trailing) spaces remain.
    pub(super) fn at_end(&self) -> bool {
        self.rest.iter().all(|&b| b == b' ')
    }

    fn end(&self) -> Option<()> {
        self.at_end().then_some(())
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        let (&first, rest) = self.rest.split_first()?;
        (first == want).then(|| self.rest = rest)
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> Option<&'a [u8]> {
        let n = self.rest.iter().take_while(|&&b| keep(b)).count();
        let (taken, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        (n > 0).then_some(taken)
    }

    /// An atom (RFC 3501 §9), e.g. a SASL mechanism name or an initial response.
    fn atom(&mut self) -> Option<&'a [u8]> {
        self.take_while(is_atom_char)
    }

    /// `astring = 1*ASTRING-CHAR / string`. The result is allocated at its exact size so
    /// that a password never leaves a reallocated copy behind.
    fn astring(&mut self) -> Option<Vec<u8>> {
        match self.rest.first()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => self.take_while(is_lenient_atom_byte).map(<[u8]>::to_vec),
        }
    }

    /// `quoted = DQUOTE *QUOTED-CHAR DQUOTE`, where only `\\` and `\"` are escapes and
    /// CR, LF and NUL are forbidden (RFC 3501 §9; 8-bit text per RFC 9051 §9).
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.byte(b'"')?;
        let mut len = 0;
        let mut i = 0;
        loop {
            match *self.rest.get(i)? {
                b'"' => break,
                b'\\' if matches!(self.rest.get(i + 1), Some(b'\\' | b'"')) => i += 2,
                b'\\' | b'\r' | b'\n' | 0 => return None,
                _ => i += 1,
            }
            len += 1;
        }
        let (body, rest) = self.rest.split_at_checked(i)?;
        let mut out = Vec::with_capacity(len);
        let mut escaped = false;
        for &b in body {
            if b == b'\\' && !escaped {
                escaped = true;
            } else {
                out.push(b);
                escaped = false;
            }
        }
        self.rest = rest.get(1..)?;
        Some(out)
    }

    /// `literal = "{" number ["+"] "}" CRLF *CHAR8` (RFC 3501 §4.3, RFC 7888 §3), as
    /// collected by [`ImapLogin`]: the CRLF is always present and the data complete.
    fn literal(&mut self) -> Option<Vec<u8>> {
        self.byte(b'{')?;
        let digits = self.take_while(|b| b.is_ascii_digit())?;
        let len = parse_number(digits)?;
        let _ = self.byte(b'+');
        self.byte(b'}')?;
        self.byte(b'\r')?;
        self.byte(b'\n')?;
        let (data, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        Some(data.to_vec())
    }
}

/// `LOGIN SP userid SP password` (RFC 3501 §6.2.3).
pub(super) fn parse_login(args: &[u8]) -> Option<Credentials> {
    let mut p = Parser::new(args);
    p.sp()?;
    let user = p.astring()?;
    p.sp()?;
    let password = Secret::new(p.astring()?);
    p.end()?;
    Some(Credentials {
        user: String::from_utf8_lossy(&user).into_owned(),
        password,
    })
}

/// `ID SP ("(" *(string SP nstring) ")" / nil)` (RFC 2971 §3.1), parsed loosely: any
/// astrings (NIL included), spaces optional, even counts not enforced.
pub(super) fn parse_id(args: &[u8]) -> Option<()> {
    let mut p = Parser::new(args);
    p.sp()?;
    if p.byte(b'(').is_none() {
        return p
            .atom()
            .filter(|a| a.eq_ignore_ascii_case(b"NIL"))
            .and(p.end());
    }
    loop {
        let _ = p.sp();
        if p.byte(b')').is_some() {
            return p.end();
        }
        p.astring()?;
    }
}

/// `tag SP text CRLF`.
pub(super) fn tagged(tag: &Tag, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.0.len() + text.len() + 3);
    out.extend_from_slice(&tag.0);
    out.push(b' ');
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    out
}

/// `AUTHENTICATE SP auth-type [SP (base64 / "=")]` (RFC 3501 §6.2.2, RFC 4959 §3): the
/// mechanism name and the initial response, if any.
pub(super) fn parse_authenticate(args: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let mut p = Parser::new(args);
    p.sp()?;
    let mechanism = p.atom()?;
    if p.at_end() {
        return Some((mechanism, None));
    }
    p.sp()?;
    let initial = p.atom()?;
    p.end()?;
    Some((mechanism, Some(initial)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line and the literal it announces: `(length, non-synchronising)`.
    type MarkerCase = (&'static [u8], Option<(usize, bool)>);
    /// Input, the astring parsed from it, and what follows.
    type AstringCase = (&'static [u8], Option<&'static [u8]>, &'static [u8]);

    #[test]
    fn literal_markers() {
        let cases: &[MarkerCase] = &[
            (b"a LOGIN {5}", Some((5, false))),
            (b"a LOGIN {5+}", Some((5, true))),
            (b"{0}", Some((0, false))),
            (
                b"a LOGIN x {99999999999999999999999}",
                Some((usize::MAX, false)),
            ),
            (b"a LOGIN {5} ", None),
            (b"a LOGIN {}", None),
            (b"a LOGIN {+}", None),
            (b"a LOGIN {5++}", None),
            (b"a LOGIN {-5}", None),
            (b"a LOGIN 5}", None),
        ];
        for (line, want) in cases {
            let got = Marker::find(line).map(|m| (m.len, m.non_sync));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn heads() {
        let cases: &[(&[u8], bool, Verb)] = &[
            (b"a1 LOGIN x y", true, Verb::Login),
            (b"A.b-c_d]e authenticate", true, Verb::Authenticate),
            (b"a SELECT INBOX", true, Verb::Other),
            (b"a+ NOOP", false, Verb::Noop),
            (b"a{ NOOP", false, Verb::Noop),
            (b"\xc3\xa4 NOOP", false, Verb::Noop),
            (b" NOOP", false, Verb::Noop),
            (b"a NO]OP", true, Verb::Invalid),
            (b"a ", true, Verb::Invalid),
            (b"NOOP", false, Verb::Invalid),
        ];
        for (line, tagged, verb) in cases {
            let head = Head::parse(line);
            let what = String::from_utf8_lossy(line);
            assert_eq!(head.tag.is_some(), *tagged, "{what}");
            assert_eq!(head.verb, *verb, "{what}");
        }
    }

    #[test]
    fn astrings() {
        let cases: &[AstringCase] = &[
            (b"atom rest", Some(b"atom"), b" rest"),
            (b"\"a b\\\\c\\\"d\" rest", Some(b"a b\\c\"d"), b" rest"),
            (b"\"\"", Some(b""), b""),
            (b"{3}\r\nabc rest", Some(b"abc"), b" rest"),
            (b"{3+}\r\na\r\n", Some(b"a\r\n"), b""),
            (b"{4}\r\nabc", None, b""),
            (b"{3}abc", None, b""),
            (b"\"a\\b\"", None, b""),
            (b"\"a", None, b""),
            (b"(x)", None, b""),
            (b"", None, b""),
        ];
        for (input, want, rest) in cases {
            let mut p = Parser::new(input);
            let got = p.astring();
            let what = String::from_utf8_lossy(input);
            assert_eq!(got.as_deref(), *want, "{what}");
            if want.is_some() {
                assert_eq!(p.rest, *rest, "{what}");
            }
        }
    }
}
