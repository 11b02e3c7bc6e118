//! Upstream SMTP: reply parsing (RFC 5321 §4.2), EHLO capabilities, STARTTLS (RFC 3207)
//! and AUTH PLAIN / LOGIN (RFC 4954) with the account's code.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Ctx, Dialect, UpstreamError, UpstreamStream};
use crate::config::Account;
use crate::net::{LineError, LineStream};
use crate::proto::sasl;
use crate::secrets::Secret;

/// Most lines in one reply (a safety bound; real EHLO replies have about a dozen).
const MAX_REPLY_LINES: usize = 256;

/// One SMTP reply: its code and every line as received (line endings included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The reply's bytes, exactly as the server sent them.
    pub raw: Vec<u8>,
}

impl Reply {
    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The connection failed.
    #[error(transparent)]
    Line(#[from] LineError),
    /// Not an SMTP reply.
    #[error("malformed reply")]
    Malformed(Vec<u8>),
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    timeout: std::time::Duration,
) -> Result<Reply, ReplyError> {
    let mut raw = Vec::new();
    let mut code = None;
    for _ in 0..MAX_REPLY_LINES {
        let line = conn.read_line(timeout).await?;
        let digits = line.get(..3).and_then(|d| {
            d.iter()
                .all(u8::is_ascii_digit)
                .then(|| d.iter().fold(0u16, |n, b| n * 10 + u16::from(b - b'0')))
        });
        let Some(this) = digits else {
            raw.extend_from_slice(&line);
            return Err(ReplyError::Malformed(raw));
        };
        code.get_or_insert(this);
        raw.extend_from_slice(&line);
        if line.get(3) != Some(&b'-') {
            return Ok(Reply {
                code: code.unwrap_or(this),
                raw,
            });
        }
    }
    Err(ReplyError::Malformed(raw))
}

/// What the upstream's EHLO reply offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpCaps {
    /// `SIZE n` (RFC 1870); `Some(0)` means no fixed limit.
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `AUTH PLAIN` offered.
    pub auth_plain: bool,
    /// `AUTH LOGIN` offered.
    pub auth_login: bool,
}

