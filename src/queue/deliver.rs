//! The deliverer (issue 12, step 2): one task per account takes that account's due
//! messages from the [`super::store`], logs in upstream once per batch, sends each
//! message ([`conversation`]), settles the result through the one table ([`settle`],
//! [`super::classify`], [`super::schedule`]), and writes the new state durably before
//! anything else may send the message again; a state the disk refuses (full, read-only)
//! is kept in memory and overrides the stale file until it is written (`unrecorded`).
//! Bounces go back into the queue ([`super::dsn`]).
//!
//! The server builds the [`Deliverer`] with the session layer's connector
//! (`crate::session::queue`, so this module never depends on sessions), pokes
//! [`Deliverer::wake`] after each commit, reads [`AccountStatus`] for `/healthz` and the
//! metrics, and calls [`Deliverer::shutdown`] on SIGTERM.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::schedule::{Policy, Rate, QUOTA_UTC_OFFSET};
use super::store::{Request, Store, StoreError};
use crate::net::LineStream;
use crate::upstream::UpstreamError;

pub mod conversation;
pub mod settle;
mod unrecorded;
mod worker;

pub use conversation::Timeouts;

/// Opens a logged-in upstream SMTP connection for an account, ready for `MAIL FROM`.
/// Production: `crate::session::queue::UpstreamConnector`; tests: a scripted server over `tokio::io::duplex`.
pub trait Connector: Send + Sync + 'static {
    /// The connection's stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Connects and logs in as `account` (a configured account id).
    fn connect(
        &self,
        account: &str,
    ) -> impl Future<Output = Result<LineStream<Self::Stream>, UpstreamError>> + Send;

    /// The upstream accepted a message of `account` for the first time; `body` is its
    /// stored body (dot-stuffed, without the final dot), there until this returns. The
    /// session layer files the `save_sent` copy; a failure there is its own to log, and
    /// never changes the delivery.
    fn accepted(&self, account: &str, body: &Path) -> impl Future<Output = ()> + Send {
        let _ = (account, body);
        async {}
    }
}

/// Wall-clock time for the queue's timestamps. Injected so that tests with
/// `tokio::time::pause()` see the same time as their timers.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that follows tokio's (possibly paused) time from a fixed start: for tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `base` now, and tokio's time from here on.
    pub fn starting_at(base: SystemTime) -> TokioClock {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}

/// The deliverer's settings (from `[queue]` and `[limits]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `retry_min`, `retry_max`, `max_age`.
    pub policy: Policy,
    /// `rate`, per account.
    pub rate: Option<Rate>,
    /// `daily_limit`, per account (0: none).
    pub daily_limit: u32,
    /// Where `daily_limit`'s day starts, in seconds east of UTC (default
    /// [`QUOTA_UTC_OFFSET`]: China's midnight, when QQ's quota resets).
    pub utc_offset: i32,
    /// Upstream reply timeouts.
    pub timeouts: Timeouts,
    /// This host's name (`Reporting-MTA` of bounces).
    pub hostname: String,
    /// How often the `ctl/` requests of the `queue` commands are picked up.
    pub scan_every: Duration,
    /// Most messages sent over one connection.
    pub batch_max: usize,
    /// A pacing wait longer than this closes the connection rather than idling on it.
    pub idle_max: Duration,
}

impl Settings {
    /// Defaults around `policy`, `rate` and `daily_limit`.
    pub fn new(policy: Policy, rate: Option<Rate>, daily_limit: u32, hostname: &str) -> Settings {
        Settings {
            policy,
            rate,
            daily_limit,
            utc_offset: QUOTA_UTC_OFFSET,
            timeouts: Timeouts {
                reply: Duration::from_secs(30),
                data: Duration::from_secs(600),
            },
            hostname: hostname.to_string(),
            scan_every: Duration::from_secs(5),
            batch_max: 50,
            idle_max: Duration::from_secs(60),
        }
    }
}

/// One account's delivery state for `/healthz` and the metrics.
#[derive(Debug, Default)]
pub struct AccountStatus {
    failing: Mutex<Option<String>>,
    /// Messages delivered (every pending recipient taken).
    pub delivered: AtomicU64,
    /// Attempts deferred for a retry.
    pub deferred: AtomicU64,
    /// Bounces queued.
    pub bounced: AtomicU64,
    /// Final dots that got no reply: the retry may deliver a second copy.
    pub possibly_duplicated: AtomicU64,
    /// Messages moved to `corrupt/` instead of being sent.
    pub corrupt: AtomicU64,
}

