//! Writes bench/RESULTS.md from the run's JSON result lines and its `key<TAB>value` meta
//! file: machine and versions, the targets with their ratios and PASS/MISS, one table per
//! measurement, and the hand-written analysis notes appended verbatim.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::args::Args;

/// One target: a ratio or value checked against a bound.
struct Target {
    name: String,
    detail: String,
    value: Option<f64>,
    unit: &'static str,
    pass: Option<bool>,
}

struct Results {
    lines: Vec<Value>,
}

impl Results {
    fn get(&self, kind: &str, proto: &str, peer: &str) -> Option<&Value> {
        self.lines.iter().find(|v| {
            v["kind"] == kind && v["proto"] == proto && v["peer"] == peer && v["ok"] == true
        })
    }

    fn num(&self, kind: &str, proto: &str, peer: &str, field: &str) -> Option<f64> {
        self.get(kind, proto, peer)?[field].as_f64()
    }

    fn failures(&self) -> Vec<&Value> {
        self.lines.iter().filter(|v| v["ok"] != true).collect()
    }
}

fn fmt(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".to_string(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

const PEERS_TP: [(&str, &str); 5] = [
    ("direct", "direct TLS"),
    ("stunnel", "stunnel"),
    ("dovecot", "Dovecot proxy"),
    ("postfix", "Postfix relayhost"),
    ("proxy", "qqmail-proxy"),
];

/// A rate peer's end-to-end delivered msgs/s; `None` when its backlog never drained.
fn delivered(r: &Results, peer: &str) -> Option<f64> {
    r.num("rate", "smtp", peer, "delivered_per_s")
        .filter(|v| *v >= 0.0)
}

/// The rate table's rows: peer label and name.
const PEERS_RATE: [(&str, &str); 5] = [
    ("direct", "direct TLS"),
    ("stunnel", "stunnel"),
    ("postfix", "Postfix relayhost"),
    ("proxy", "qqmail-proxy (relay)"),
    ("proxy-queue", "qqmail-proxy, `delivery = \"queue\"`"),
];

fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    for (proto, name, bound) in [
        ("imap", "IMAP FETCH", 1.0),
        ("pop3", "POP3 RETR", 1.0),
        ("smtp", "SMTP DATA", 0.95),
    ] {
        let p = r.num("throughput", proto, "proxy", "median_mbps");
        let s = r.num("throughput", proto, "stunnel", "median_mbps");
        let v = ratio(p, s);
        t.push(Target {
            name: format!("{name} throughput ≥ {bound:.2}× stunnel"),
            detail: format!("{} vs {} MB/s", fmt(p, 1), fmt(s, 1)),
            value: v,
            unit: "×",
            pass: v.map(|v| v >= bound),
        });
    }
    for proto in ["imap", "pop3", "smtp"] {
        let p = r.num("latency", proto, "proxy", "p50_ms");
        let d = r.num("latency", proto, "direct", "p50_ms");
        let v = ratio(p, d);
        t.push(Target {
            name: format!("{} login p50 ≤ 1.0× direct TLS login", proto.to_uppercase()),
            detail: format!("{} vs {} ms", fmt(p, 2), fmt(d, 2)),
            value: v,
            unit: "×",
            pass: v.map(|v| v <= 1.0),
        });
    }
    let p = r.num("rate", "smtp", "proxy", "msgs_per_s");
    let f = r.num("rate", "smtp", "postfix", "msgs_per_s");
    let v = ratio(p, f);
    t.push(Target {
        name: "message rate ≥ Postfix relayhost".into(),
        detail: format!("{} vs {} msgs/s", fmt(p, 1), fmt(f, 1)),
        value: v,
        unit: "×",
        pass: v.map(|v| v >= 1.0),
    });
    let q = r.num("rate", "smtp", "proxy-queue", "msgs_per_s");
    let v = ratio(q, f);
    t.push(Target {
        name: "queue: durable accepts ≥ 2× Postfix relayhost's".into(),
        detail: format!("{} vs {} msgs/s acknowledged", fmt(q, 1), fmt(f, 1)),
        value: v,
        unit: "×",
        pass: v.map(|v| v >= 2.0),
    });
    let qd = delivered(r, "proxy-queue");
    let fd = delivered(r, "postfix");
    let v = ratio(qd, fd);
    t.push(Target {
        name: "queue: delivered end to end ≥ Postfix relayhost".into(),
        detail: format!("{} vs {} msgs/s", fmt(qd, 1), fmt(fd, 1)),
        value: v,
        unit: "×",
        pass: v.map(|v| v >= 1.0),
    });
    let kib = r.num("idle", "imap", "proxy", "per_session_kib");
    t.push(Target {
        name: "RSS per idle IMAP session ≤ 64 KiB".into(),
        detail: format!(
            "{} sessions",
            fmt(r.num("idle", "imap", "proxy", "sessions"), 0)
        ),
        value: kib,
        unit: " KiB",
        pass: kib.map(|k| k <= 64.0),
    });
    let rss = r
        .num("startup", "-", "proxy", "rss_kib")
        .map(|k| k / 1024.0);
    t.push(Target {
        name: "RSS at start ≤ 10 MiB".into(),
        detail: "median of the starts".into(),
        value: rss,
        unit: " MiB",
        pass: rss.map(|m| m <= 10.0),
    });
    let ms = r.num("startup", "-", "proxy", "listening_ms");
    t.push(Target {
        name: "exec → listening < 50 ms".into(),
        detail: format!(
            "ready at {} ms",
            fmt(r.num("startup", "-", "proxy", "ready_ms"), 1)
        ),
        value: ms,
        unit: " ms",
        pass: ms.map(|m| m < 50.0),
    });
    t
}

