//! POP3 client steps: greeting, STLS (RFC 2595 §4), USER/PASS, NOOP, QUIT and the timed
//! RETR of the big message.

use anyhow::{bail, Context, Result};

use super::{Ctx, Mode, Peer};
use crate::wire::{show, Wire};

/// Sends a command and requires `+OK`.
pub async fn command(w: &mut Wire, cmd: &str) -> Result<Vec<u8>> {
    w.send(format!("{cmd}\r\n").as_bytes()).await?;
    let verb = cmd.split(' ').next().unwrap_or(cmd);
    let line = w.line().await.with_context(|| format!("POP3 {verb}"))?;
    if !line.starts_with(b"+OK") {
        bail!("POP3 {verb}: {}", show(&line));
    }
    Ok(line)
}

/// Connects and logs in (TRANSACTION state).
pub async fn login(ctx: &Ctx, peer: &Peer) -> Result<Wire> {
    let mut w = ctx.connect(peer).await?;
    let hello = w.line().await.context("POP3 greeting")?;
    if !hello.starts_with(b"+OK") {
        bail!("POP3 greeting: {}", show(&hello));
    }
    if peer.mode == Mode::StartTls {
        command(&mut w, "STLS").await?;
        w = ctx.upgrade(w).await?;
    }
    command(
        &mut w,
        &format!("USER {}", peer.user.as_deref().unwrap_or_default()),
    )
    .await?;
    command(&mut w, &format!("PASS {}", peer.pass)).await?;
    Ok(w)
}

/// One session as in the latency test: login, NOOP, QUIT.
pub async fn noop_session(ctx: &Ctx, peer: &Peer) -> Result<()> {
    let mut w = login(ctx, peer).await?;
    command(&mut w, "NOOP").await?;
    command(&mut w, "QUIT").await?;
    Ok(())
}

/// Login, then times `RETR 1`; returns (bytes, seconds).
pub async fn retr(ctx: &Ctx, peer: &Peer, expect: &[u8]) -> Result<(u64, f64)> {
    let mut w = login(ctx, peer).await?;
    let t0 = std::time::Instant::now();
    let head = command(&mut w, "RETR 1").await?;
    // "+OK <n> octets": the size is the stand-in's own; check it against the message.
    let n = expect.len() as u64;
    let said = head
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
    if said != Some(n) {
        bail!("RETR: {} (expected {n} octets)", show(&head));
    }
    let mut off = 0usize;
    let mut mismatch = false;
    w.skip(n, |piece| {
        let k = piece.len().min(16);
        mismatch |= expect.get(off..off + k) != piece.get(..k);
        off += piece.len();
    })
    .await?;
    if mismatch {
        bail!("RETR: message bytes differ from the upstream's");
    }
    let dot = w.line().await?;
    if dot != b".\r\n" {
        bail!("RETR: expected the terminating dot, got {}", show(&dot));
    }
    let secs = t0.elapsed().as_secs_f64();
    command(&mut w, "QUIT").await?;
    Ok((n, secs))
}
