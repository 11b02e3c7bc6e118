//! Throughput: one big message through SMTP DATA, IMAP FETCH or POP3 RETR per run, peers
//! interleaved run by run so that machine noise falls on all of them alike. Only the
//! transfer is timed (from the first body byte sent, or the FETCH/RETR command, to the
//! final reply), not the login.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{emit, failed, median, peers, r3};
use crate::args::Args;
use crate::client::{self, smtp, Ctx, Peer};

/// Runs the scenario; fails when any peer failed.
pub async fn run(args: &Args) -> Result<()> {
    let (ctx, peers) = peers(args)?;
    let proto = args.req("proto")?.to_string();
    let size: usize = args.num("size", 50_000_000)?;
    let runs: usize = args.num("runs", 5)?;
    let ctl: Option<SocketAddr> = args.get("ctl").map(str::parse).transpose()?;
    let message = crate::message::message(size);
    let mut results: BTreeMap<String, Result<Vec<f64>>> = BTreeMap::new();
    for _ in 0..runs {
        for peer in &peers {
            let slot = results
                .entry(peer.label.clone())
                .or_insert_with(|| Ok(Vec::new()));
            let Ok(samples) = slot else { continue };
            let once = match proto.as_str() {
                "smtp" => smtp_once(&ctx, peer, &message, ctl).await,
                "imap" => client::imap::fetch(&ctx, peer, &message).await,
                "pop3" => client::pop3::retr(&ctx, peer, &message).await,
                other => bail!("unknown --proto {other}"),
            };
            match once {
                Ok((bytes, secs)) => samples.push(bytes as f64 / 1e6 / secs),
                Err(e) => *slot = Err(e),
            }
        }
    }
    let mut any_failed = false;
    for peer in &peers {
        let v = match results.remove(&peer.label) {
            Some(Ok(mbps)) => json!({
                "kind": "throughput", "proto": proto, "peer": peer.label, "ok": true,
                "bytes": message.len(), "runs": mbps.len(),
                "mbps": mbps.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
                "median_mbps": r3(median(&mbps)),
                "min_mbps": r3(mbps.iter().copied().fold(f64::INFINITY, f64::min)),
                "max_mbps": r3(mbps.iter().copied().fold(0.0, f64::max)),
            }),
            Some(Err(e)) => {
                any_failed = true;
                failed("throughput", &proto, &peer.label, &e)
            }
            None => continue,
        };
        emit(&v);
    }
    if any_failed {
        bail!("a peer failed");
    }
    Ok(())
}

/// One message through DATA; returns (bytes, seconds).
async fn smtp_once(
    ctx: &Ctx,
    peer: &Peer,
    message: &[u8],
    ctl: Option<SocketAddr>,
) -> Result<(u64, f64)> {
    let before = match (peer.end_to_end, ctl) {
        (true, Some(ctl)) => {
            let s = client::control(ctl, "STATS").await?;
            Some((ctl, client::stat(&s, "msgs").context("STATS msgs")?))
        }
        (true, None) => bail!("end-to-end peer {} needs --ctl", peer.label),
        _ => None,
    };
    let mut w = smtp::login(ctx, peer).await?;
    smtp::begin(&mut w).await?;
    let t0 = std::time::Instant::now();
    smtp::body(&mut w, message).await?;
    if let Some((ctl, m0)) = before {
        let answer = client::control(ctl, &format!("WAITMSGS {} 300000", m0 + 1)).await?;
        if !answer.starts_with("OK") {
            bail!("the upstream never received the message: {answer}");
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    smtp::command(&mut w, b"QUIT\r\n", 221).await?;
    Ok((message.len() as u64, secs))
}
