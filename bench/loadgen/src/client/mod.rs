//! The load generator's client side: who to talk to (`Peer`), and for each protocol a
//! connect-and-login that leaves a `Wire` ready for the measured command.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::wire::{Stream, Wire};

pub mod imap;
pub mod pop3;
pub mod smtp;

/// How the client reaches a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Implicit TLS from the first byte (the direct floor).
    Tls,
    /// Plaintext.
    Plain,
    /// Plaintext, then STARTTLS/STLS before the login.
    StartTls,
}

/// One system under test.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Name in the results (direct, stunnel, dovecot, postfix, proxy, proxy-starttls).
    pub label: String,
    /// How to connect.
    pub mode: Mode,
    /// Where.
    pub addr: SocketAddr,
    /// Login name; `None` means no login (Postfix accepts mail from 127.0.0.1 without one).
    pub user: Option<String>,
    /// Password.
    pub pass: String,
    /// SMTP: count a message as done when the upstream sink has it, not at the peer's 250
    /// (for store-and-forward peers such as Postfix).
    pub end_to_end: bool,
}

impl Peer {
    /// Parses `label|mode|host:port|user|pass[|e2e]`.
    pub fn parse(spec: &str) -> Result<Peer> {
        let f: Vec<&str> = spec.split('|').collect();
        if f.len() < 5 {
            bail!("peer spec needs label|mode|addr|user|pass[|e2e]: {spec}");
        }
        let mode = match f[1] {
            "tls" => Mode::Tls,
            "plain" => Mode::Plain,
            "starttls" => Mode::StartTls,
            other => bail!("unknown mode {other} in {spec}"),
        };
        Ok(Peer {
            label: f[0].to_string(),
            mode,
            addr: f[2].parse().with_context(|| format!("address in {spec}"))?,
            user: (!f[3].is_empty()).then(|| f[3].to_string()),
            pass: f[4].to_string(),
            end_to_end: f.get(5) == Some(&"e2e"),
        })
    }
}

/// What every client connection needs.
#[derive(Clone)]
pub struct Ctx {
    /// Verifies the upstream's and the proxy's certificates against the run's CA.
    pub tls: TlsConnector,
}

impl Ctx {
    /// A context trusting `ca`.
    pub fn new(ca: &Path) -> Result<Ctx> {
        Ok(Ctx {
            tls: crate::tls::connector(ca)?,
        })
    }

    /// Opens a connection (with the TLS handshake in `Tls` mode).
    pub async fn connect(&self, peer: &Peer) -> Result<Wire> {
        let tcp = TcpStream::connect(peer.addr)
            .await
            .with_context(|| format!("connecting to {} ({})", peer.label, peer.addr))?;
        let _ = tcp.set_nodelay(true);
        let stream = match peer.mode {
            Mode::Tls => crate::tls::client_handshake(&self.tls, tcp).await?,
            Mode::Plain | Mode::StartTls => Stream::Plain(tcp),
        };
        Ok(Wire::new(stream))
    }

    /// Replaces a plaintext wire with TLS after a STARTTLS reply.
    pub async fn upgrade(&self, w: Wire) -> Result<Wire> {
        match w.into_stream()? {
            Stream::Plain(tcp) => Ok(Wire::new(
                crate::tls::client_handshake(&self.tls, tcp).await?,
            )),
            _ => Err(anyhow!("STARTTLS on a TLS connection")),
        }
    }
}

/// Reads the control port's one-line answer to `command`.
pub async fn control(ctl: SocketAddr, command: &str) -> Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tcp = TcpStream::connect(ctl)
        .await
        .context("connecting to the upstream control port")?;
    let (r, mut w) = tcp.into_split();
    w.write_all(format!("{command}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    Ok(line.trim().to_string())
}

/// A `key=value` field of a control-port answer.
pub fn stat(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The proxy's upstream-login histogram totals (`qqmail_proxy_login_seconds_sum` and
/// `_count`) from its admin endpoint's `GET /metrics`.
pub async fn login_metrics(admin: SocketAddr) -> Result<(f64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(admin)
        .await
        .context("connecting to the proxy's admin endpoint")?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    tcp.take(4 << 20).read_to_end(&mut body).await?;
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .with_context(|| format!("no {name} in /metrics"))
    };
    Ok((
        value("qqmail_proxy_login_seconds_sum ")?,
        value("qqmail_proxy_login_seconds_count ")?,
    ))
}
