//! Message rate: N concurrent SMTP clients, each in one session sending small messages
//! back to back for a fixed time (reconnecting after an error). Counts messages the peer
//! acknowledged within the window, errors, per-message latency, and how many the upstream
//! sink received in the same window (a store-and-forward peer — Postfix, or qqmail-proxy
//! with `delivery = "queue"` — acknowledges before delivering; its backlog is then timed
//! until drained). The delivered rate is end to end: every message the upstream received,
//! over the time from the first send until it had all that the peer acknowledged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::sync::Mutex;

use super::{emit, failed, peers, percentile, r3};
use crate::args::Args;
use crate::client::{self, smtp, Ctx, Peer};

#[derive(Default)]
struct Tally {
    ok: u64,
    /// Acknowledged after the window closed (a send already under way): not in `ok`, but
    /// the upstream must have them too before the backlog counts as drained.
    late: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
    first_error: Option<String>,
}

async fn client_loop(ctx: Ctx, peer: Peer, message: Arc<Vec<u8>>, deadline: Instant) -> Tally {
    let mut t = Tally::default();
    let mut conn = None;
    while Instant::now() < deadline {
        let w = match conn.as_mut() {
            Some(w) => w,
            None => match smtp::login(&ctx, &peer).await {
                Ok(w) => conn.insert(w),
                Err(e) => {
                    t.errors += 1;
                    t.first_error.get_or_insert_with(|| format!("login: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        let sent = async {
            smtp::begin(w).await?;
            smtp::body(w, &message).await
        }
        .await;
        match sent {
            Ok(()) => {
                if Instant::now() <= deadline {
                    t.ok += 1;
                    t.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                } else {
                    t.late += 1;
                }
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{e:#}"));
                conn = None;
            }
        }
    }
    if let Some(w) = conn.as_mut() {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), smtp::command(w, b"QUIT\r\n", 221)).await;
    }
    t
}

/// Runs the scenario for each peer in turn.
pub async fn run(args: &Args) -> Result<()> {
    let (ctx, peers) = peers(args)?;
    let clients: usize = args.num("clients", 50)?;
    let size: usize = args.num("size", 10_240)?;
    let secs: f64 = args.num("secs", 30.0)?;
    let ctl: SocketAddr = args.req("ctl")?.parse().context("--ctl")?;
    let message = Arc::new(crate::message::message(size));
    let mut any_failed = false;
    for peer in &peers {
        let v = match one_peer(&ctx, peer, clients, secs, ctl, &message).await {
            Ok(v) => v,
            Err(e) => {
                any_failed = true;
                failed("rate", "smtp", &peer.label, &e)
            }
        };
        emit(&v);
    }
    if any_failed {
        bail!("a peer failed");
    }
    Ok(())
}

async fn one_peer(
    ctx: &Ctx,
    peer: &Peer,
    clients: usize,
    secs: f64,
    ctl: SocketAddr,
    message: &Arc<Vec<u8>>,
) -> Result<serde_json::Value> {
    let m0 = client::stat(&client::control(ctl, "STATS").await?, "msgs").context("STATS")?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (ctx, peer, message, tally) =
            (ctx.clone(), peer.clone(), message.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let t = client_loop(ctx, peer, message, deadline).await;
            let mut all = tally.lock().await;
            all.ok += t.ok;
            all.late += t.late;
            all.errors += t.errors;
            all.latencies_ms.extend(t.latencies_ms);
            if all.first_error.is_none() {
                all.first_error = t.first_error;
            }
        }));
    }
    tokio::time::sleep_until(deadline.into()).await;
    let m1 = client::stat(&client::control(ctl, "STATS").await?, "msgs").context("STATS")?;
    for t in tasks {
        t.await.context("client task")?;
    }
    let t = tally.lock().await;
    if t.ok == 0 {
        bail!(
            "no message accepted ({} errors; first: {})",
            t.errors,
            t.first_error.as_deref().unwrap_or("-")
        );
    }
    // Until the upstream has every message the peer acknowledged (bounded).
    let drain_start = Instant::now();
    let acked = t.ok + t.late;
    let answer = client::control(ctl, &format!("WAITMSGS {} 300000", m0 + acked)).await?;
    let drained = answer.starts_with("OK");
    let end_to_end = start.elapsed().as_secs_f64();
    let received = client::stat(&answer, "msgs")
        .context("WAITMSGS")?
        .saturating_sub(m0);
    Ok(json!({
        "kind": "rate", "proto": "smtp", "peer": peer.label, "ok": true,
        "clients": clients, "secs": secs, "size": message.len(),
        "msgs": t.ok, "errors": t.errors, "first_error": t.first_error,
        "msgs_per_s": r3(t.ok as f64 / secs),
        "p50_ms": r3(percentile(&t.latencies_ms, 0.5)),
        "p99_ms": r3(percentile(&t.latencies_ms, 0.99)),
        "upstream_in_window": m1.saturating_sub(m0),
        "upstream_per_s": r3(m1.saturating_sub(m0) as f64 / secs),
        "drain_s": if drained { r3(drain_start.elapsed().as_secs_f64()) } else { -1.0 },
        "late": t.late,
        "delivered": received,
        "delivered_per_s": if drained { r3(received as f64 / end_to_end) } else { -1.0 },
    }))
}
