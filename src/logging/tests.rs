use std::sync::{Arc, Mutex};

use super::*;

#[test]
fn escape_table() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("scanner", "scanner"),
        ("a b", "a b"),
        ("x\r\n2026-01-01 INFO forged", "x\\r\\n2026-01-01 INFO forged"),
        ("\x1b[2Kerased", "\\x1b[2Kerased"),
        ("tab\there", "tab\\there"),
        ("nul\0del\x7f", "nul\\x00del\\x7f"),
        ("c1\u{9b}31m", "c1\\x9b31m"),
        ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
        ("rtl\u{202e}fdp.exe", "rtl\\u{202e}fdp.exe"),
        ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
        ("中文 ok", "中文 ok"),
        ("back\\slash", "back\\slash"),
    ];
    for (input, want) in cases {
        assert_eq!(escape(input), *want, "input {input:?}");
    }
    assert!(matches!(escape("plain"), Cow::Borrowed(_)));
}

/// A writer that collects everything into one buffer.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        self.clone()
    }
}

const HOSTILE: &str =
    "x\r\n2026-12-06T00:00:00Z  INFO session end result=\"ok\"\x1b[2K\u{9b}2J\u{202e}";

fn log_hostile() {
    let span = tracing::info_span!("session", client = %HOSTILE);
    let _g = span.enter();
    let err = io::Error::other(HOSTILE);
    tracing::info!(user = %HOSTILE, name = HOSTILE, dbg = ?HOSTILE, error = &err as &dyn std::error::Error, "local login failed for {HOSTILE}");
}

/// Every byte of the output is printable but the one line end.
fn assert_one_clean_line(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("utf-8");
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    assert!(text.ends_with('\n'), "{text}");
    let bad: Vec<char> = text[..text.len() - 1]
        .chars()
        .filter(|&c| must_escape(c))
        .collect();
    assert!(bad.is_empty(), "raw {bad:?} in {text}");
}

#[test]
fn text_format_escapes_every_field_and_the_message() {
    let sink = Sink::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(sink.clone())
        .with_ansi(false)
        .fmt_fields(EscapedFields)
        .finish();
    tracing::subscriber::with_default(subscriber, log_hostile);
    let out = sink.0.lock().unwrap().clone();
    assert_one_clean_line(&out);
    let text = String::from_utf8(out).unwrap();
    // Visible, so that an operator can see what was sent.
    assert!(text.contains("user=x\\r\\n2026"), "{text}");
    assert!(text.contains("\\x1b[2K"), "{text}");
    assert!(text.contains("session{client=x\\r\\n"), "{text}");
    assert!(text.contains("local login failed for x\\r\\n"), "{text}");
}

#[test]
fn json_format_leaves_no_raw_control_character() {
    let sink = Sink::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(JsonWriter(sink.clone()))
        .json()
        .finish();
    tracing::subscriber::with_default(subscriber, log_hostile);
    let out = sink.0.lock().unwrap().clone();
    assert_one_clean_line(&out);
    // Still valid JSON, with the original text inside.
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\\u009b2J"), "{text}");
    assert!(text.contains("\\u202e"), "{text}");
    assert!(text.contains("\\r\\n2026"), "{text}");
}
