//! Operator commands that look at a configuration: `check` (log in upstream with the
//! proxy's own SMTP, IMAP and POP3 login code — exactly what `serve` does, so the same TLS
//! verification and the same hints — one line per service, each bounded by
//! `upstream_timeout`), `send-test` (a message through lettre) and `healthcheck`. `check-config`'s output is `describe`'s.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Account, Config, ListenAddr, ListenMode};
use crate::providers::{Security, ServerAddr};

fn smtp_transport(
    a: &Account,
    server: &ServerAddr,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    let mut params = TlsParameters::builder(server.host.clone())
        .certificate_store(CertificateStore::WebpkiRoots);
    if let Some(ca) = &a.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("reading ca_file {}", ca.display()))?;
        params = params.add_root_certificate(Certificate::from_pem(&pem)?);
    }
    let params = params.build_rustls()?;
    let tls = match server.security {
        Security::Implicit => Tls::Wrapper(params),
        Security::StartTls => Tls::Required(params),
    };
    let code = a
        .code
        .expose_str()
        .ok_or_else(|| anyhow!("the code is not valid UTF-8"))?
        .to_string();
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.clone())
            .port(server.port)
            .tls(tls)
            .credentials(Credentials::new(a.email.clone(), code))
            .authentication(vec![Mechanism::Plain, Mechanism::Login])
            .timeout(Some(timeout))
            .build(),
    )
}

fn smtp_hint(e: &lettre::transport::smtp::Error, server: &ServerAddr) -> &'static str {
    use crate::upstream::hint;
    let text = e.to_string().to_ascii_lowercase();
    if let Some(code) = e.status() {
        // The reply as the gateway's log lines see it: one table for both.
        if let Some(h) = hint::for_reply(format!("{code} {text}").as_bytes()) {
            return h;
        }
        let code = code.to_string();
        if code == "526" {
            return hint::CODE_REFUSED;
        }
        if code.starts_with('4') {
            return "temporary refusal (often rate limiting): try again later";
        }
    }
    match () {
        _ if text.contains("frequency") => hint::RATE_LIMITED,
        _ if text.contains("certificate") => hint::TLS_UNTRUSTED,
        _ if text.contains("timed out") => silence_hint(server),
        _ if text.contains("refused") || text.contains("resolve") => {
            "network problem: check the server name, port, DNS and firewall"
        }
        _ if e.is_permanent() => "the server refused it permanently: its reply is quoted above",
        _ => "check the server name and port, and the reply quoted before this hint",
    }
}

/// The hint for a check that got no answer at all within the timeout.
fn silence_hint(server: &ServerAddr) -> &'static str {
    match server.security {
        Security::StartTls => {
            "nothing arrived: if this port speaks TLS at once (465, 993, 995), use \
             tls://host:port (implicit) or port 587 for STARTTLS"
        }
        Security::Implicit => {
            "nothing arrived: check the server name and port, and that this machine may reach \
             the provider (firewall, proxy)"
        }
    }
}

/// Checks one service, never for longer than `timeout`: whatever step hangs (connect,
/// TLS, a greeting that never comes), the line says so and the check goes on.
async fn bounded(
    server: &ServerAddr,
    timeout: Duration,
    check: impl std::future::Future<Output = Result<String, String>>,
) -> Result<String, String> {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {} — {}",
                super::describe::duration(timeout),
                silence_hint(server)
            ))
        })
}

/// Logs in the way `serve` does (the same code, TLS and hints).
async fn check_login(
    rt: &crate::runtime::Runtime,
    a: &Account,
    protocol: crate::proto::Protocol,
) -> Result<String, String> {
    crate::session::upstream_login(rt, protocol, a, crate::session::Purpose::Plain)
        .await
        .map(|_| "OK".to_string())
        .map_err(|e| match e.hint() {
            Some(hint) => format!("{e} — {hint}"),
            None => e.to_string(),
        })
}

/// One service's check: the account, `smtp` / `imap` / `pop3`, the server, and `OK` or
/// what failed with its hint.
#[derive(Debug, Clone)]
pub(crate) struct CheckLine {
    /// The account id.
    pub(crate) account: String,
    /// `smtp`, `imap` or `pop3`.
    pub(crate) service: &'static str,
    /// `host:port` (with `starttls://` when not implicit TLS).
    pub(crate) server: String,
    /// `Ok("OK")`, or the failure and its hint.
    pub(crate) result: Result<String, String>,
}

