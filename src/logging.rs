//! Log output hygiene: no byte a client chose can break a log line, forge another one or
//! drive the terminal that shows the log.
//!
//! User names, EHLO names, envelope addresses, upstream replies and error texts all come
//! from the network. Written raw, a CR or LF in one of them ends the line early and starts
//! a forged one (`… result="ok"`), and an ESC sequence can erase or recolour what an
//! operator sees. Rather than trusting every call site to escape what it logs, the escape
//! happens where values are written, once for all of them:
//!
//! - text format: [`EscapedFields`] formats every field of every event and span (the
//!   message included) through [`escape`];
//! - JSON format: the JSON encoder already escapes C0 controls (`\r`, `\n`, `\u001b`);
//!   [`JsonWriter`] escapes the remaining characters of the same rule ([`must_escape`]:
//!   C1 controls, line and paragraph separators, bidirectional overrides) as `\uXXXX`.
//!
//! Escapes are visible (`\r`, `\n`, `\x1b`, `\u{202e}`) so that an operator can see what
//! was sent. Colours are used only when stderr is a terminal (and `NO_COLOR` is unset), so
//! files and `docker logs` hold plain text.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Whether `c` may not appear raw in a log line: every control character (C0 such as
/// CR, LF, TAB and ESC; DEL; C1 such as U+009B, an 8-bit CSI), the Unicode line and
/// paragraph separators (some viewers break lines there), and the bidirectional
/// overrides and isolates that reorder what a terminal shows ("Trojan Source").
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character of [`must_escape`] made visible: `\r`, `\n`, `\t`, `\xNN`
/// for the other ASCII and C1 controls, `\u{NNNN}` for the rest. A backslash is left as
/// it is: it can make a value ambiguous to read, but cannot end or forge a line.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(must_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if must_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text format's field formatter: `message` first as it is, then `name=value`
/// pairs, like tracing-subscriber's default, with every value passed through
/// [`escape`]. Used for events and span fields alike.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let value = escape(value);
        self.result = match field.name() {
            "message" => write!(self.writer, "{sep}{value}"),
            name => write!(
                self.writer,
                "{sep}{}={value}",
                name.strip_prefix("r#").unwrap_or(name)
            ),
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value);
        } else {
            // Quoted, as the default formatter shows strings.
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// Wraps the JSON format's writer: escapes, inside the encoded line, the characters of
/// [`must_escape`] that JSON leaves raw (C1 controls, separators, bidi overrides). The
/// encoder has already turned every C0 control into an escape, so any such character
/// can only be inside a JSON string, where `\uXXXX` means the same character.
#[derive(Debug, Clone, Copy)]
pub struct JsonWriter<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonWriter<M> {
    type Writer = JsonEscaping<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscaping(self.0.make_writer())
    }
}

/// The writer made by [`JsonWriter`].
#[derive(Debug)]
pub struct JsonEscaping<W>(W);

impl<W: io::Write> io::Write for JsonEscaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter hands over one whole line per call (it formats into a buffer
        // first), so no character is split across calls.
        match std::str::from_utf8(buf) {
            Ok(s) if s.chars().any(|c| must_escape(c) && c != '\n') => {
                let mut out = String::with_capacity(s.len() + 16);
                for c in s.chars() {
                    if must_escape(c) && c != '\n' {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            let _ = write!(out, "\\u{u:04x}");
                        }
                    } else {
                        out.push(c);
                    }
                }
                self.0.write_all(out.as_bytes())?;
            }
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether the text log may use colours: only on a terminal, and not with `NO_COLOR`.
pub fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests;
