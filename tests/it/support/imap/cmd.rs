//! IMAP command syntax for the fake server: tokens (atoms, quoted strings, literals,
//! parenthesised lists), sequence sets, FETCH items and LIST wildcards (RFC 3501 §4, §9).

/// One token of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// An atom; brackets are kept inside it (`BODY.PEEK[]`, `BODY[HEADER.FIELDS (A B)]`).
    Atom(Vec<u8>),
    /// A quoted string (unescaped) or a literal's bytes.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Tok>),
}

impl Tok {
    /// The bytes of an astring (atom, quoted string or literal).
    pub fn astring(&self) -> Option<&[u8]> {
        match self {
            Tok::Atom(b) | Tok::Str(b) => Some(b),
            Tok::List(_) => None,
        }
    }

    /// An atom, upper-cased, for keyword comparison.
    pub fn keyword(&self) -> Option<Vec<u8>> {
        match self {
            Tok::Atom(b) => Some(b.to_ascii_uppercase()),
            _ => None,
        }
    }
}

/// Deep enough for FETCH item lists; bounds the parser's recursion on hostile input.
const MAX_DEPTH: usize = 8;

/// If a command line ends in a literal announcement `{n}` or `{n+}` (RFC 3501 §4.3,
/// RFC 7888 non-synchronizing), returns `(n, non_sync)`.
pub fn literal_len(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', inner)?;
    let spec = inner.get(open + 1..)?;
    let (digits, non_sync) = match spec.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (spec, false),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, non_sync))
}

/// Splits a whole command (literals inline as `{n}\r\n<n bytes>`) into tokens.
pub fn tokenize(raw: &[u8]) -> Result<Vec<Tok>, &'static str> {
    let mut p = Parser { s: raw, i: 0 };
    p.seq(0)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn seq(&mut self, depth: usize) -> Result<Vec<Tok>, &'static str> {
        let mut out = Vec::new();
        loop {
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
            match self.peek() {
                None if depth == 0 => return Ok(out),
                None => return Err("unclosed list"),
                Some(b')') if depth > 0 => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b')') => return Err("unexpected )"),
                Some(b'(') if depth < MAX_DEPTH => {
                    self.i += 1;
                    out.push(Tok::List(self.seq(depth + 1)?));
                }
                Some(b'(') => return Err("lists nested too deep"),
                Some(b'"') => out.push(self.quoted()?),
                Some(b'{') => out.push(self.literal()?),
                Some(_) => out.push(self.atom()?),
            }
        }
    }

    fn quoted(&mut self) -> Result<Tok, &'static str> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Tok::Str(out));
                }
                Some(b'\\') => {
                    // quoted-specials: only `\"` and `\\` are valid escapes (RFC 3501 §9).
                    let c = self.s.get(self.i + 1).copied();
                    match c {
                        Some(c @ (b'"' | b'\\')) => out.push(c),
                        _ => return Err("bad escape in quoted string"),
                    }
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Tok, &'static str> {
        let rest = self.s.get(self.i..).unwrap_or_default();
        let close = memchr::memchr(b'}', rest).ok_or("bad literal")?;
        let (n, _) = literal_len(rest.get(..=close).ok_or("bad literal")?).ok_or("bad literal")?;
        let start = self.i + close + 1;
        if self.s.get(start..start + 2) != Some(b"\r\n") {
            return Err("literal without CRLF");
        }
        let data = self
            .s
            .get(start + 2..start + 2 + n)
            .ok_or("short literal")?;
        self.i = start + 2 + n;
        Ok(Tok::Str(data.to_vec()))
    }

    fn atom(&mut self) -> Result<Tok, &'static str> {
        let start = self.i;
        let mut brackets = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'[' => brackets += 1,
                b']' => brackets = brackets.checked_sub(1).ok_or("unbalanced ]")?,
                b' ' | b'(' | b')' if brackets == 0 => break,
                b'"' | b'{' if brackets == 0 => break,
                b'\r' | b'\n' => return Err("bare line break"),
                _ => {}
            }
            self.i += 1;
        }
        if brackets != 0 {
            return Err("unbalanced [");
        }
        Ok(Tok::Atom(
            self.s.get(start..self.i).unwrap_or_default().to_vec(),
        ))
    }
}

/// Parses a sequence set (`1`, `2:4`, `1:*`, `1,3:5`) into inclusive ranges, with `*`
/// standing for `star` (the highest message number or UID in use; RFC 3501 §9).
pub fn seq_set(s: &[u8], star: u32) -> Option<Vec<(u32, u32)>> {
    let num = |b: &[u8]| -> Option<u32> {
        if b == b"*" {
            return Some(star);
        }
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok().filter(|n| *n > 0)
    };
    s.split(|c| *c == b',')
        .map(|part| {
            let mut ends = part.splitn(2, |c| *c == b':');
            let a = num(ends.next()?)?;
            let b = match ends.next() {
                Some(b) => num(b)?,
                None => a,
            };
            Some((a.min(b), a.max(b)))
        })
        .collect()
}