fn section_targets(out: &mut String, r: &Results) {
    out.push_str(
        "## Targets\n\n| target | measured | ratio / value | verdict |\n|---|---|---|---|\n",
    );
    for t in targets(r) {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "**MISS**",
            None => "not measured",
        };
        let value = match t.value {
            Some(v) => format!("{v:.2}{}", t.unit),
            None => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.name, t.detail, value, verdict
        );
    }
    out.push('\n');
}

fn section_throughput(out: &mut String, r: &Results) {
    out.push_str("## 1. Throughput (MB/s = 10⁶ bytes/s, median of the runs; min–max below)\n\n");
    out.push_str("| protocol | message | direct TLS | stunnel | Dovecot proxy / Postfix relayhost | qqmail-proxy | proxy ÷ stunnel | proxy ÷ direct |\n|---|---|---|---|---|---|---|---|\n");
    for (proto, name) in [
        ("smtp", "SMTP DATA"),
        ("imap", "IMAP FETCH"),
        ("pop3", "POP3 RETR"),
    ] {
        let cell = |peer: &str| {
            let Some(v) = r.get("throughput", proto, peer) else {
                return "–".to_string();
            };
            format!(
                "{} ({}–{})",
                fmt(v["median_mbps"].as_f64(), 1),
                fmt(v["min_mbps"].as_f64(), 0),
                fmt(v["max_mbps"].as_f64(), 0)
            )
        };
        let mid = if proto == "smtp" {
            "postfix"
        } else {
            "dovecot"
        };
        let bytes = PEERS_TP
            .iter()
            .find_map(|(p, _)| r.get("throughput", proto, p))
            .and_then(|v| Some((v["bytes"].as_f64()? / 1e6, v["runs"].as_u64()?)));
        let msg = bytes
            .map(|(mb, runs)| format!("{mb:.0} MB × {runs}"))
            .unwrap_or_else(|| "–".into());
        let med = |peer: &str| r.num("throughput", proto, peer, "median_mbps");
        let _ = writeln!(
            out,
            "| {name} | {msg} | {} | {} | {} | {} | {} | {} |",
            cell("direct"),
            cell("stunnel"),
            cell(mid),
            cell("proxy"),
            fmt(ratio(med("proxy"), med("stunnel")), 2),
            fmt(ratio(med("proxy"), med("direct")), 2),
        );
    }
    out.push_str("\nPostfix is store-and-forward: its SMTP figure is timed until the upstream sink has the whole message (end to end), not to Postfix's own 250.\n\n");
}

