//! Upstream IMAP: greeting, STARTTLS (RFC 3501 §6.2.1), LOGIN with the account's code
//! (quoted, or as literals when quoting cannot carry it), capability capture, and the
//! `ID` that NetEase requires before SELECT (RFC 2971).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Ctx, Dialect, UpstreamError, UpstreamStream};
use crate::config::Account;
use crate::net::LineStream;
use crate::secrets::Secret;

/// Largest literal accepted inside an untagged response during login.
const MAX_LITERAL: usize = 1024 * 1024;
/// Most untagged responses tolerated while waiting for one tagged response.
const MAX_UNTAGGED: usize = 1024;

/// A logged-in upstream IMAP session.
pub struct ImapUpstream {
    /// The connection; bytes already read after the login are in its buffer.
    pub conn: LineStream<UpstreamStream>,
    /// The post-login capability list (the words after `CAPABILITY`).
    pub capabilities: Option<Vec<u8>>,
}

/// One response: the untagged lines seen and the tagged completion.
pub(crate) struct Completion {
    /// The untagged lines, literals inline.
    pub(crate) untagged: Vec<BytesMut>,
    /// The tagged line.
    pub(crate) tagged: BytesMut,
}

impl Completion {
    /// `OK`, `NO` or `BAD` (upper-cased), from the tagged line.
    pub(crate) fn status(&self) -> Vec<u8> {
        let mut words = self.tagged[..].split(|&b| b == b' ');
        words.next();
        words
            .next()
            .unwrap_or_default()
            .trim_ascii()
            .to_ascii_uppercase()
    }
}

/// Reads one whole response line, following `{n}` literals (RFC 3501 §4.3).
pub(crate) async fn read_response<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    stage: &'static str,
) -> Result<BytesMut, UpstreamError> {
    let mut line = conn
        .read_line(ctx.timeout)
        .await
        .map_err(|e| ctx.line_error(stage, e))?;
    while let Some(n) = literal_len(&line) {
        if n > MAX_LITERAL || line.len() > MAX_LITERAL {
            return Err(ctx.protocol(stage, b"literal too large"));
        }
        let data = conn
            .read_exact_bytes(n, ctx.timeout)
            .await
            .map_err(|e| ctx.line_error(stage, e))?;
        line.extend_from_slice(&data);
        let rest = conn
            .read_line(ctx.timeout)
            .await
            .map_err(|e| ctx.line_error(stage, e))?;
        line.extend_from_slice(&rest);
    }
    Ok(line)
}

/// The size of a literal announced at the end of `line` (`{12}\r\n` or `{12+}\r\n`).
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let body = body.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads responses until the one tagged `tag`; `* BYE` is a refusal.
pub(crate) async fn complete<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    tag: &str,
    stage: &'static str,
) -> Result<Completion, UpstreamError> {
    let mut untagged = Vec::new();
    for _ in 0..MAX_UNTAGGED {
        let line = read_response(conn, ctx, stage).await?;
        if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
            return Ok(Completion {
                untagged,
                tagged: line,
            });
        }
        if line.starts_with(b"* BYE") {
            return Err(UpstreamError::Refused {
                server: ctx.server.clone(),
                reply: line.to_vec(),
            });
        }
        untagged.push(line);
    }
    Err(ctx.protocol(stage, b"too many untagged responses"))
}

/// Sends `line` and reads the responses up to the one tagged `tag`.
pub(crate) async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    tag: &str,
    stage: &'static str,
    line: &[u8],
) -> Result<Completion, UpstreamError> {
    conn.send(line, ctx.timeout)
        .await
        .map_err(|e| ctx.line_error(stage, e))?;
    complete(conn, ctx, tag, stage).await
}

