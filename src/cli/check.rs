//! Operator commands that look at a configuration: `check-config` (describe, secrets
//! masked), `check` (log in upstream with lettre for SMTP, async-imap for IMAP and the
//! proxy's own POP3 client, one line per service with a hint), `send-test` and
//! `healthcheck`.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Account, Config, ListenAddr, ListenMode};
use crate::providers::{Security, ServerAddr};

/// The effective settings, secrets masked, for `check-config`.
pub fn describe(c: &Config) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "configuration OK");
    let _ = writeln!(o, "state_dir: {}", c.state_dir.display());
    let _ = writeln!(o, "hostname: {}", c.hostname);
    for a in &c.accounts {
        let show = |s: &Option<ServerAddr>| s.as_ref().map_or("-".to_string(), ToString::to_string);
        let _ = writeln!(
            o,
            "account {:?}: {} provider={} smtp={} imap={} pop3={} code=*** ({} characters, from {}){}",
            a.id,
            a.email,
            a.provider.names[0],
            show(&a.smtp),
            show(&a.imap),
            show(&a.pop3),
            a.code.len(),
            a.code_source,
            a.ca_file
                .as_ref()
                .map(|p| format!(" ca_file={}", p.display()))
                .unwrap_or_default()
        );
    }
    if c.users.is_empty() {
        let _ = writeln!(
            o,
            "users: none configured; `serve` generates one per account (user = the address), stored in {}",
            crate::state::users_file(c).display()
        );
    }
    for u in &c.users {
        let _ = writeln!(
            o,
            "user {:?} -> account {:?} (argon2 hash){}",
            u.name,
            c.accounts[u.account].id,
            u.delivery
                .map(|d| format!(" delivery={}", d.name()))
                .unwrap_or_default()
        );
    }
    if let Some(s) = &c.smtp {
        let _ = writeln!(
            o,
            "smtp: listen={:?} starttls={} delivery={} rewrite_sender={:?} allow_unauthenticated={:?}",
            s.listener
                .listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            s.listener.starttls.name(),
            s.delivery.name(),
            s.rewrite_sender,
            s.allow_unauthenticated
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    for (name, l) in [("imap", &c.imap), ("pop3", &c.pop3)] {
        if let Some(l) = l {
            let _ = writeln!(
                o,
                "{name}: listen={:?} starttls={}",
                l.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                l.starttls.name()
            );
        }
    }
    let _ = writeln!(
        o,
        "tls: cert_file={} key_file={} key_type={} ca={}",
        c.tls.cert_file.display(),
        c.tls.key_file.display(),
        c.tls.key_type.name(),
        c.tls.ca_cert_file.display()
    );
    if let Some(hint) = crate::tls::local::legacy_hint(&c.tls) {
        let _ = writeln!(o, "note: {hint}");
    }
    if c.uses_queue() {
        let q = &c.queue;
        let _ = writeln!(
            o,
            "queue: dir={} max_size={} bytes max_age={:?} retry_min={:?} retry_max={:?} rate={} daily_limit={}",
            q.dir.display(),
            q.max_size,
            q.policy.max_age,
            q.policy.retry_min,
            q.policy.retry_max,
            q.rate
                .map_or("none".to_string(), |r| format!("{}/{:?}", r.count, r.per)),
            q.daily_limit
        );
    }
    let _ = writeln!(o, "limits: {:?}", c.limits);
    if let Some(a) = c.admin {
        let _ = writeln!(o, "admin: {a}");
    }
    for w in &c.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

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

fn smtp_hint(e: &lettre::transport::smtp::Error) -> &'static str {
    let text = e.to_string().to_ascii_lowercase();
    match e.status().map(|c| c.to_string()) {
        _ if text.contains("frequency") => "the provider is rate-limiting: wait 10-30 minutes",
        Some(c) if c == "535" || c == "526" => {
            "the authorization code is wrong or was revoked, or SMTP is off: generate a new one in \
             QQ Mail → Settings → Account"
        }
        Some(c) if c.starts_with('4') => "temporary refusal (often rate limiting): try again later",
        _ if text.contains("certificate") => {
            "certificate problem: check the clock; ca_file only for private CAs"
        }
        _ if text.contains("refused") || text.contains("timed out") || text.contains("resolve") => {
            "network problem: check the server name, port, DNS and firewall"
        }
        _ => "see the message above",
    }
}

async fn check_imap(
    rt: &crate::runtime::Runtime,
    a: &Account,
    server: &ServerAddr,
    timeout: Duration,
) -> Result<String, String> {
    if server.security == Security::StartTls {
        // async-imap would need the plaintext dialog first; use the proxy's own client.
        return crate::session::upstream_login(
            rt,
            crate::proto::Protocol::Imap,
            a,
            crate::session::Purpose::Plain,
        )
        .await
        .map(|_| "OK (STARTTLS)".to_string())
        .map_err(|e| format!("{e} — {}", e.hint().unwrap_or("")));
    }
    let tls = rt.upstream_tls(a).ok_or("no TLS config")?;
    let tcp = crate::net::connect(&server.host, server.port, timeout)
        .await
        .map_err(|e| {
            format!("cannot reach {server}: {e} — check the server name, port and firewall")
        })?;
    let stream = tokio::time::timeout(
        timeout,
        crate::tls::upstream::handshake(tls, &server.host, tcp),
    )
    .await
    .map_err(|_| format!("{server}: TLS handshake timed out"))?
    .map_err(|e| format!("{server}: {e}"))?;
    let mut client = async_imap::Client::new(stream);
    let _greeting = tokio::time::timeout(timeout, client.read_response())
        .await
        .map_err(|_| format!("{server}: no greeting"))?;
    let code = a.code.expose_str().unwrap_or_default().to_string();
    match tokio::time::timeout(timeout, client.login(&a.email, &code)).await {
        Err(_) => Err(format!("{server}: LOGIN timed out")),
        Ok(Err((e, _))) => Err(format!(
            "{server}: {e} — the authorization code is wrong or was revoked, or IMAP is off: \
             generate a new one in QQ Mail → Settings → Account"
        )),
        Ok(Ok(mut session)) => {
            let _ = session.logout().await;
            Ok("OK".into())
        }
    }
}

/// `qqmail-proxy check`: one line per account and service; an error if any failed.
pub fn check(config: &Config) -> Result<()> {
    let users: Vec<crate::config::User> = Vec::new();
    let rt = crate::runtime::Runtime::build_for_check(config, &users)?;
    let timeout = config.limits.upstream_timeout;
    let failures = super::tokio()?.block_on(async {
        let mut failures = 0;
        for a in &config.accounts {
            if let Some(server) = &a.smtp {
                let line = match smtp_transport(a, server, timeout) {
                    Ok(t) => match t.test_connection().await {
                        Ok(true) => Ok("OK".to_string()),
                        Ok(false) => Err("connected but NOOP failed".to_string()),
                        Err(e) => Err(format!("{e} — {}", smtp_hint(&e))),
                    },
                    Err(e) => Err(format!("{e:#}")),
                };
                failures += report(a, "smtp", server, line);
            }
            if let Some(server) = &a.imap {
                failures += report(a, "imap", server, check_imap(&rt, a, server, timeout).await);
            }
            if let Some(server) = &a.pop3 {
                let line = crate::session::upstream_login(
                    &rt,
                    crate::proto::Protocol::Pop3,
                    a,
                    crate::session::Purpose::Plain,
                )
                .await
                .map(|_| "OK".to_string())
                .map_err(|e| format!("{e} — {}", e.hint().unwrap_or("")));
                failures += report(a, "pop3", server, line);
            }
        }
        failures
    });
    if failures > 0 {
        bail!("{failures} check(s) failed");
    }
    Ok(())
}

fn report(a: &Account, service: &str, server: &ServerAddr, line: Result<String, String>) -> usize {
    match line {
        Ok(text) => {
            println!(
                "{:<8} {:<5} {:<28} {text}",
                a.id,
                service,
                server.to_string()
            );
            0
        }
        Err(text) => {
            println!(
                "{:<8} {:<5} {:<28} FAILED: {text}",
                a.id,
                service,
                server.to_string()
            );
            1
        }
    }
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
        .map_err(|e| anyhow!("{e} — {}", smtp_hint(&e)))?;
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
