//! `qqmail-proxy serve`: load and validate, set up logging, raise the descriptor limit,
//! generate what is missing, bind, announce readiness, run until SIGTERM/SIGINT, reload
//! on SIGHUP. A reload keeps the counters, the activity record and the failed-login
//! table ([`Kept`]); everything else follows the new configuration, except the listen
//! addresses (bound once at start), whose change is logged as needing a restart, the
//! activity record's file (in the start's `state_dir`), and the queue's deliverer, which
//! runs from start to shutdown (see `session::queue::start` for what it takes from a
//! reload).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ListenAddr, LogFormat, ProcessEnv};
use crate::runtime::{Kept, Runtime};
use crate::server::{self, Current};

/// Installs the global tracing subscriber (stderr; level from RUST_LOG, default info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rustls warns about every client that sends an IP address as SNI (GnuTLS does);
        // harmless, so it is quiet unless RUST_LOG asks for it.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    // Client-chosen text is escaped where it is written, for every field of every line
    // (crate::logging): a CR, LF or ESC in a user name cannot forge a line.
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .with_writer(crate::logging::JsonWriter(std::io::stderr))
            .json()
            .try_init(),
        LogFormat::Text => builder
            .with_writer(std::io::stderr)
            .with_ansi(crate::logging::use_colour())
            .fmt_fields(crate::logging::EscapedFields)
            .try_init(),
    };
}

fn build(config: Config, kept: Kept) -> Result<Runtime> {
    let (users, generated) = crate::state::local_users(&config, false)?;
    crate::state::announce(&generated, &config);
    Ok(Runtime::build(config, &users, kept)?)
}

/// Runs the proxy.
pub fn serve(path: Option<&Path>, log_format: Option<LogFormat>) -> Result<()> {
    // Before any thread exists (see session::smtp::stamp).
    crate::session::smtp::stamp::init_local_offset();
    let config = Config::load(path, &ProcessEnv)?;
    init_logging(log_format.or(config.log_format).unwrap_or_default());
    for w in &config.warnings {
        warn!("{w}");
    }
    for origin in &config.listen_origins {
        info!("{origin}");
    }
    log_nofile(crate::fdlimit::raise_nofile());
    let users = config.users.clone();
    // Off the start path: a hash check per user and published password.
    std::thread::spawn(move || {
        for w in crate::auth::published::warnings(&users) {
            warn!("{w}");
        }
    });
    let admin = config.admin;
    let state_dir = config.state_dir.clone();
    // Read before the first session; a damaged file only costs the page its history.
    let activity = Arc::new(crate::activity::persist::load(&state_dir));
    let rt = build(
        config,
        Kept {
            activity,
            ..Kept::default()
        },
    )?;
    describe(&rt);
    super::tokio()?.block_on(async move {
        let listeners = server::bind(&rt).await?;
        let admin_listener = match admin {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("[admin] listen {addr}"))?;
                info!(protocol = "admin", addr = %l.local_addr().unwrap_or(addr), "listening");
                Some(l)
            }
            None => None,
        };
        // What the status page shows: the addresses bound (a configured port 0 is the
        // kernel's choice), in the config's order.
        let bound: Vec<std::net::SocketAddr> = listeners
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .collect();
        let grace = rt.config.limits.shutdown_grace;
        let current: Current = Arc::new(RwLock::new(Arc::new(rt)));
        let deliverer = start_queue(&current)?;
        recover_sent_copies(&running(&current));
        let activity =
            crate::activity::persist::spawn(running(&current).activity.clone(), &state_dir);
        let shutdown = CancellationToken::new();
        if let Some(l) = admin_listener {
            let admin = crate::admin::serve(l, current.clone(), bound, shutdown.clone());
            tokio::spawn(admin);
        }
        tokio::spawn(signals(
            path.map(Path::to_path_buf),
            current.clone(),
            shutdown.clone(),
        ));
        info!(version = env!("CARGO_PKG_VERSION"), "ready");
        server::serve(current, listeners, shutdown).await;
        // After the sessions ended, so that their ends are in the file.
        activity.finish().await;
        if let Some(d) = deliverer {
            crate::session::queue::stop(d, grace).await;
        }
        info!("stopped");
        Ok(())
    })
}

/// Opens the queue and starts its deliverer when any delivery mode needs it. The
/// deliverer outlives reloads (it reads the running runtime at each connection), so a
/// SIGHUP neither loses nor duplicates a queued message.
fn start_queue(current: &Current) -> Result<Option<crate::queue::deliver::Deliverer>> {
    let rt = running(current);
    let source = {
        let current = current.clone();
        Arc::new(move || running(&current))
    };
    let deliverer = crate::session::queue::start(&rt, source)
        .with_context(|| format!("[queue] dir {}", rt.config.queue.dir.display()))?;
    if let Some(d) = &deliverer {
        // Shared with every later runtime through `Kept`: set once, before any session.
        let _ = rt.queue.set(d.intake());
    }
    Ok(deliverer)
}