impl AccountStatus {
    /// `Some(hint)` while the account's deliveries are held because the upstream refused
    /// its code twice; the hint says what the owner must do.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().map(|f| f.clone()).unwrap_or(None)
    }

    fn set_failing(&self, hint: Option<String>) {
        if let Ok(mut f) = self.failing.lock() {
            *f = hint;
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A configured account the deliverer serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    /// Its id (what envelopes name).
    pub id: String,
    /// Its address (where its bounces go, and their sender).
    pub email: String,
}

struct Handle {
    wake: Arc<Notify>,
    requests: mpsc::UnboundedSender<Request>,
    status: Arc<AccountStatus>,
}

/// The running deliverer: one worker task per account plus the `ctl/` scan.
pub struct Deliverer {
    store: Store,
    workers: Arc<HashMap<String, Handle>>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

impl Deliverer {
    /// Starts a worker for each account, and the periodic scan of `ctl/`. The requests
    /// left there while no server ran are applied first, before any worker starts: a
    /// message deleted while the proxy was stopped can never be sent. (Blocking file
    /// I/O, once, at start, as [`Store::open`].)
    pub fn start<C: Connector>(
        store: Store,
        accounts: &[AccountRef],
        connector: Arc<C>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Deliverer {
        apply_left_requests(&store, clock.now());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut workers = HashMap::new();
        for account in accounts {
            let (tx, rx) = mpsc::unbounded_channel();
            let handle = Handle {
                wake: Arc::new(Notify::new()),
                requests: tx,
                status: Arc::new(AccountStatus::default()),
            };
            let w = worker::Worker::new(worker::Parts {
                store: store.clone(),
                account: account.clone(),
                connector: connector.clone(),
                settings: settings.clone(),
                clock: clock.clone(),
                status: handle.status.clone(),
                wake: handle.wake.clone(),
                requests: rx,
                cancel: cancel.child_token(),
            });
            tasks.spawn(w.run());
            workers.insert(account.id.clone(), handle);
        }
        let workers = Arc::new(workers);
        tasks.spawn(scan_requests(
            store.clone(),
            workers.clone(),
            settings.scan_every,
            clock,
            cancel.child_token(),
        ));
        Deliverer {
            store,
            workers,
            tasks,
            cancel,
        }
    }

    /// A message of `account` was committed: deliver it without waiting for a timer.
    pub fn wake(&self, account: &str) {
        if let Some(h) = self.workers.get(account) {
            h.wake.notify_one();
        }
    }

    /// The delivery status of `account`.
    pub fn status(&self, account: &str) -> Option<Arc<AccountStatus>> {
        self.workers.get(account).map(|h| h.status.clone())
    }

    /// The store and a waker, for sessions.
    pub fn intake(&self) -> Intake {
        Intake {
            store: self.store.clone(),
            waker: self.waker(),
        }
    }

    /// A cloneable handle for sessions: wake a worker, read a status.
    pub fn waker(&self) -> Waker {
        Waker {
            workers: self.workers.clone(),
        }
    }

    /// Stops: deliveries in flight may finish within `grace`; the rest stays queued
    /// (and a delivery cut off is retried at the next start).
    pub async fn shutdown(mut self, grace: Duration) {
        self.cancel.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!("queue: deliveries still running at the end of the grace period were cut off; they stay queued");
            self.tasks.abort_all();
        }
    }
}

/// What sessions need of the running deliverer, without owning it.
#[derive(Clone)]
pub struct Waker {
    workers: Arc<HashMap<String, Handle>>,
}

impl Waker {
    /// A message of `account` was committed: deliver it without waiting for a timer.
    pub fn wake(&self, account: &str) {
        if let Some(h) = self.workers.get(account) {
            h.wake.notify_one();
        }
    }

    /// The delivery status of `account`.
    pub fn status(&self, account: &str) -> Option<Arc<AccountStatus>> {
        self.workers.get(account).map(|h| h.status.clone())
    }

    /// Every served account's status, sorted by account id.
    pub fn statuses(&self) -> Vec<(String, Arc<AccountStatus>)> {
        let mut all: Vec<_> = self
            .workers
            .iter()
            .map(|(id, h)| (id.clone(), h.status.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Where sessions put messages: the store, and the deliverer to wake after a commit.
#[derive(Clone)]
pub struct Intake {
    /// The open queue.
    pub store: Store,
    /// The running deliverer.
    pub waker: Waker,
}

/// Applies the `queue` commands' requests made while no server ran.
fn apply_left_requests(store: &Store, now: SystemTime) {
    let taken = match store.take_requests() {
        Ok(taken) => taken,
        Err(e) => {
            warn!(error = %e, "queue: could not read the operator's requests");
            return;
        }
    };
    for req in taken {
        match store.apply(&req, now) {
            Ok(()) => {
                info!(request = ?req, "queue: applied an operator's request made while the proxy was stopped")
            }
            Err(e) => warn!(error = %e, "queue: could not apply an operator's request"),
        }
    }
}

/// Every `every`, takes the requests of the `queue` commands and hands each to the worker
/// of the message's account, which applies it between deliveries (so a delete never
/// races a delivery's state write). A message of no served account is changed here.
async fn scan_requests(
    store: Store,
    workers: Arc<HashMap<String, Handle>>,
    every: Duration,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    loop {
        match blocking(&store, |s| s.take_requests()).await {
            Ok(taken) => {
                for req in taken {
                    route(&store, &workers, req, clock.now()).await;
                }
            }
            Err(e) => warn!(error = %e, "queue: could not read the operator's requests"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn route(store: &Store, workers: &HashMap<String, Handle>, req: Request, now: SystemTime) {
    let id = match &req {
        Request::RetryAll => {
            for h in workers.values() {
                let _ = h.requests.send(Request::RetryAll);
                h.wake.notify_one();
            }
            return;
        }
        Request::Retry(id) | Request::Delete(id) => id.clone(),
    };
    let account = blocking(store, move |s| s.get(&id).map(|e| e.account)).await;
    match account.ok().and_then(|a| workers.get(&a)) {
        Some(h) => {
            let _ = h.requests.send(req);
            h.wake.notify_one();
        }
        None => {
            if let Err(e) = blocking(store, move |s| s.apply(&req, now)).await {
                warn!(error = %e, "queue: could not apply an operator's request");
            }
        }
    }
}

/// Runs a store call (they fsync) off the async threads.
async fn blocking<T, F>(store: &Store, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    let s = store.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::io(
            "run",
            store.dir(),
            std::io::Error::other(e.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests;
