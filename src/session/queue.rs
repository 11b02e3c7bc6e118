//! The session layer's side of the queue (issue 12): the production
//! [`Connector`](crate::queue::deliver::Connector), which logs in through the relay's own
//! path, and [`start`], which opens the store and runs the [`Deliverer`] for `serve`.
//! It lives here, not in `queue`, so that arrows point down: sessions use the queue, the
//! queue knows nothing of sessions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use crate::net::LineStream;
use crate::proto::Protocol;
use crate::queue::deliver::{AccountRef, Connector, Deliverer, Settings, SystemClock, Timeouts};
use crate::queue::store::{Store, StoreError};
use crate::runtime::Runtime;
use crate::session::{upstream_login, Purpose, Upstream};
use crate::upstream::{UpstreamError, UpstreamStream};

/// Gives the running runtime: after a SIGHUP reload, the new one.
pub type RuntimeSource = Arc<dyn Fn() -> Arc<Runtime> + Send + Sync>;

/// Logs in through [`crate::session::upstream_login`] (the account's TLS settings,
/// `hostname` in EHLO, the stored code injected), so a queued message leaves exactly as a
/// relayed one would. No warm spare is used: a spare is for interactive clients.
pub struct UpstreamConnector {
    runtime: RuntimeSource,
}

impl UpstreamConnector {
    /// Over the running runtime, looked up at every connection: a reload's new code,
    /// server or CA applies to the next delivery without a restart.
    pub fn new(runtime: RuntimeSource) -> UpstreamConnector {
        UpstreamConnector { runtime }
    }
}

impl Connector for UpstreamConnector {
    type Stream = UpstreamStream;

    async fn connect(&self, account: &str) -> Result<LineStream<UpstreamStream>, UpstreamError> {
        let rt = (self.runtime)();
        let not_configured = || UpstreamError::NotConfigured(Protocol::Smtp.name());
        let acc = rt
            .config
            .accounts
            .iter()
            .find(|a| a.id == account)
            .ok_or_else(not_configured)?;
        match upstream_login(&rt, Protocol::Smtp, acc, Purpose::Plain).await? {
            Upstream::Smtp(up) => Ok(up.conn),
            _ => Err(not_configured()),
        }
    }

    async fn accepted(&self, account: &str, body: &Path) {
        self.save_sent(account, body).await;
    }
}

impl UpstreamConnector {
    /// `accepted`'s work: the Sent copy of a delivered queued message (`save_sent`).
    async fn save_sent(&self, account: &str, body: &Path) {
        let rt = (self.runtime)();
        let Some(acc) = rt.config.accounts.iter().find(|a| a.id == account) else {
            return;
        };
        let Some(target) = rt.sent_target(acc) else {
            return;
        };
        let Some(slot) = rt.sent.reserve() else {
            warn!(%account, "too many Sent copies waiting; this message gets none");
            rt.metrics.sent_copy(false);
            return;
        };
        match crate::sent::copy_of(&rt.config.state_dir, account, body).await {
            Ok(written) => rt.sent.submit(slot, written, target, rt.metrics.clone()),
            Err(e) => {
                warn!(%account, error = %e, "cannot write the Sent copy; this message gets none");
                rt.metrics.sent_copy(false);
            }
        }
    }
}

/// The deliverer's settings from `[queue]`, `[limits]` and `hostname`.
pub fn settings(config: &Config) -> Settings {
    let q = &config.queue;
    let mut s = Settings::new(q.policy, q.rate, q.daily_limit, &config.hostname);
    s.timeouts = Timeouts {
        reply: config.limits.upstream_timeout,
        data: config.limits.upstream_data_timeout,
    };
    s
}

/// For `serve`, when any user (or the allow-listed path) delivers through the queue:
/// opens the store (creating `[queue] dir` with mode 0700; damaged files are moved to
/// `corrupt/` and logged by the store) and starts one delivery worker per account with
/// an SMTP upstream. `None` when nothing uses the queue.
///
/// The deliverer keeps the settings of `rt` (the start-up configuration): a change of
/// `[queue]`, `hostname`, the upstream timeouts or the list of accounts needs a restart;
/// codes, servers and CAs are read from the running runtime at each connection.
pub fn start(rt: &Runtime, runtime: RuntimeSource) -> Result<Option<Deliverer>, StoreError> {
    let config = &rt.config;
    if !config.uses_queue() {
        return Ok(None);
    }
    let q = &config.queue;
    let (store, recovery) = Store::open(&q.dir, Some(q.max_size))?;
    info!(
        dir = %q.dir.display(),
        messages = recovery.messages.len(),
        bytes = store.used_bytes(),
        orphans_removed = recovery.orphans_removed,
        quarantined = recovery.quarantined,
        "queue opened"
    );
    if recovery.quarantined > 0 {
        warn!(
            quarantined = recovery.quarantined,
            corrupt = %q.dir.join("corrupt").display(),
            "queue: damaged messages were moved aside (never deleted); inspect them there"
        );
    }
    let accounts: Vec<AccountRef> = config
        .accounts
        .iter()
        .filter(|a| a.smtp.is_some())
        .map(|a| AccountRef {
            id: a.id.clone(),
            email: a.email.clone(),
        })
        .collect();
    let connector = Arc::new(UpstreamConnector::new(runtime));
    Ok(Some(Deliverer::start(
        store,
        &accounts,
        connector,
        settings(config),
        Arc::new(SystemClock),
    )))
}

/// Stops the deliverer within `grace` (deliveries in flight may finish; the rest stays
/// queued), logging how it went.
pub async fn stop(deliverer: Deliverer, grace: Duration) {
    info!("queue: stopping deliveries");
    deliverer.shutdown(grace).await;
    info!("queue: deliveries stopped; undelivered messages stay queued");
}