impl SmtpCaps {
    /// Parses an EHLO reply (the first line is the greeting, the rest are keywords).
    pub fn parse(reply: &Reply) -> SmtpCaps {
        let mut caps = SmtpCaps::default();
        for line in reply.raw.split(|&b| b == b'\n').skip(1) {
            let text =
                String::from_utf8_lossy(line.get(4..).unwrap_or_default()).to_ascii_uppercase();
            let mut words = text.split_whitespace();
            match words.next() {
                Some("SIZE") => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                }
                Some("8BITMIME") => caps.eight_bit_mime = true,
                Some("SMTPUTF8") => caps.smtputf8 = true,
                Some("STARTTLS") => caps.starttls = true,
                Some("AUTH") => {
                    for m in words {
                        caps.auth_plain |= m == "PLAIN";
                        caps.auth_login |= m == "LOGIN";
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

/// A logged-in upstream SMTP session.
pub struct SmtpUpstream {
    /// The connection, ready for `MAIL FROM`.
    pub conn: LineStream<UpstreamStream>,
    /// What the server offers.
    pub caps: SmtpCaps,
}

async fn expect<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    stage: &'static str,
) -> Result<Reply, UpstreamError> {
    match read_reply(conn, ctx.timeout).await {
        Ok(r) => Ok(r),
        Err(ReplyError::Line(e)) => Err(ctx.line_error(stage, e)),
        Err(ReplyError::Malformed(raw)) => Err(ctx.protocol(stage, &raw)),
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    stage: &'static str,
    line: &[u8],
) -> Result<Reply, UpstreamError> {
    conn.send(line, ctx.timeout)
        .await
        .map_err(|e| ctx.line_error(stage, e))?;
    expect(conn, ctx, stage).await
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
) -> Result<(), UpstreamError> {
    let greeting = expect(conn, ctx, "greeting").await?;
    if greeting.code != 220 {
        return Err(UpstreamError::Refused {
            server: ctx.server.clone(),
            reply: greeting.raw,
        });
    }
    Ok(())
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    hostname: &str,
) -> Result<SmtpCaps, UpstreamError> {
    let ehlo = command(conn, ctx, "EHLO", format!("EHLO {hostname}\r\n").as_bytes()).await?;
    if ehlo.code != 250 {
        return Err(ctx.protocol("EHLO", &ehlo.raw));
    }
    Ok(SmtpCaps::parse(&ehlo))
}

/// The SMTP STARTTLS dialog (RFC 3207 §4): greeting, EHLO, STARTTLS only if offered.
pub struct Dialog;

impl Dialect for Dialog {
    async fn greeting(
        conn: &mut LineStream<UpstreamStream>,
        ctx: &Ctx,
    ) -> Result<(), UpstreamError> {
        greeting(conn, ctx).await
    }

    async fn negotiate(conn: &mut LineStream<TcpStream>, ctx: &Ctx) -> Result<(), UpstreamError> {
        greeting(conn, ctx).await?;
        let caps = ehlo(conn, ctx, "localhost").await?;
        if !caps.starttls {
            let _ = conn.send(b"QUIT\r\n", ctx.timeout).await;
            return Err(UpstreamError::NoStartTls {
                server: ctx.server.clone(),
            });
        }
        let r = command(conn, ctx, "STARTTLS", b"STARTTLS\r\n").await?;
        if r.code != 220 {
            return Err(UpstreamError::NoStartTls {
                server: ctx.server.clone(),
            });
        }
        Ok(())
    }
}

/// Says EHLO and authenticates as the account with its code, on a connection whose
/// greeting has been read (see [`super::connect`]).
pub async fn login(
    mut conn: LineStream<UpstreamStream>,
    ctx: &Ctx,
    account: &Account,
    hostname: &str,
) -> Result<SmtpUpstream, UpstreamError> {
    // After STARTTLS the client must say EHLO again (RFC 3207 §4.2).
    let caps = ehlo(&mut conn, ctx, hostname).await?;
    authenticate(&mut conn, ctx, &caps, &account.email, &account.code).await?;
    Ok(SmtpUpstream { conn, caps })
}

async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    caps: &SmtpCaps,
    email: &str,
    code: &Secret,
) -> Result<(), UpstreamError> {
    let verdict = if caps.auth_plain || !caps.auth_login {
        let mut line = b"AUTH PLAIN ".to_vec();
        line.extend_from_slice(sasl::encode_plain(email, code).expose());
        line.extend_from_slice(b"\r\n");
        let line = Secret::new(line);
        command(conn, ctx, "AUTH", line.expose()).await?
    } else {
        let r = command(conn, ctx, "AUTH", b"AUTH LOGIN\r\n").await?;
        if r.code != 334 {
            return Err(auth_error(ctx, r));
        }
        let mut user = sasl::encode(email.as_bytes()).expose().to_vec();
        user.extend_from_slice(b"\r\n");
        let r = command(conn, ctx, "AUTH", &user).await?;
        if r.code != 334 {
            return Err(auth_error(ctx, r));
        }
        let mut pass = sasl::encode(code.expose()).expose().to_vec();
        pass.extend_from_slice(b"\r\n");
        let pass = Secret::new(pass);
        command(conn, ctx, "AUTH", pass.expose()).await?
    };
    if verdict.code == 235 {
        Ok(())
    } else {
        Err(auth_error(ctx, verdict))
    }
}

fn auth_error(ctx: &Ctx, r: Reply) -> UpstreamError {
    if r.is_transient() {
        UpstreamError::TempFail {
            server: ctx.server.clone(),
            email: ctx.email.clone(),
            reply: r.raw,
        }
    } else {
        UpstreamError::Rejected {
            server: ctx.server.clone(),
            email: ctx.email.clone(),
            reply: r.raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn replies_table() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"250 OK\r\n", Some(250)),
            (b"250-a\r\n250-b\r\n250 c\r\n", Some(250)),
            (b"220\r\n", Some(220)),
            (
                b"535 Login Fail. Please enter your authorization code\r\n",
                Some(535),
            ),
            (b"220 \xc4\xe3\xba\xc3 GBK\r\n", Some(220)),
            (b"hello\r\n", None),
            (b"25\r\n", None),
        ];
        for (input, want) in cases {
            let (a, mut b) = tokio::io::duplex(1024);
            b.write_all(input).await.unwrap();
            let mut ls = LineStream::new(a, 1024);
            let got = read_reply(&mut ls, Duration::from_secs(1)).await;
            match (got, want) {
                (Ok(r), Some(code)) => {
                    assert_eq!(r.code, *code);
                    assert_eq!(&r.raw[..], *input, "raw bytes kept");
                }
                (Err(ReplyError::Malformed(_)), None) => {}
                (other, _) => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn caps_from_qq_ehlo() {
        let raw = b"250-smtp.qq.com\r\n250-PIPELINING\r\n250-SIZE 73400320\r\n250-STARTTLS\r\n\
250-AUTH LOGIN PLAIN XOAUTH XOAUTH2\r\n250-AUTH=LOGIN\r\n250-MAILCOMPRESS\r\n250 8BITMIME\r\n";
        let caps = SmtpCaps::parse(&Reply {
            code: 250,
            raw: raw.to_vec(),
        });
        assert_eq!(
            caps,
            SmtpCaps {
                size: Some(73_400_320),
                eight_bit_mime: true,
                smtputf8: false,
                starttls: true,
                auth_plain: true,
                auth_login: true,
            }
        );
    }
}