/// The `save_sent` copies a crash or shutdown left in `state_dir/sent/`: appended now
/// for an account that still saves copies, removed otherwise.
fn recover_sent_copies(rt: &Arc<Runtime>) {
    let target = |id: &str| {
        let acc = rt.config.accounts.iter().find(|a| a.id == id)?;
        rt.sent_target(acc)
    };
    rt.sent.recover(&rt.config.state_dir, target, &rt.metrics);
}

/// The runtime in use now.
fn running(current: &Current) -> Arc<Runtime> {
    match current.read() {
        Ok(rt) => rt.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Logs the descriptor limits found and set at start (`None` prints as "unlimited").
fn log_nofile(l: crate::fdlimit::NofileLimit) {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    let (was, now, hard) = (show(l.was), show(l.now), show(l.hard));
    if l.was == l.now {
        info!(soft = %now, hard = %hard, "open file limit (RLIMIT_NOFILE)");
    } else {
        info!(was = %was, soft = %now, hard = %hard, "raised the open file limit (RLIMIT_NOFILE) to the hard limit");
    }
    if l.now != l.hard {
        warn!(soft = %now, hard = %hard, "could not raise the open file limit to the hard limit");
    }
}

fn describe(rt: &Runtime) {
    for a in &rt.config.accounts {
        let show = |s: &Option<crate::providers::ServerAddr>| {
            s.as_ref().map_or("-".to_string(), ToString::to_string)
        };
        info!(
            account = %a.id,
            email = %a.email,
            provider = a.provider.names[0],
            smtp = %show(&a.smtp),
            imap = %show(&a.imap),
            pop3 = %show(&a.pop3),
            code_from = %a.code_source,
            save_sent = if a.save_sent == crate::config::SaveSent::On { "on" } else { "off" },
            "account"
        );
    }
    if let Some(fp) = &rt.fingerprint {
        info!(
            cert = %rt.config.tls.cert_file.display(),
            sha256 = %fp,
            generated = rt.cert_generated,
            "local STARTTLS certificate"
        );
        if let Some(hint) = crate::tls::local::legacy_hint(&rt.config.tls) {
            info!("{hint}");
        }
    }
    info!(users = rt.auth.user_count(), "local users loaded");
}

/// Installs the signal handlers at once — before `ready` is logged: a SIGTERM that arrives
/// right after `ready` (a supervisor, a test) must reach them, not the default action,
/// which kills the process without the graceful shutdown — and returns the task that
/// waits for them.
#[cfg(unix)]
fn signals(
    path: Option<PathBuf>,
    current: Current,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let installed = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = installed else {
            error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => reload(path.as_deref(), &current),
            }
        }
        shutdown.cancel();
    }
}

#[cfg(not(unix))]
fn signals(
    _path: Option<PathBuf>,
    _current: Current,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    }
}

/// Re-reads the configuration; on any error the running one stays. The new runtime takes
/// over the running one's counters and failed-login table, so a reload forgives no failure
/// and ends no lockout; users, hashes and the success cache are the new config's alone.
fn reload(path: Option<&Path>, current: &Current) {
    let old = running(current);
    let result = Config::load(path, &ProcessEnv)
        .map_err(anyhow::Error::from)
        .and_then(|c| build(c, old.kept()));
    match result {
        Ok(new) => {
            if listens(&old.config) != listens(&new.config) {
                warn!("listen addresses changed: they take effect only after a restart");
            }
            let (was, now) = (&old.config.limits, &new.config.limits);
            if (was.max_sessions, was.max_sessions_per_ip)
                != (now.max_sessions, now.max_sessions_per_ip)
            {
                info!(
                    max_sessions = now.max_sessions,
                    max_sessions_per_ip = now.max_sessions_per_ip,
                    "session limits changed: new connections get them, sessions in progress keep running"
                );
            }
            let queue_of = |c: &Config| c.uses_queue().then(|| c.queue.clone());
            if queue_of(&old.config) != queue_of(&new.config) {
                warn!("delivery modes or [queue] settings changed: the queue's deliverer keeps the start-up ones until a restart");
            }
            for w in &new.config.warnings {
                warn!("{w}");
            }
            if let Ok(mut slot) = current.write() {
                *slot = Arc::new(new);
            }
            info!("configuration reloaded; sessions in progress keep the old one");
        }
        Err(e) => {
            error!(error = %format!("{e:#}"), "reload failed; keeping the running configuration")
        }
    }
}

/// Every listen address, the admin endpoint's included: sockets are bound once at start.
type Listens = (
    Option<Vec<ListenAddr>>,
    Option<Vec<ListenAddr>>,
    Option<Vec<ListenAddr>>,
    Option<SocketAddr>,
);

fn listens(c: &Config) -> Listens {
    (
        c.smtp.as_ref().map(|s| s.listener.listen.clone()),
        c.imap.as_ref().map(|l| l.listen.clone()),
        c.pop3.as_ref().map(|l| l.listen.clone()),
        c.admin,
    )
}
