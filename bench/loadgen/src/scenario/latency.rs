//! Session latency: connect + login + NOOP + logout, sequentially, peers interleaved
//! session by session. The order rotates every round, so that each peer follows each other
//! peer equally often (a peer's connection teardown, e.g. stunnel's, otherwise lands on the
//! same next peer every time), and a short pause separates sessions. A few warm-up
//! sessions per peer are not counted (the proxy's first login pays the argon2
//! verification that its auth cache then skips).

use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;

use super::{emit, failed, mean, peers, percentile, r3};
use crate::args::Args;
use crate::client::{imap, pop3, smtp, Ctx, Peer};

async fn session(ctx: &Ctx, proto: &str, peer: &Peer) -> Result<()> {
    match proto {
        "imap" => imap::noop_session(ctx, peer).await,
        "pop3" => pop3::noop_session(ctx, peer).await,
        "smtp" => smtp::noop_session(ctx, peer).await,
        other => bail!("unknown --proto {other}"),
    }
}

/// Runs the scenario; fails when any session of any peer failed.
pub async fn run(args: &Args) -> Result<()> {
    let (ctx, peers) = peers(args)?;
    let proto = args.req("proto")?.to_string();
    let sessions: usize = args.num("sessions", 200)?;
    let warmup: usize = args.num("warmup", 3)?;
    // With the proxy's admin endpoint: its own account of the upstream part of each login.
    let admin: Option<std::net::SocketAddr> = args.get("admin").map(str::parse).transpose()?;
    let before = match admin {
        Some(a) => Some(crate::client::login_metrics(a).await?),
        None => None,
    };
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(sessions); peers.len()];
    let mut errors: Vec<Option<anyhow::Error>> = peers.iter().map(|_| None).collect();
    let pause = std::time::Duration::from_millis(args.num("pause-ms", 2)?);
    for i in 0..warmup + sessions {
        for j in 0..peers.len() {
            let k = (i + j) % peers.len();
            let peer = &peers[k];
            if errors[k].is_some() {
                continue;
            }
            tokio::time::sleep(pause).await;
            let t0 = Instant::now();
            match session(&ctx, &proto, peer).await {
                Ok(()) if i >= warmup => samples[k].push(t0.elapsed().as_secs_f64() * 1e3),
                Ok(()) => {}
                Err(e) => errors[k] = Some(e.context(format!("session {i}"))),
            }
        }
    }
    let upstream_login_ms = match (admin, before) {
        (Some(a), Some((sum0, n0))) => {
            let (sum1, n1) = crate::client::login_metrics(a).await?;
            (n1 > n0).then(|| (sum1 - sum0) / (n1 - n0) * 1e3)
        }
        _ => None,
    };
    let mut any_failed = false;
    for (k, peer) in peers.iter().enumerate() {
        let v = match &errors[k] {
            Some(e) => {
                any_failed = true;
                failed("latency", &proto, &peer.label, e)
            }
            None => {
                let ms = &samples[k];
                let upstream = upstream_login_ms.filter(|_| peer.label.starts_with("proxy"));
                json!({
                    "kind": "latency", "proto": proto, "peer": peer.label, "ok": true,
                    "sessions": ms.len(), "warmup": warmup,
                    "p50_ms": r3(percentile(ms, 0.5)), "p90_ms": r3(percentile(ms, 0.9)),
                    "p99_ms": r3(percentile(ms, 0.99)), "mean_ms": r3(mean(ms)),
                    "min_ms": r3(percentile(ms, 0.0)), "max_ms": r3(percentile(ms, 1.0)),
                    "upstream_login_mean_ms": upstream.map(r3),
                })
            }
        };
        emit(&v);
    }
    if any_failed {
        bail!("a peer failed");
    }
    Ok(())
}