/// Checks every account's services in turn, each bounded by `upstream_timeout`: what
/// `qqmail-proxy check` prints and the status page's "check now" button shows.
pub(crate) async fn run_all(config: &Config, rt: &crate::runtime::Runtime) -> Vec<CheckLine> {
    use crate::proto::Protocol;
    let timeout = config.limits.upstream_timeout;
    let mut lines = Vec::new();
    for a in &config.accounts {
        for (service, server, protocol) in [
            ("smtp", &a.smtp, Protocol::Smtp),
            ("imap", &a.imap, Protocol::Imap),
            ("pop3", &a.pop3, Protocol::Pop3),
        ] {
            if let Some(server) = server {
                let result = bounded(server, timeout, check_login(rt, a, protocol)).await;
                lines.push(CheckLine {
                    account: a.id.clone(),
                    service,
                    server: server.to_string(),
                    result,
                });
            }
        }
    }
    lines
}

/// `qqmail-proxy check`: one line per account and service; an error if any failed.
pub fn check(config: &Config) -> Result<()> {
    let users: Vec<crate::config::User> = Vec::new();
    let rt = crate::runtime::Runtime::build_for_check(config, &users)?;
    let lines = super::tokio()?.block_on(run_all(config, &rt));
    let failures: usize = lines.into_iter().map(report).sum();
    if failures > 0 {
        bail!("{failures} check(s) failed");
    }
    Ok(())
}

fn report(line: CheckLine) -> usize {
    let (text, failed) = match line.result {
        Ok(text) => (text, 0),
        Err(text) => (format!("FAILED: {text}"), 1),
    };
    println!(
        "{:<8} {:<5} {:<28} {text}",
        line.account, line.service, line.server
    );
    failed
}

/// `qqmail-proxy send-test`: a short message from the account to `to`.
pub fn send_test(config: &Config, to: &str, account: Option<&str>) -> Result<()> {
    let a = match account {
        Some(id) => config
            .accounts
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| anyhow!("no account {id:?}"))?,
        None => config
            .accounts
            .first()
            .ok_or_else(|| anyhow!("no account"))?,
    };
    let server = a
        .smtp
        .as_ref()
        .ok_or_else(|| anyhow!("account {:?} has no SMTP server", a.id))?;
    let message = Message::builder()
        .from(a.email.parse().context("account email")?)
        .to(to.parse().with_context(|| format!("--to {to:?}"))?)
        .subject("qqmail-proxy test message")
        .body(format!(
            "This message was sent by `qqmail-proxy send-test` through {server} as {}.\n",
            a.email
        ))?;
    let transport = smtp_transport(a, server, config.limits.upstream_timeout)?;
    let response = super::tokio()?
        .block_on(transport.send(message))
        .map_err(|e| anyhow!("{e} — {}", smtp_hint(&e, server)))?;
    println!(
        "sent: {} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

/// `qqmail-proxy healthcheck`: connects to the first listener and expects a greeting.
pub fn healthcheck(config: &Config) -> Result<()> {
    let all: Vec<ListenAddr> = [
        config.smtp.as_ref().map(|s| &s.listener),
        config.imap.as_ref(),
        config.pop3.as_ref(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|l| l.listen.iter().copied())
    .collect();
    // A plaintext greeting is what this reads: prefer a plain listener. With implicit TLS
    // only, an accepted connection is the answer.
    let (addr, greets) = match all.iter().find(|l| l.mode != ListenMode::Tls) {
        Some(l) => (l.addr, true),
        None => (
            all.first()
                .map(|l| l.addr)
                .ok_or_else(|| anyhow!("no listener configured"))?,
            false,
        ),
    };
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut tcp = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .with_context(|| format!("connecting to {target}"))?;
    if !greets {
        println!("ok: {target} accepted a connection");
        return Ok(());
    }
    tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut tcp, &mut buf)?;
    let greeting = &buf[..n];
    if greeting.starts_with(b"220") || greeting.starts_with(b"* OK") || greeting.starts_with(b"+OK")
    {
        let _ = std::io::Write::write_all(&mut tcp, b"QUIT\r\n");
        println!("ok: {target} answered");
        Ok(())
    } else {
        bail!("{target} answered {:?}", String::from_utf8_lossy(greeting))
    }
}
