//! Idle scale: N logged-in IMAP sessions in IDLE through one peer (the proxy). Reads the
//! peer's VmRSS before and after (per-session cost), its CPU time (utime + stime) over a
//! quiet window, then has the upstream push one EXISTS to every session and times how long
//! until all of them saw it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{emit, failed, peers, percentile, proc_usage, r3};
use crate::args::Args;
use crate::client::{self, imap::Idler, Ctx, Peer};

/// Runs the scenario against the first peer.
pub async fn run(args: &Args) -> Result<()> {
    let (ctx, peers) = peers(args)?;
    let peer = peers.first().context("no peer")?.clone();
    let v = match measure(args, &ctx, &peer).await {
        Ok(v) => v,
        Err(e) => {
            emit(&failed("idle", "imap", &peer.label, &e));
            return Err(e);
        }
    };
    emit(&v);
    Ok(())
}

async fn open_all(ctx: &Ctx, peer: &Peer, n: usize, parallel: usize) -> Result<Vec<Idler>> {
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (ctx, peer, gate) = (ctx.clone(), peer.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            Idler::start(&ctx, &peer)
                .await
                .with_context(|| format!("session {i}"))
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r.context("task")??);
    }
    Ok(out)
}

async fn measure(args: &Args, ctx: &Ctx, peer: &Peer) -> Result<serde_json::Value> {
    let n: usize = args.num("sessions", 2000)?;
    let parallel: usize = args.num("parallel", 32)?;
    let pid: u32 = args.req("pid")?.parse().context("--pid")?;
    let ctl: SocketAddr = args.req("ctl")?.parse().context("--ctl")?;
    let cpu_secs: f64 = args.num("cpu-secs", 10.0)?;
    let clk_tck: f64 = args.num("clk-tck", 100.0)?;

    // One session first, so that lazily built state (TLS configs, allocator arenas) is not
    // counted as per-session cost.
    Idler::start(ctx, peer).await?.finish().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, _) = proc_usage(pid)?;

    let t_open = Instant::now();
    let idlers = open_all(ctx, peer, n, parallel).await?;
    let open_s = t_open.elapsed().as_secs_f64();
    let stats = client::control(ctl, "STATS").await?;
    let upstream_idlers = client::stat(&stats, "idlers").unwrap_or(0);
    if upstream_idlers < n as u64 {
        bail!("only {upstream_idlers} of {n} sessions are idling at the upstream");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, ticks0) = proc_usage(pid)?;
    tokio::time::sleep(Duration::from_secs_f64(cpu_secs)).await;
    let (_, ticks1) = proc_usage(pid)?;
    let cpu_ms = (ticks1 - ticks0) as f64 * 1000.0 / clk_tck;

    // Every session waits for its EXISTS in its own task; the clock starts before PUSH.
    let mut set = JoinSet::new();
    for mut idler in idlers {
        set.spawn(async move {
            let r = idler.wait_exists().await;
            (idler, Instant::now(), r)
        });
    }
    tokio::task::yield_now().await;
    let t_push = Instant::now();
    let answer = client::control(ctl, "PUSH").await?;
    if !answer.starts_with("OK") {
        bail!("PUSH: {answer}");
    }
    let mut waits = Vec::with_capacity(n);
    let mut back = Vec::with_capacity(n);
    let collect = async {
        while let Some(r) = set.join_next().await {
            let (idler, at, r) = r.context("task")?;
            r?;
            waits.push(at.duration_since(t_push).as_secs_f64() * 1e3);
            back.push(idler);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .context("not every session saw the EXISTS within 120 s")??;

    // Leave politely, in parallel.
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let mut set = JoinSet::new();
    for idler in back {
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            idler.finish().await
        });
    }
    let mut logout_errors = 0u64;
    while let Some(r) = set.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            logout_errors += 1;
        }
    }
    let per_session_kib = rss1.saturating_sub(rss0) as f64 / n as f64;
    Ok(json!({
        "kind": "idle", "proto": "imap", "peer": peer.label, "ok": true,
        "sessions": n, "open_s": r3(open_s),
        "rss_before_kib": rss0, "rss_after_kib": rss1,
        "per_session_kib": r3(per_session_kib),
        "cpu_window_s": cpu_secs, "cpu_ms": r3(cpu_ms),
        "cpu_pct": r3(cpu_ms / (cpu_secs * 1000.0) * 100.0),
        "push_all_ms": r3(percentile(&waits, 1.0)),
        "push_p50_ms": r3(percentile(&waits, 0.5)),
        "push_p99_ms": r3(percentile(&waits, 0.99)),
        "logout_errors": logout_errors,
    }))
}