/// A FETCH data item this fake can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// `BODY[]` / `BODY.PEEK[]` (answered as `BODY[]`).
    Body,
    /// `BODY[HEADER]` / `BODY.PEEK[HEADER]` (answered as `BODY[HEADER]`).
    Header,
    /// `RFC822`.
    Rfc822,
    /// `RFC822.HEADER`.
    Rfc822Header,
    /// `RFC822.SIZE`.
    Size,
    /// `UID`.
    Uid,
    /// `FLAGS`.
    Flags,
    /// `INTERNALDATE`.
    InternalDate,
}

/// The FETCH items of `args` (one item, a macro, or a parenthesised list), or `None` if
/// any is unsupported.
pub fn fetch_items(args: &[Tok]) -> Option<Vec<Item>> {
    let toks: &[Tok] = match args {
        [Tok::List(items)] => items,
        [one @ Tok::Atom(_)] => std::slice::from_ref(one),
        _ => return None,
    };
    let mut out = Vec::new();
    for t in toks {
        let kw = t.keyword()?;
        match kw.as_slice() {
            b"BODY[]" | b"BODY.PEEK[]" => out.push(Item::Body),
            b"BODY[HEADER]" | b"BODY.PEEK[HEADER]" => out.push(Item::Header),
            b"RFC822" => out.push(Item::Rfc822),
            b"RFC822.HEADER" => out.push(Item::Rfc822Header),
            b"RFC822.SIZE" => out.push(Item::Size),
            b"UID" => out.push(Item::Uid),
            b"FLAGS" => out.push(Item::Flags),
            b"INTERNALDATE" => out.push(Item::InternalDate),
            // RFC 3501 §6.4.5: FAST = (FLAGS INTERNALDATE RFC822.SIZE).
            b"FAST" => out.extend([Item::Flags, Item::InternalDate, Item::Size]),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// LIST pattern match: `*` matches anything, `%` anything but the delimiter `/`
/// (RFC 3501 §6.3.8). `INBOX` matches case-insensitively.
pub fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    if name.eq_ignore_ascii_case(b"INBOX") && pattern.eq_ignore_ascii_case(b"INBOX") {
        return true;
    }
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => {
            (0..=name.len()).any(|k| wildcard(rest, name.get(k..).unwrap_or_default()))
        }
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|k| *k == 0 || name.get(k - 1) != Some(&b'/'))
            .any(|k| wildcard(rest, name.get(k..).unwrap_or_default())),
        Some((c, rest)) => {
            name.first() == Some(c) && wildcard(rest, name.get(1..).unwrap_or_default())
        }
    }
}

/// An IMAP quoted string for `s` (RFC 3501 §9 quoted-specials escaped).
pub fn quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out
}

#[test]
fn tokenizer_table() {
    let atom = |s: &str| Tok::Atom(s.as_bytes().to_vec());
    let st = |s: &str| Tok::Str(s.as_bytes().to_vec());
    let cases: &[(&[u8], Vec<Tok>)] = &[
        (
            b"a LOGIN u p",
            vec![atom("a"), atom("LOGIN"), atom("u"), atom("p")],
        ),
        (
            b"a LOGIN \"u\\\"x\" \"p\\\\\"",
            vec![atom("a"), atom("LOGIN"), st("u\"x"), st("p\\")],
        ),
        (
            b"a LOGIN {3}\r\nu y {2+}\r\npw",
            vec![atom("a"), atom("LOGIN"), st("u y"), st("pw")],
        ),
        (
            b"a FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (FROM)])",
            vec![
                atom("a"),
                atom("FETCH"),
                atom("1:*"),
                Tok::List(vec![atom("UID"), atom("BODY.PEEK[HEADER.FIELDS (FROM)]")]),
            ],
        ),
        (
            b"a LIST \"\" *",
            vec![atom("a"), atom("LIST"), st(""), atom("*")],
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(
            tokenize(raw).as_ref(),
            Ok(want),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    for bad in [
        &b"a (x"[..],
        b"a x)",
        b"a \"open",
        b"a {5}\r\nab",
        b"a \"\\q\"",
        b"a B]",
    ] {
        assert!(tokenize(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn literal_len_seq_set_and_wildcard_tables() {
    assert_eq!(literal_len(b"a LOGIN {11}"), Some((11, false)));
    assert_eq!(literal_len(b"a LOGIN {11+}"), Some((11, true)));
    assert_eq!(literal_len(b"a LOGIN {}"), None);
    assert_eq!(literal_len(b"a LOGIN \"x\""), None);
    assert_eq!(seq_set(b"1:*", 5), Some(vec![(1, 5)]));
    assert_eq!(seq_set(b"4:2,7", 9), Some(vec![(2, 4), (7, 7)]));
    assert_eq!(seq_set(b"0", 9), None);
    assert_eq!(seq_set(b"x", 9), None);
    for (pat, name, want) in [
        ("*", "&UXZO1mWHTvZZOQ-/QQ&kK5O9ouilgU-", true),
        ("%", "&UXZO1mWHTvZZOQ-/QQ&kK5O9ouilgU-", false),
        ("%", "Sent Messages", true),
        (
            "&UXZO1mWHTvZZOQ-/%",
            "&UXZO1mWHTvZZOQ-/QQ&kK5O9ouilgU-",
            true,
        ),
        ("inbox", "INBOX", true),
        ("Drafts", "Junk", false),
    ] {
        assert_eq!(
            wildcard(pat.as_bytes(), name.as_bytes()),
            want,
            "{pat} {name}"
        );
    }
}
