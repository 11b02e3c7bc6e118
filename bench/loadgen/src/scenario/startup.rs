//! Footprint at start: spawns the proxy several times, timing exec → first `"listening"`
//! log line and exec → `"ready"` (JSON logs on stderr), and reads VmRSS once it is ready.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{emit, failed, median, proc_usage, r3};
use crate::args::Args;

struct Start {
    listening_ms: f64,
    ready_ms: f64,
    rss_kib: u64,
    listeners: usize,
}

fn once(bin: &str, config: &str, env: &[(String, String)]) -> Result<Start> {
    let mut cmd = Command::new(bin);
    cmd.args(["--log-format", "json", "serve", "--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawning {bin}"))?;
    let pid = child.id();
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let result = (|| {
        let mut listening = None;
        let mut listeners = 0;
        let mut tail = Vec::new();
        loop {
            let left = Duration::from_secs(10).saturating_sub(t0.elapsed());
            let (at, line) = rx.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!("no \"ready\" line within 10 s: {}", tail.join(" | "))
            })?;
            if line.contains("\"message\":\"listening\"") {
                listeners += 1;
                listening.get_or_insert(at);
            }
            if line.contains("\"message\":\"ready\"") {
                let listening = listening.context("\"ready\" before any \"listening\"")?;
                // Let the runtime settle (worker threads parked) before reading RSS.
                std::thread::sleep(Duration::from_millis(300));
                let (rss_kib, _) = proc_usage(pid)?;
                return Ok(Start {
                    listening_ms: listening.duration_since(t0).as_secs_f64() * 1e3,
                    ready_ms: at.duration_since(t0).as_secs_f64() * 1e3,
                    rss_kib,
                    listeners,
                });
            }
            tail.push(line);
            if tail.len() > 5 {
                tail.remove(0);
            }
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    result
}

/// Runs the scenario (blocking: it only spawns and waits).
pub fn run(args: &Args) -> Result<()> {
    let bin = args.req("bin")?;
    let config = args.req("config")?;
    let runs: usize = args.num("runs", 10)?;
    let env: Vec<(String, String)> = args
        .all("env")
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let mut starts = Vec::new();
    for i in 0..runs {
        match once(bin, config, &env) {
            Ok(s) => starts.push(s),
            Err(e) => {
                let e = e.context(format!("start {i}"));
                emit(&failed("startup", "-", "proxy", &e));
                bail!("startup failed");
            }
        }
    }
    let listening: Vec<f64> = starts.iter().map(|s| s.listening_ms).collect();
    let ready: Vec<f64> = starts.iter().map(|s| s.ready_ms).collect();
    let rss: Vec<f64> = starts.iter().map(|s| s.rss_kib as f64).collect();
    emit(&json!({
        "kind": "startup", "proto": "-", "peer": "proxy", "ok": true, "runs": runs,
        "listeners": starts.first().map(|s| s.listeners).unwrap_or(0),
        "listening_ms": r3(median(&listening)),
        "listening_ms_max": r3(listening.iter().copied().fold(0.0, f64::max)),
        "ready_ms": r3(median(&ready)),
        "ready_ms_max": r3(ready.iter().copied().fold(0.0, f64::max)),
        "rss_kib": median(&rss),
        "rss_kib_max": rss.iter().copied().fold(0.0, f64::max),
    }));
    Ok(())
}
