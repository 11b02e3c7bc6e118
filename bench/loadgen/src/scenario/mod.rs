//! The measurements. Each prints one JSON object per peer on stdout (`"ok": false` with an
//! `"error"` when that peer's measurement could not run) and fails the process when any
//! peer failed, so bench/run.sh can count what ran.

use anyhow::Result;
use serde_json::{json, Value};

use crate::args::Args;
use crate::client::{Ctx, Peer};

pub mod idle;
pub mod latency;
pub mod rate;
pub mod startup;
pub mod throughput;

/// Nearest-rank percentile (`q` in 0..=1) of `xs`, which need not be sorted.
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The median.
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 0.5)
}

/// Arithmetic mean.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Rounds for the JSON output (three decimals).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints one result line.
pub fn emit(v: &Value) {
    println!("{v}");
}

/// A failed peer's result line.
pub fn failed(kind: &str, proto: &str, peer: &str, err: &anyhow::Error) -> Value {
    json!({"kind": kind, "proto": proto, "peer": peer, "ok": false, "error": format!("{err:#}")})
}

/// The peers and client context every client scenario takes.
pub fn peers(args: &Args) -> Result<(Ctx, Vec<Peer>)> {
    let ctx = Ctx::new(std::path::Path::new(args.req("ca")?))?;
    let peers = args
        .all("peer")
        .into_iter()
        .map(Peer::parse)
        .collect::<Result<Vec<_>>>()?;
    if peers.is_empty() {
        anyhow::bail!("no --peer given");
    }
    Ok((ctx, peers))
}

/// Process RSS (kB) and CPU ticks (utime + stime) of `pid`, from /proc.
pub fn proc_usage(pid: u32) -> Result<(u64, u64)> {
    use anyhow::Context;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 12 and 13 after the name.
    let ticks = f
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .context("utime")?
        + f.get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .context("stime")?;
    Ok((rss, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let xs: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 100.0);
        assert_eq!(percentile(&xs, 0.99), 198.0);
        assert_eq!(percentile(&xs, 1.0), 200.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn own_proc_usage_reads() {
        let (rss, _ticks) = proc_usage(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
