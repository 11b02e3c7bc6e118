//! Just enough JSON (RFC 8259) to read tracing-subscriber's JSON log lines without
//! serde_json: objects, strings with escapes, and other values kept as raw text.

/// A parsed JSON value; arrays, numbers, booleans and null are kept as raw text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// A string, unescaped.
    Str(String),
    /// An object's members, in order.
    Obj(Vec<(String, Json)>),
    /// Any other value, as it appeared.
    Raw(String),
}

impl Json {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as text: a string's content or a raw value's text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Json::Str(s) | Json::Raw(s) => Some(s),
            Json::Obj(_) => None,
        }
    }
}

/// Parses one complete JSON value (surrounding whitespace allowed).
pub fn parse(text: &str) -> Option<Json> {
    let mut scan = Scan {
        s: text.as_bytes(),
        i: 0,
    };
    let value = scan.value(0)?;
    scan.ws();
    (scan.i == scan.s.len()).then_some(value)
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

/// Nesting bound: log lines are shallow; a deep one is not ours.
const MAX_DEPTH: usize = 64;

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(b)).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => {
                let start = self.i;
                self.i += 1;
                if self.eat(b']').is_none() {
                    loop {
                        self.value(depth + 1)?;
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
                self.raw_from(start)
            }
            b'"' => self.string().map(Json::Str),
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())?;
                self.raw_from(start)
            }
        }
    }

    fn raw_from(&self, start: usize) -> Option<Json> {
        let raw = self.s.get(start..self.i)?;
        Some(Json::Raw(String::from_utf8_lossy(raw).into_owned()))
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.eat(b'{')?;
        let mut members = Vec::new();
        if self.eat(b'}').is_some() {
            return Some(Json::Obj(members));
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':')?;
            let value = self.value(depth + 1)?;
            members.push((key, value));
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(Json::Obj(members));
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let n = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        self.i += 4;
        Some(n)
    }

    /// A string at the cursor (RFC 8259 §7), escapes and surrogate pairs decoded.
    fn string(&mut self) -> Option<String> {
        (self.peek() == Some(b'"')).then_some(())?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                (self.s.get(self.i..self.i + 2) == Some(b"\\u")).then_some(())?;
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + lo.checked_sub(0xDC00)?
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(b),
            }
        }
    }
}
