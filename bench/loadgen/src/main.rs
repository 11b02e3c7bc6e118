//! qqmail-bench: the benchmark's load generator, upstream stand-in and report writer.
//!
//! ```text
//! qqmail-bench upstream --cert C --key K --email E --code P --message-size N --ports-file F
//! qqmail-bench client throughput --proto smtp|imap|pop3 --ca CA --peer SPEC... [--size N --runs K --ctl ADDR]
//! qqmail-bench client latency    --proto smtp|imap|pop3 --ca CA --peer SPEC... [--sessions N --warmup W]
//! qqmail-bench client rate       --ca CA --peer SPEC... --ctl ADDR [--clients N --size N --secs S]
//! qqmail-bench client idle       --ca CA --peer SPEC --ctl ADDR --pid PID [--sessions N --cpu-secs S]
//! qqmail-bench startup --bin B --config C [--runs K --env K=V]
//! qqmail-bench report --results F.jsonl --meta F --out RESULTS.md [--notes F.md]
//! qqmail-bench ports N      (prints N free 127.0.0.1 ports, found by binding :0)
//! ```
//! A peer SPEC is `label|tls|plain|starttls|host:port|user|pass[|e2e]`.

#![forbid(unsafe_code)]

use anyhow::{bail, Result};

mod args;
mod client;
mod message;
mod report;
mod scenario;
mod tls;
mod upstream;
mod wire;

use args::Args;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("qqmail-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Prints `n` distinct free ports (all bound at once, then released: a small race with
/// other programs is accepted, as in tests/interop).
fn free_ports(n: usize) -> Result<()> {
    let socks = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let ports = socks
        .iter()
        .map(|s| Ok(s.local_addr()?.port().to_string()))
        .collect::<Result<Vec<_>>>()?;
    println!("{}", ports.join(" "));
    Ok(())
}

fn real_main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["upstream"] => runtime()?.block_on(upstream::run(&args)),
        ["client", "throughput"] => runtime()?.block_on(scenario::throughput::run(&args)),
        ["client", "latency"] => runtime()?.block_on(scenario::latency::run(&args)),
        ["client", "rate"] => runtime()?.block_on(scenario::rate::run(&args)),
        ["client", "idle"] => runtime()?.block_on(scenario::idle::run(&args)),
        ["startup"] => scenario::startup::run(&args),
        ["report"] => report::run(&args),
        ["ports", n] => free_ports(n.parse()?),
        _ => bail!("usage: see the header of bench/loadgen/src/main.rs (got {words:?})"),
    }
}