/// The capability list in `line`: after `[CAPABILITY ` up to `]`, or after `* CAPABILITY `.
pub fn capabilities_in(line: &[u8]) -> Option<Vec<u8>> {
    let upper = line.to_ascii_uppercase();
    if let Some(i) = memchr::memmem::find(&upper, b"[CAPABILITY ") {
        let start = i + b"[CAPABILITY ".len();
        let end = start + memchr::memchr(b']', &line[start..])?;
        return Some(line[start..end].to_vec());
    }
    if upper.starts_with(b"* CAPABILITY ") {
        let caps = &line[b"* CAPABILITY ".len()..];
        return Some(caps.trim_ascii_end().to_vec());
    }
    None
}

/// Whether the capability list `caps` holds `word`.
pub(crate) fn has_capability(caps: &[u8], word: &[u8]) -> bool {
    caps.split(|&b| b == b' ')
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Reads the greeting: `* OK` goes on, `* BYE` is a refusal.
async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
) -> Result<BytesMut, UpstreamError> {
    let line = read_response(conn, ctx, "greeting").await?;
    let upper = line.to_ascii_uppercase();
    if upper.starts_with(b"* OK") {
        Ok(line)
    } else if upper.starts_with(b"* BYE") {
        Err(UpstreamError::Refused {
            server: ctx.server.clone(),
            reply: line.to_vec(),
        })
    } else {
        Err(ctx.protocol("greeting", &line))
    }
}

/// The IMAP STARTTLS dialog: only if the server lists STARTTLS.
pub struct Dialog;

impl Dialect for Dialog {
    async fn greeting(
        conn: &mut LineStream<UpstreamStream>,
        ctx: &Ctx,
    ) -> Result<(), UpstreamError> {
        greeting(conn, ctx).await.map(drop)
    }

    async fn negotiate(conn: &mut LineStream<TcpStream>, ctx: &Ctx) -> Result<(), UpstreamError> {
        let hello = greeting(conn, ctx).await?;
        let caps = match capabilities_in(&hello) {
            Some(c) => c,
            None => {
                let done = command(conn, ctx, "s0", "CAPABILITY", b"s0 CAPABILITY\r\n").await?;
                done.untagged
                    .iter()
                    .find_map(|l| capabilities_in(l))
                    .unwrap_or_default()
            }
        };
        if !has_capability(&caps, b"STARTTLS") {
            return Err(UpstreamError::NoStartTls {
                server: ctx.server.clone(),
            });
        }
        let done = command(conn, ctx, "s1", "STARTTLS", b"s1 STARTTLS\r\n").await?;
        if done.status() != b"OK" {
            return Err(UpstreamError::NoStartTls {
                server: ctx.server.clone(),
            });
        }
        Ok(())
    }
}

/// An IMAP string for `value`: a quoted string when it can carry it (7-bit text without
/// CR/LF/NUL, RFC 3501 §4.3), else `None` (send a literal).
pub fn quoted(value: &[u8]) -> Option<Vec<u8>> {
    if value
        .iter()
        .any(|&b| b == 0 || b == b'\r' || b == b'\n' || b >= 0x80)
    {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Some(out)
}

/// Sends `a1 LOGIN user code`, using synchronising literals where quoting cannot work.
async fn send_login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    user: &[u8],
    code: &Secret,
) -> Result<Completion, UpstreamError> {
    let mut line = Secret::new(b"a1 LOGIN ".to_vec());
    for (i, value) in [user, code.expose()].into_iter().enumerate() {
        let last = i == 1;
        match quoted(value) {
            Some(q) => {
                let mut v = line.expose().to_vec();
                v.extend_from_slice(&q);
                v.extend_from_slice(if last { b"\r\n" } else { b" " });
                line = Secret::new(v);
            }
            None => {
                let mut v = line.expose().to_vec();
                v.extend_from_slice(format!("{{{}}}\r\n", value.len()).as_bytes());
                conn.send(&v, ctx.timeout)
                    .await
                    .map_err(|e| ctx.line_error("LOGIN", e))?;
                let cont = read_response(conn, ctx, "LOGIN").await?;
                if !cont.starts_with(b"+") {
                    return Err(ctx.protocol("LOGIN", &cont));
                }
                let mut v = value.to_vec();
                v.extend_from_slice(if last { b"\r\n" } else { b" " });
                line = Secret::new(v);
            }
        }
    }
    conn.send(line.expose(), ctx.timeout)
        .await
        .map_err(|e| ctx.line_error("LOGIN", e))?;
    complete(conn, ctx, "a1", "LOGIN").await
}

