//! IMAP client steps: greeting, STARTTLS (RFC 3501 §6.2.1), LOGIN, tagged commands, the
//! FETCH of the big message, and IDLE (RFC 2177).

use anyhow::{bail, Context, Result};

use super::{Ctx, Mode, Peer};
use crate::wire::{show, Wire};

/// Sends `tag cmd` and reads to the tagged reply, which must be OK; returns the untagged
/// lines' count.
pub async fn command(w: &mut Wire, tag: &str, cmd: &str) -> Result<usize> {
    w.send(format!("{tag} {cmd}\r\n").as_bytes()).await?;
    tagged(w, tag, cmd).await
}

/// Reads to the tagged reply for `tag`; it must be OK.
pub async fn tagged(w: &mut Wire, tag: &str, what: &str) -> Result<usize> {
    let mut untagged = 0;
    loop {
        let line = w.line().await.with_context(|| format!("IMAP {what}"))?;
        if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
            let rest = &line[tag.len() + 1..];
            if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"OK") {
                return Ok(untagged);
            }
            bail!("IMAP {what}: {}", show(&line));
        }
        untagged += 1;
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Connects and logs in; the wire is in the authenticated state.
pub async fn login(ctx: &Ctx, peer: &Peer) -> Result<Wire> {
    let mut w = ctx.connect(peer).await?;
    let hello = w.line().await.context("IMAP greeting")?;
    if !hello.starts_with(b"* OK") {
        bail!("IMAP greeting: {}", show(&hello));
    }
    if peer.mode == Mode::StartTls {
        command(&mut w, "s0", "STARTTLS").await?;
        w = ctx.upgrade(w).await?;
    }
    let user = peer.user.as_deref().unwrap_or_default();
    command(
        &mut w,
        "a1",
        &format!("LOGIN {} {}", quote(user), quote(&peer.pass)),
    )
    .await?;
    Ok(w)
}

/// One session as in the latency test: login, NOOP, LOGOUT.
pub async fn noop_session(ctx: &Ctx, peer: &Peer) -> Result<()> {
    let mut w = login(ctx, peer).await?;
    command(&mut w, "a2", "NOOP").await?;
    command(&mut w, "a3", "LOGOUT").await?;
    Ok(())
}

/// Login, SELECT, then times `FETCH 1 BODY[]`; returns (bytes, seconds).
pub async fn fetch(ctx: &Ctx, peer: &Peer, expect: &[u8]) -> Result<(u64, f64)> {
    let mut w = login(ctx, peer).await?;
    command(&mut w, "a2", "SELECT INBOX").await?;
    let t0 = std::time::Instant::now();
    w.send(b"a3 FETCH 1 BODY[]\r\n").await?;
    let head = w.line().await.context("FETCH response")?;
    let n: u64 = literal_len(&head).with_context(|| format!("FETCH: {}", show(&head)))?;
    if n != expect.len() as u64 {
        bail!("FETCH literal of {n} bytes, expected {}", expect.len());
    }
    let mut off = 0usize;
    let mut mismatch = false;
    w.skip(n, |piece| {
        // Spot-check each piece's first bytes against the message.
        let k = piece.len().min(16);
        mismatch |= expect.get(off..off + k) != piece.get(..k);
        off += piece.len();
    })
    .await?;
    if mismatch {
        bail!("FETCH: message bytes differ from the upstream's");
    }
    let close = w.line().await?;
    if close.trim_ascii() != b")" {
        bail!("FETCH: expected ')', got {}", show(&close));
    }
    tagged(&mut w, "a3", "FETCH").await?;
    let secs = t0.elapsed().as_secs_f64();
    command(&mut w, "a4", "LOGOUT").await?;
    Ok((n, secs))
}

fn literal_len(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    std::str::from_utf8(&body[open + 1..]).ok()?.parse().ok()
}

/// A logged-in session in IDLE (after SELECT); `wait_exists` reads to the next EXISTS.
pub struct Idler {
    w: Wire,
}

impl Idler {
    /// Logs in, selects INBOX and enters IDLE.
    pub async fn start(ctx: &Ctx, peer: &Peer) -> Result<Idler> {
        let mut w = login(ctx, peer).await?;
        command(&mut w, "a2", "SELECT INBOX").await?;
        w.send(b"a3 IDLE\r\n").await?;
        let cont = w.line().await.context("IDLE")?;
        if !cont.starts_with(b"+") {
            bail!("IDLE: {}", show(&cont));
        }
        Ok(Idler { w })
    }

    /// Waits for an untagged EXISTS.
    pub async fn wait_exists(&mut self) -> Result<()> {
        loop {
            let line = self.w.line().await.context("waiting for EXISTS")?;
            if line.starts_with(b"* ") && memchr::memmem::find(&line, b" EXISTS").is_some() {
                return Ok(());
            }
        }
    }

    /// Ends IDLE and logs out.
    pub async fn finish(mut self) -> Result<()> {
        self.w.send(b"DONE\r\n").await?;
        tagged(&mut self.w, "a3", "IDLE").await?;
        command(&mut self.w, "a4", "LOGOUT").await?;
        Ok(())
    }
}
