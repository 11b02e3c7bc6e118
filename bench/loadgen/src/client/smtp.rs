//! SMTP client steps: replies (RFC 5321 §4.2), EHLO, STARTTLS (RFC 3207), AUTH PLAIN
//! (RFC 4954), and one mail transaction streaming a prepared message.

use anyhow::{bail, Context, Result};
use base64::Engine;

use super::{Ctx, Mode, Peer};
use crate::wire::{show, Wire};

/// Reads one (possibly multi-line) reply; returns its code and last line.
pub async fn reply(w: &mut Wire) -> Result<(u16, Vec<u8>)> {
    for _ in 0..256 {
        let line = w.line().await?;
        let code = line
            .get(..3)
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u16>().ok())
            .with_context(|| format!("not an SMTP reply: {}", show(&line)))?;
        if line.get(3) != Some(&b'-') {
            return Ok((code, line));
        }
    }
    bail!("SMTP reply longer than 256 lines")
}

/// Sends a command and requires reply `want`.
pub async fn command(w: &mut Wire, cmd: &[u8], want: u16) -> Result<()> {
    w.send(cmd).await?;
    expect(w, want, cmd).await
}

async fn expect(w: &mut Wire, want: u16, what: &[u8]) -> Result<()> {
    let verb = what
        .split(|&b| b == b' ' || b == b'\r')
        .next()
        .unwrap_or_default();
    let (code, line) = reply(w)
        .await
        .with_context(|| format!("SMTP {}", show(verb)))?;
    if code != want {
        bail!("SMTP {}: {}", show(verb), show(&line));
    }
    Ok(())
}

/// Connects, greets and (when the peer has a user) authenticates.
pub async fn login(ctx: &Ctx, peer: &Peer) -> Result<Wire> {
    let mut w = ctx.connect(peer).await?;
    expect(&mut w, 220, b"greeting").await?;
    command(&mut w, b"EHLO bench.client\r\n", 250).await?;
    if peer.mode == Mode::StartTls {
        command(&mut w, b"STARTTLS\r\n", 220).await?;
        w = ctx.upgrade(w).await?;
        command(&mut w, b"EHLO bench.client\r\n", 250).await?;
    }
    if let Some(user) = &peer.user {
        let blob = format!("\0{user}\0{}", peer.pass);
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        command(&mut w, format!("AUTH PLAIN {b64}\r\n").as_bytes(), 235).await?;
    }
    Ok(w)
}

/// One session as in the latency test: login, NOOP, QUIT.
pub async fn noop_session(ctx: &Ctx, peer: &Peer) -> Result<()> {
    let mut w = login(ctx, peer).await?;
    command(&mut w, b"NOOP\r\n", 250).await?;
    command(&mut w, b"QUIT\r\n", 221).await?;
    Ok(())
}

/// MAIL, RCPT, DATA; returns once the server answered 354.
pub async fn begin(w: &mut Wire) -> Result<()> {
    command(w, b"MAIL FROM:<tester@qq.com>\r\n", 250).await?;
    command(w, b"RCPT TO:<sink@example.test>\r\n", 250).await?;
    command(w, b"DATA\r\n", 354).await
}

/// Streams `message` (already free of dot lines) and the terminator; waits for the 250.
pub async fn body(w: &mut Wire, message: &[u8]) -> Result<()> {
    w.write(message).await?;
    w.send(b".\r\n").await?;
    expect(w, 250, b"end of DATA").await
}