/// Logs in as the account on a connection whose greeting has been read; sends `ID`
/// when the provider needs it.
pub async fn login(
    mut conn: LineStream<UpstreamStream>,
    ctx: &Ctx,
    account: &Account,
) -> Result<ImapUpstream, UpstreamError> {
    let ctx = ctx.clone();
    let done = send_login(&mut conn, &ctx, account.email.as_bytes(), &account.code).await?;
    match done.status().as_slice() {
        b"OK" => {}
        b"NO" if is_transient(&done.tagged) => {
            return Err(UpstreamError::TempFail {
                server: ctx.server,
                email: ctx.email,
                reply: done.tagged.to_vec(),
            })
        }
        b"NO" => {
            return Err(UpstreamError::Rejected {
                server: ctx.server,
                email: ctx.email,
                reply: done.tagged.to_vec(),
            })
        }
        _ => return Err(ctx.protocol("LOGIN", &done.tagged)),
    }
    let mut capabilities = capabilities_in(&done.tagged)
        .or_else(|| done.untagged.iter().find_map(|l| capabilities_in(l)));
    if capabilities.is_none() {
        let caps = command(&mut conn, &ctx, "a2", "CAPABILITY", b"a2 CAPABILITY\r\n").await?;
        capabilities = caps.untagged.iter().find_map(|l| capabilities_in(l));
    }
    if account.provider.imap_id_after_login {
        let id = format!(
            "a3 ID (\"name\" \"qqmail-proxy\" \"version\" \"{}\" \"vendor\" \"qqmail-proxy\")\r\n",
            env!("CARGO_PKG_VERSION")
        );
        command(&mut conn, &ctx, "a3", "ID", id.as_bytes()).await?;
    }
    Ok(ImapUpstream { conn, capabilities })
}

/// Response codes that mean "try again later" (RFC 5530).
fn is_transient(tagged: &[u8]) -> bool {
    let upper = tagged.to_ascii_uppercase();
    [&b"[UNAVAILABLE]"[..], b"[INUSE]", b"[LIMIT]"]
        .iter()
        .any(|code| memchr::memmem::find(&upper, code).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"12345@qq.com", Some(b"\"12345@qq.com\"")),
            (b"abcdefghijklmnop", Some(b"\"abcdefghijklmnop\"")),
            (b"a\"b\\c", Some(b"\"a\\\"b\\\\c\"")),
            (b"", Some(b"\"\"")),
            ("用户@qq.com".as_bytes(), None),
            (b"a\r\nb", None),
        ];
        for (input, want) in cases {
            assert_eq!(quoted(input).as_deref(), *want);
        }
    }

    #[test]
    fn capabilities_table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (
                b"a1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] done\r\n",
                Some(b"IMAP4rev1 IDLE MOVE"),
            ),
            (
                b"* CAPABILITY IMAP4 IMAP4rev1 ID\r\n",
                Some(b"IMAP4 IMAP4rev1 ID"),
            ),
            (b"* ok [capability IMAP4rev1] hi\r\n", Some(b"IMAP4rev1")),
            (b"a1 OK LOGIN completed\r\n", None),
        ];
        for (input, want) in cases {
            assert_eq!(capabilities_in(input).as_deref(), *want);
        }
    }

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_len(b"* X {3+}\r\n"), Some(3));
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
        assert_eq!(literal_len(b"* OK done\r\n"), None);
    }
}
