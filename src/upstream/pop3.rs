//! Upstream POP3: greeting, STLS (RFC 2595 §4), USER/PASS with the account's code, and
//! AUTH PLAIN (RFC 5034) for servers that refuse USER.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Ctx, Dialect, UpstreamError, UpstreamStream};
use crate::config::Account;
use crate::net::LineStream;
use crate::proto::sasl;
use crate::secrets::Secret;

/// Most lines accepted in a CAPA listing.
const MAX_CAPA_LINES: usize = 256;

/// A logged-in upstream POP3 session (TRANSACTION state).
pub struct Pop3Upstream {
    /// The connection; bytes already read are in its buffer.
    pub conn: LineStream<UpstreamStream>,
}

async fn status_line<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    stage: &'static str,
) -> Result<Vec<u8>, UpstreamError> {
    conn.read_line(ctx.timeout)
        .await
        .map(|l| l.to_vec())
        .map_err(|e| ctx.line_error(stage, e))
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
    stage: &'static str,
    line: &[u8],
) -> Result<Vec<u8>, UpstreamError> {
    conn.send(line, ctx.timeout)
        .await
        .map_err(|e| ctx.line_error(stage, e))?;
    status_line(conn, ctx, stage).await
}

fn ok(line: &[u8]) -> bool {
    line.starts_with(b"+OK")
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineStream<S>,
    ctx: &Ctx,
) -> Result<(), UpstreamError> {
    let hello = status_line(conn, ctx, "greeting").await?;
    if ok(&hello) {
        Ok(())
    } else {
        Err(UpstreamError::Refused {
            server: ctx.server.clone(),
            reply: hello,
        })
    }
}

/// The POP3 STLS dialog: greeting, CAPA, STLS only if listed.
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
        let first = command(conn, ctx, "CAPA", b"CAPA\r\n").await?;
        let mut stls = false;
        if ok(&first) {
            for _ in 0..MAX_CAPA_LINES {
                let line = status_line(conn, ctx, "CAPA").await?;
                let word = line.trim_ascii();
                if word == b"." {
                    break;
                }
                stls |= word.eq_ignore_ascii_case(b"STLS");
            }
        }
        if !stls {
            return Err(UpstreamError::NoStartTls {
                server: ctx.server.clone(),
            });
        }
        let r = command(conn, ctx, "STLS", b"STLS\r\n").await?;
        if !ok(&r) {
            return Err(UpstreamError::NoStartTls {
                server: ctx.server.clone(),
            });
        }
        Ok(())
    }
}

/// Logs in as the account on a connection whose greeting has been read.
pub async fn login(
    mut conn: LineStream<UpstreamStream>,
    ctx: &Ctx,
    account: &Account,
) -> Result<Pop3Upstream, UpstreamError> {
    let ctx = ctx.clone();
    let user = command(
        &mut conn,
        &ctx,
        "USER",
        format!("USER {}\r\n", account.email).as_bytes(),
    )
    .await?;
    let verdict = if ok(&user) {
        let mut pass = b"PASS ".to_vec();
        pass.extend_from_slice(account.code.expose());
        pass.extend_from_slice(b"\r\n");
        let pass = Secret::new(pass);
        command(&mut conn, &ctx, "PASS", pass.expose()).await?
    } else {
        // Some servers accept only SASL (RFC 5034 §4).
        let mut auth = b"AUTH PLAIN ".to_vec();
        auth.extend_from_slice(sasl::encode_plain(&account.email, &account.code).expose());
        auth.extend_from_slice(b"\r\n");
        let auth = Secret::new(auth);
        command(&mut conn, &ctx, "AUTH", auth.expose()).await?
    };
    if ok(&verdict) {
        return Ok(Pop3Upstream { conn });
    }
    // RFC 3206 / RFC 2449 §8.1: these response codes are temporary conditions.
    let transient = [&b"[SYS/TEMP]"[..], b"[IN-USE]", b"[LOGIN-DELAY]"]
        .iter()
        .any(|c| memchr::memmem::find(&verdict, c).is_some());
    Err(if transient {
        UpstreamError::TempFail {
            server: ctx.server,
            email: ctx.email,
            reply: verdict,
        }
    } else {
        UpstreamError::Rejected {
            server: ctx.server,
            email: ctx.email,
            reply: verdict,
        }
    })
}
