//! The fast upstream stand-in: implicit-TLS SMTP sink, IMAP and POP3 sources serving one
//! big message, and a plaintext control port on 127.0.0.1 (`PUSH` wakes every IMAP IDLE
//! session with an EXISTS, `STATS`, `WAITMSGS n ms`). Ports go to a file once bound.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::args::Args;
use crate::wire::{Stream, Wire};

mod imap;
mod pop3;
mod smtp;

/// State shared by every upstream session.
pub struct Shared {
    /// The only accepted login name.
    pub email: String,
    /// The only accepted password (the "authorization code").
    pub code: String,
    /// The message served by FETCH and RETR.
    pub message: Arc<Vec<u8>>,
    /// Messages accepted by the SMTP sink (watchable for `WAITMSGS`).
    pub msgs: watch::Sender<u64>,
    /// DATA bytes received by the SMTP sink.
    pub smtp_bytes: AtomicU64,
    /// Push generation: bumping it sends one EXISTS to every IDLE session.
    pub push: watch::Sender<u64>,
    /// Sessions currently in IDLE.
    pub idlers: AtomicUsize,
    /// Sessions that ended with an I/O or protocol error.
    pub errors: AtomicU64,
    /// Sessions accepted in total.
    pub sessions: AtomicU64,
}

impl Shared {
    /// True when `user`/`pass` are the account's.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        user == self.email.as_bytes() && pass == self.code.as_bytes()
    }
}

/// Decodes SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, base64.
pub fn sasl_plain(b64: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_ascii())
        .ok()?;
    let mut parts = raw.split(|&b| b == 0);
    let _authz = parts.next()?;
    let user = parts.next()?.to_vec();
    let pass = parts.next()?.to_vec();
    Some((user, pass))
}

/// Runs the upstream until killed.
pub async fn run(args: &Args) -> Result<()> {
    let acceptor = crate::tls::acceptor(
        &PathBuf::from(args.req("cert")?),
        &PathBuf::from(args.req("key")?),
    )?;
    let size: usize = args.num("message-size", 50_000_000)?;
    let shared = Arc::new(Shared {
        email: args.req("email")?.to_string(),
        code: args.req("code")?.to_string(),
        message: Arc::new(crate::message::message(size)),
        msgs: watch::channel(0).0,
        smtp_bytes: AtomicU64::new(0),
        push: watch::channel(0).0,
        idlers: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        sessions: AtomicU64::new(0),
    });
    let bind = |what: &'static str| async move {
        TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding the {what} listener"))
    };
    let smtp = bind("smtp").await?;
    let imap = bind("imap").await?;
    let pop3 = bind("pop3").await?;
    let ctl = bind("control").await?;
    let ports = format!(
        "smtp={}\nimap={}\npop3={}\nctl={}\n",
        smtp.local_addr()?.port(),
        imap.local_addr()?.port(),
        pop3.local_addr()?.port(),
        ctl.local_addr()?.port()
    );
    let file = PathBuf::from(args.req("ports-file")?);
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, ports).context("writing the ports file")?;
    std::fs::rename(&tmp, &file).context("renaming the ports file")?;

    tokio::spawn(serve(smtp, acceptor.clone(), shared.clone(), Proto::Smtp));
    tokio::spawn(serve(imap, acceptor.clone(), shared.clone(), Proto::Imap));
    tokio::spawn(serve(pop3, acceptor, shared.clone(), Proto::Pop3));
    control(ctl, shared).await;
    Ok(())
}

#[derive(Clone, Copy)]
enum Proto {
    Smtp,
    Imap,
    Pop3,
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>, proto: Proto) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                eprintln!("upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        shared.sessions.fetch_add(1, Ordering::Relaxed);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let result = async {
                let tls = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp))
                    .await
                    .context("TLS handshake timed out")?
                    .context("TLS handshake")?;
                let wire = Wire::new(Stream::Server(Box::new(tls)));
                match proto {
                    Proto::Smtp => smtp::session(wire, &shared).await,
                    Proto::Imap => imap::session(wire, &shared).await,
                    Proto::Pop3 => pop3::session(wire, &shared).await,
                }
            }
            .await;
            if let Err(e) = result {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if std::env::var_os("BENCH_DEBUG").is_some() {
                    eprintln!("upstream session error: {e:#}");
                }
            }
        });
    }
}

fn stats(shared: &Shared) -> String {
    format!(
        "msgs={} smtp_bytes={} idlers={} sessions={} errors={}",
        *shared.msgs.borrow(),
        shared.smtp_bytes.load(Ordering::Relaxed),
        shared.idlers.load(Ordering::Relaxed),
        shared.sessions.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed)
    )
}

async fn control(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = control_session(tcp, &shared).await;
        });
    }
}

async fn control_session(tcp: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let reply = match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("PUSH") => {
                let idlers = shared.idlers.load(Ordering::Relaxed);
                shared.push.send_modify(|g| *g += 1);
                format!("OK idlers={idlers}\n")
            }
            Some("STATS") => format!("OK {}\n", stats(shared)),
            Some("WAITMSGS") => {
                let target: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let ms: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
                let mut rx = shared.msgs.subscribe();
                let waited =
                    tokio::time::timeout(Duration::from_millis(ms), rx.wait_for(|n| *n >= target))
                        .await;
                let word = if matches!(waited, Ok(Ok(_))) {
                    "OK"
                } else {
                    "TIMEOUT"
                };
                format!("{word} {}\n", stats(shared))
            }
            _ => "ERR commands: PUSH, STATS, WAITMSGS n ms\n".to_string(),
        };
        w.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}
