//! One APPEND of a Sent copy: the account's IMAP server over the same verified TLS and
//! injected login as every upstream (`upstream::connect`, `upstream::imap::login`, which
//! also sends NetEase's `ID`), `LIST` (and `XLIST` when offered) to find the folder
//! (`folder`), then `APPEND folder (\Seen) {n}` with the file streamed into the literal
//! (RFC 3501 §6.3.11): a synchronizing literal, or a non-synchronizing one when the
//! server offers LITERAL+ (RFC 7888). A purpose-built client rather than async-imap: the
//! login, TLS and error types are the gateway's own, and the literal streams from disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::folder::{self, Found};
use super::SentError;
use crate::config::Account;
use crate::net::{show, LineStream};
use crate::upstream::imap::{self, command, complete, has_capability, read_response};
use crate::upstream::{self, Ctx, UpstreamError, UpstreamStream};

/// Bytes read from the copy and written per send.
const CHUNK: usize = 64 * 1024;

/// Where a copy goes and how long the server may take.
#[derive(Clone)]
pub struct Target {
    /// The account (its IMAP server, address, code, provider preset).
    pub account: Arc<Account>,
    /// The account's verified TLS client config.
    pub tls: Arc<rustls::ClientConfig>,
    /// Per read and write (`limits.upstream_timeout`).
    pub timeout: Duration,
    /// For the APPEND's completion after the literal (`limits.upstream_data_timeout`).
    pub data_timeout: Duration,
}

/// The folder a copy went to (its wire name, shown) and how it was found.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The folder's name as the server spells it (modified UTF-7).
    pub folder: String,
    /// SPECIAL-USE, XLIST or the preset.
    pub found: Found,
}

/// Logs in, finds the Sent folder and APPENDs the `size` bytes of `path`, flagged `\Seen`.
pub async fn save(t: &Target, path: &Path, size: u64) -> Result<Saved, SentError> {
    let server = t
        .account
        .imap
        .as_ref()
        .ok_or(UpstreamError::NotConfigured("imap"))?;
    let ctx = Ctx::new(&t.account, server, t.timeout);
    let conn = upstream::connect::<imap::Dialog>(server, t.tls.clone(), &ctx).await?;
    let mut up = imap::login(conn, &ctx, &t.account).await?;
    let caps = up.capabilities.clone().unwrap_or_default();
    let (name, found) =
        find_folder(&mut up.conn, &ctx, &caps, t.account.provider.sent_folder).await?;
    let plus = has_capability(&caps, b"LITERAL+");
    append(
        &mut up.conn,
        &ctx,
        t.data_timeout,
        (&name, plus),
        path,
        size,
    )
    .await?;
    // The copy is stored; a LOGOUT that fails changes nothing.
    let _ = command(&mut up.conn, &ctx, "b9", "LOGOUT", b"b9 LOGOUT\r\n").await;
    Ok(Saved {
        folder: show(&name),
        found,
    })
}

/// The Sent folder's wire name: `LIST "" "*"`, then `XLIST "" "*"` if offered.
async fn find_folder(
    conn: &mut LineStream<UpstreamStream>,
    ctx: &Ctx,
    caps: &[u8],
    preset: &'static str,
) -> Result<(Vec<u8>, Found), SentError> {
    let list = command(conn, ctx, "b1", "LIST", b"b1 LIST \"\" \"*\"\r\n").await?;
    if list.status() != b"OK" {
        return Err(ctx.protocol("LIST", &list.tagged).into());
    }
    let xlist = if has_capability(caps, b"XLIST") && !has_capability(caps, b"SPECIAL-USE") {
        let x = command(conn, ctx, "b2", "XLIST", b"b2 XLIST \"\" \"*\"\r\n").await?;
        // A server that lists XLIST but refuses it: fall back to the preset.
        if x.status() == b"OK" {
            x.untagged
        } else {
            Vec::new()
        }
    } else {
        Vec::new()
    };
    folder::choose(&lines(&list.untagged), &lines(&xlist), preset).ok_or_else(|| {
        SentError::NoFolder {
            server: ctx.server.clone(),
            preset,
        }
    })
}

fn lines(v: &[bytes::BytesMut]) -> Vec<&[u8]> {
    v.iter().map(|l| &l[..]).collect()
}

/// `APPEND name (\Seen) {size}`, then the file as the literal.
async fn append(
    conn: &mut LineStream<UpstreamStream>,
    ctx: &Ctx,
    data_timeout: Duration,
    (name, plus): (&[u8], bool),
    path: &Path,
    size: u64,
) -> Result<(), SentError> {
    let quoted = imap::quoted(name).ok_or_else(|| ctx.protocol("APPEND", name))?;
    let mut line = b"b3 APPEND ".to_vec();
    line.extend_from_slice(&quoted);
    let plus_sign = if plus { "+" } else { "" };
    line.extend_from_slice(format!(" (\\Seen) {{{size}{plus_sign}}}\r\n").as_bytes());
    conn.send(&line, ctx.timeout)
        .await
        .map_err(|e| ctx.line_error("APPEND", e))?;
    if !plus {
        // RFC 3501 §7.5: "+" to go on; a tagged NO (e.g. [TRYCREATE]) refuses at once.
        let reply = read_response(conn, ctx, "APPEND").await?;
        if !reply.starts_with(b"+") {
            return Err(refused(ctx, name, &reply));
        }
    }
    send_file(conn, ctx, path, size).await?;
    let data_ctx = Ctx {
        timeout: data_timeout,
        ..ctx.clone()
    };
    let done = complete(conn, &data_ctx, "b3", "APPEND").await?;
    if done.status() != b"OK" {
        return Err(refused(ctx, name, &done.tagged));
    }
    Ok(())
}

fn refused(ctx: &Ctx, name: &[u8], reply: &[u8]) -> SentError {
    SentError::Refused {
        server: ctx.server.clone(),
        folder: show(name),
        reply: show(reply),
    }
}

/// Streams exactly `size` bytes of `path`, then the CRLF that ends the command.
async fn send_file(
    conn: &mut LineStream<UpstreamStream>,
    ctx: &Ctx,
    path: &Path,
    size: u64,
) -> Result<(), SentError> {
    let file_error = |source| SentError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).await.map_err(file_error)?;
        if n == 0 {
            // The literal's size was announced: the server cannot be told otherwise, and
            // the command is abandoned with the connection.
            return Err(file_error(std::io::ErrorKind::UnexpectedEof.into()));
        }
        conn.send(&buf[..n], ctx.timeout)
            .await
            .map_err(|e| ctx.line_error("APPEND", e))?;
        left -= n as u64;
    }
    conn.send(b"\r\n", ctx.timeout)
        .await
        .map_err(|e| ctx.line_error("APPEND", e).into())
}