fn section_latency(out: &mut String, r: &Results) {
    out.push_str(
        "## 2. Session latency (connect + login + NOOP + logout, sequential sessions, ms)\n\n",
    );
    out.push_str("| protocol | peer | sessions | p50 | p90 | p99 | mean | p50 ÷ direct | proxy's upstream login, mean |\n|---|---|---|---|---|---|---|---|---|\n");
    for proto in ["imap", "pop3", "smtp"] {
        for (peer, name) in [
            ("direct", "direct TLS (client does TLS itself)"),
            ("stunnel", "stunnel"),
            ("dovecot", "Dovecot proxy"),
            ("proxy", "qqmail-proxy, plaintext"),
            ("proxy-starttls", "qqmail-proxy, local STARTTLS"),
            ("proxy-auto", "qqmail-proxy, `auto://`, plaintext client"),
            ("proxy-auto-tls", "qqmail-proxy, `auto://`, TLS client"),
        ] {
            let Some(v) = r.get("latency", proto, peer) else {
                continue;
            };
            let p50 = v["p50_ms"].as_f64();
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {} | {} | {} | {} | {} |",
                proto.to_uppercase(),
                v["sessions"],
                fmt(p50, 2),
                fmt(v["p90_ms"].as_f64(), 2),
                fmt(v["p99_ms"].as_f64(), 2),
                fmt(v["mean_ms"].as_f64(), 2),
                fmt(ratio(p50, r.num("latency", proto, "direct", "p50_ms")), 2),
                fmt(v["upstream_login_mean_ms"].as_f64(), 2),
            );
        }
    }
    out.push_str(
        "\nThe last column is the proxy's own `qqmail_proxy_login_seconds` (from its /metrics): \
         upstream TCP connect + TLS handshake + greeting + login, averaged over both proxy rows; \
         when a warm spare (already connected, verified and greeted) serves the login, only the \
         login itself. It starts only after the client's login command has arrived. \
         An `auto://` listener waits up to 100 ms for a TLS ClientHello before it greets: a \
         plaintext client (which waits for the greeting) pays that wait once per session, a \
         TLS client (which speaks first) does not; plain and `tls://` listeners never wait.\n\n",
    );
}

fn section_rate(out: &mut String, r: &Results) {
    out.push_str(
        "## 3. Message rate (concurrent SMTP clients, one session each, messages back to back)\n\n",
    );
    out.push_str("| peer | clients | message | window | acknowledged msgs/s | errors | p50 ms | p99 ms | reached upstream in window (msgs/s) | backlog drained after | delivered end to end (msgs/s) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (peer, name) in PEERS_RATE {
        let Some(v) = r.get("rate", "smtp", peer) else {
            continue;
        };
        let drain = v["drain_s"].as_f64();
        let _ = writeln!(
            out,
            "| {name} | {} | {} B | {} s | {} | {} | {} | {} | {} | {} | {} |",
            v["clients"],
            v["size"],
            v["secs"],
            fmt(v["msgs_per_s"].as_f64(), 1),
            v["errors"],
            fmt(v["p50_ms"].as_f64(), 2),
            fmt(v["p99_ms"].as_f64(), 2),
            fmt(v["upstream_per_s"].as_f64(), 1),
            match drain {
                Some(d) if d >= 0.0 => format!("{d:.1} s"),
                _ => "not drained".into(),
            },
            fmt(delivered(r, peer), 1),
        );
    }
    out.push_str(
        "\nAcknowledged: the peer's 250 within the window (for Postfix and the queue, the \
         message is on disk, fsync'd). Delivered end to end: the messages the upstream \
         received, over the time from the first send until it had every acknowledged one.\n",
    );
    for (peer, _) in PEERS_RATE {
        if let Some(e) = r
            .get("rate", "smtp", peer)
            .and_then(|v| v["first_error"].as_str())
        {
            let _ = writeln!(out, "\nFirst error seen with {peer}: `{e}`");
        }
    }
    out.push('\n');
}

fn section_idle(out: &mut String, r: &Results) {
    out.push_str("## 4. Idle scale (IMAP sessions logged in and in IDLE through qqmail-proxy)\n\n");
    let Some(v) = r.get("idle", "imap", "proxy") else {
        out.push_str("Not measured.\n\n");
        return;
    };
    out.push_str("| sessions | opened in | proxy VmRSS before (after one warm-up login) → after | per session | proxy CPU while idle | EXISTS push: all received | p50 | p99 |\n|---|---|---|---|---|---|---|---|\n");
    let _ = writeln!(
        out,
        "| {} | {} s | {:.1} → {:.1} MiB | {} KiB | {} ms over {} s ({} %) | {} ms | {} ms | {} ms |\n",
        v["sessions"],
        fmt(v["open_s"].as_f64(), 2),
        v["rss_before_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        v["rss_after_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        fmt(v["per_session_kib"].as_f64(), 1),
        fmt(v["cpu_ms"].as_f64(), 0),
        v["cpu_window_s"],
        fmt(v["cpu_pct"].as_f64(), 2),
        fmt(v["push_all_ms"].as_f64(), 1),
        fmt(v["push_p50_ms"].as_f64(), 1),
        fmt(v["push_p99_ms"].as_f64(), 1),
    );
}

fn section_footprint(out: &mut String, r: &Results, meta: &[(String, String)]) {
    out.push_str("## 5. Footprint\n\n| binary size | stripped | RSS at start (median / max) | exec → first listening (median / max) | exec → ready (median / max) | starts |\n|---|---|---|---|---|---|\n");
    let m = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("–")
    };
    let size = m("binary_bytes")
        .parse::<f64>()
        .map(|b| format!("{:.2} MiB ({b} bytes)", b / 1048576.0))
        .unwrap_or_else(|_| "–".into());
    match r.get("startup", "-", "proxy") {
        Some(v) => {
            let _ = writeln!(
                out,
                "| {size} | {} | {:.2} / {:.2} MiB | {} / {} ms | {} / {} ms | {} |\n",
                m("binary_stripped"),
                v["rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                v["rss_kib_max"].as_f64().unwrap_or(0.0) / 1024.0,
                fmt(v["listening_ms"].as_f64(), 1),
                fmt(v["listening_ms_max"].as_f64(), 1),
                fmt(v["ready_ms"].as_f64(), 1),
                fmt(v["ready_ms_max"].as_f64(), 1),
                v["runs"],
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| {size} | {} | – | – | – | – |\n",
                m("binary_stripped")
            );
        }
    }
}

/// Builds the whole document.
fn render(r: &Results, meta: &[(String, String)], notes: Option<&str>) -> String {
    let mut out = String::new();
    let m = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("–")
    };
    let _ = writeln!(
        out,
        "# qqmail-proxy benchmark results\n\nWritten by `bash bench/run.sh{}` on {}. Everything ran on 127.0.0.1 on one machine, \
         peers measured in the same run and interleaved where possible; ratios are within this run.\n",
        if m("mode").starts_with("quick") { " --quick" } else { "" },
        m("date")
    );
    if m("mode").starts_with("quick") {
        out.push_str(
            "**Quick mode**: debug builds and small sizes. This checks that every measurement \
             runs; its numbers and verdicts say little. The full run's report is RESULTS.md.\n\n",
        );
    }
    out.push_str("## Machine and versions\n\n| | |\n|---|---|\n");
    for (k, v) in meta {
        if k.starts_with("binary_") {
            continue;
        }
        let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
    }
    out.push('\n');
    let fails = r.failures();
    if !fails.is_empty() {
        out.push_str("## Measurements that failed to run\n\n");
        for f in fails {
            let _ = writeln!(
                out,
                "- {} {} {}: `{}`",
                f["kind"].as_str().unwrap_or("?"),
                f["proto"].as_str().unwrap_or("?"),
                f["peer"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?").replace('`', "'")
            );
        }
        out.push('\n');
    }
    section_targets(&mut out, r);
    section_throughput(&mut out, r);
    section_latency(&mut out, r);
    section_rate(&mut out, r);
    section_idle(&mut out, r);
    section_footprint(&mut out, r, meta);
    if let Some(n) = notes {
        out.push_str(n.trim_end());
        out.push('\n');
    }
    out
}

/// `report --results F --meta F --out F [--notes F]`; also prints the targets.
pub fn run(args: &Args) -> Result<()> {
    let text = std::fs::read_to_string(args.req("results")?).context("reading results")?;
    let lines = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let meta_text = std::fs::read_to_string(args.req("meta")?).context("reading meta")?;
    let meta: Vec<(String, String)> = meta_text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let notes = match args.get("notes") {
        Some(p) => std::fs::read_to_string(p).ok(),
        None => None,
    };
    let r = Results { lines };
    std::fs::write(args.req("out")?, render(&r, &meta, notes.as_deref()))
        .context("writing the report")?;
    for t in targets(&r) {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a ",
        };
        let value = t
            .value
            .map(|v| format!("{v:.2}{}", t.unit))
            .unwrap_or_else(|| "-".into());
        println!(
            "target {verdict} {:<45} {value:>12}  ({})",
            t.name, t.detail
        );
    }
    Ok(())
}
