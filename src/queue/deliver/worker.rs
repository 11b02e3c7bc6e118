//! One account's delivery loop: pick the due messages, respect `rate` and `daily_limit`,
//! log in once per batch, send, settle, and sleep until the next due time, a wake-up
//! after a commit, an operator's request, or the stop. A second `535` to the stored code
//! holds the account (marked failing) until a later login works.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::conversation::{self, Ending};
use super::settle::settle;
use super::unrecorded::Unrecorded;
use super::{blocking, AccountRef, AccountStatus, Clock, Connector, Settings};
use crate::net::LineStream;
use crate::queue::classify::{classify, Class, Outcome};
use crate::queue::dsn::{self, Bounce, Reason};
use crate::queue::schedule::{DailyCap, Pacer, Plan};
use crate::queue::store::{
    DailyCount, Envelope, LastError, NewMessage, RcptState, Removed, Request, Store,
};
use crate::upstream::UpstreamError;

/// Most of a body read for the bounce's copy of the original headers.
const HEADER_READ: usize = 64 * 1024;

/// What a worker is built from.
pub(super) struct Parts<C> {
    pub store: Store,
    pub account: AccountRef,
    pub connector: Arc<C>,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub status: Arc<AccountStatus>,
    pub wake: Arc<Notify>,
    pub requests: mpsc::UnboundedReceiver<Request>,
    pub cancel: CancellationToken,
}

/// Where the account stands with the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Deliver what is due.
    Open,
    /// A session-level failure or a rate limit: nothing is tried before then.
    PausedUntil(SystemTime),
    /// The code was refused twice: only a probe login at this time.
    Held(SystemTime),
}

pub(super) struct Worker<C> {
    p: Parts<C>,
    pacer: Pacer,
    cap: DailyCap,
    standing: Standing,
    /// Consecutive failed logins (the account's back-off).
    login_failures: u32,
    /// Consecutive `535`s.
    code_refusals: u32,
    /// States the store could not write; they override the stale files.
    unrecorded: Unrecorded,
    /// Finished messages whose envelope is unlinked, waiting for the one directory
    /// fsync that ends the batch ([`Worker::finish_removals`]).
    removed: Vec<Removed>,
}

impl<C: Connector> Worker<C> {
    pub(super) fn new(p: Parts<C>) -> Worker<C> {
        Worker {
            pacer: Pacer::new(p.settings.rate),
            cap: DailyCap::new(p.settings.daily_limit),
            standing: Standing::Open,
            login_failures: 0,
            code_refusals: 0,
            unrecorded: Unrecorded::default(),
            removed: Vec::new(),
            p,
        }
    }

    pub(super) async fn run(mut self) {
        self.restore_cap().await;
        // The account's messages as last read that no batch has taken yet: a backlog is
        // worked through batch after batch from one reading of the directory, which is
        // read again only once they are used up (or an operator's request may have
        // changed them). Reading it before every batch made a backlog of n messages cost
        // n²/batch_max envelope reads. Nothing but this worker changes an envelope's
        // state; new messages are seen at the next reading.
        let mut unread: Vec<Envelope> = Vec::new();
        while !self.p.cancel.is_cancelled() {
            if self.take_requests().await {
                unread.clear();
            }
            let mut msgs = if unread.is_empty() {
                match self.load().await {
                    Some(m) => m,
                    None => {
                        self.sleep(self.p.settings.policy.retry_min).await;
                        continue;
                    }
                }
            } else {
                std::mem::take(&mut unread)
            };
            let now = self.p.clock.now();
            msgs = self.expire(msgs, now).await;
            self.finish_removals().await;
            let take = match self.standing {
                Standing::PausedUntil(t) | Standing::Held(t) if now < t => 0,
                Standing::Held(_) => 1,
                _ => self.p.settings.batch_max,
            };
            let (due, rest): (Vec<Envelope>, Vec<Envelope>) = {
                let mut n = 0;
                msgs.into_iter().partition(|e| {
                    let pick = n < take && e.next_attempt <= now;
                    n += usize::from(pick);
                    pick
                })
            };
            if due.is_empty() {
                let wait = self.next_wake(&rest, now);
                self.sleep(wait).await;
            } else {
                unread = rest;
                self.batch(due).await;
                self.finish_removals().await;
            }
        }
        self.finish_removals().await;
    }

    /// One fsync of `msg/` for the messages finished since the last one, then their
    /// bodies go (see [`Store::finish_removals`]).
    async fn finish_removals(&mut self) {
        let removed = std::mem::take(&mut self.removed);
        if removed.is_empty() {
            return;
        }
        if let Err(e) = blocking(&self.p.store, move |s| s.finish_removals(removed)).await {
            warn!(account = %self.p.account.id, error = %e, "queue: could not make removals durable; the next start finishes them");
        }
    }

    /// How long nothing is due (at most a day: the day's cap and clock changes).
    fn next_wake(&self, msgs: &[Envelope], now: SystemTime) -> Duration {
        let until = |t: SystemTime| t.duration_since(now).unwrap_or(Duration::ZERO);
        let first = msgs.iter().map(|e| e.next_attempt).min();
        let wait = match (self.standing, first) {
            (Standing::PausedUntil(t) | Standing::Held(t), _) if now < t => until(t),
            (_, Some(t)) => until(t),
            (_, None) => Duration::from_secs(86400),
        };
        // A message past its deadline is bounced even while the account waits.
        let deadline = msgs
            .iter()
            .map(|e| until(self.p.settings.policy.deadline(e.queued_at)))
            .min();
        wait.min(deadline.unwrap_or(wait))
            .min(Duration::from_secs(86400))
    }

    /// Sleeps `d` unless woken (a commit, a request) or stopped.
    async fn sleep(&mut self, d: Duration) {
        tokio::select! {
            _ = self.p.cancel.cancelled() => {}
            _ = self.p.wake.notified() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }

    /// This account's messages, sorted by next attempt: the files, overridden by the
    /// states that could not be written (tried again first).
    async fn load(&mut self) -> Option<Vec<Envelope>> {
        self.unrecorded.flush(&self.p.store).await;
        let id = self.p.account.id.clone();
        match blocking(&self.p.store, |s| s.list()).await {
            Ok(all) => {
                let mine = all.into_iter().filter(|e| e.account == id).collect();
                Some(self.unrecorded.overlay(mine))
            }
            Err(e) => {
                warn!(account = %id, error = %e, "queue: cannot read the queue");
                None
            }
        }
    }

    /// Applies the operator's requests between deliveries; a retry also lifts a pause,
    /// and makes a held account's probe login now (the hint tells the owner to renew
    /// the code, then `queue retry --all`): only a login that works lifts a hold. True
    /// when there was one: the envelopes read before are then stale.
    async fn take_requests(&mut self) -> bool {
        let mut any = false;
        while let Ok(req) = self.p.requests.try_recv() {
            any = true;
            if matches!(req, Request::Retry(_) | Request::RetryAll) {
                self.standing = match self.standing {
                    Standing::PausedUntil(_) => Standing::Open,
                    Standing::Held(_) => Standing::Held(self.p.clock.now()),
                    Standing::Open => Standing::Open,
                };
            }
            let now = self.p.clock.now();
            self.unrecorded.apply(&req, now);
            if let Err(e) = blocking(&self.p.store, move |s| s.apply(&req, now)).await {
                warn!(account = %self.p.account.id, error = %e, "queue: could not apply an operator's request");
            }
        }
        any
    }

    /// Bounces and removes the messages past `max_age`; returns the others.
    async fn expire(&mut self, msgs: Vec<Envelope>, now: SystemTime) -> Vec<Envelope> {
        let mut keep = Vec::with_capacity(msgs.len());
        for env in msgs {
            if self.p.settings.policy.expired(env.queued_at, now) {
                info!(id = %env.id, account = %env.account, "queue: message expired (max_age); bouncing");
                self.finish(env, Reason::Expired).await;
            } else {
                keep.push(env);
            }
        }
        keep
    }

    /// One connection, several messages.
    async fn batch(&mut self, due: Vec<Envelope>) {
        if !self.gate().await {
            return;
        }
        let mut conn = match self.p.connector.connect(&self.p.account.id).await {
            Ok(c) => c,
            Err(e) => return self.login_failed(&e, &due).await,
        };
        self.login_worked();
        for (i, env) in due.into_iter().enumerate() {
            if self.p.cancel.is_cancelled() || (i > 0 && !self.gate_in_session().await) {
                break;
            }
            if !self.deliver_one(&mut conn, env).await || self.standing != Standing::Open {
                break;
            }
        }
        conversation::quit(&mut conn, self.p.settings.timeouts).await;
    }

    /// Reads the day's count back from the queue directory (with `daily_limit` only).
    /// A file that cannot be read counts the day as used up: over-sending can get the
    /// account blocked by the provider, while waiting only delays mail to the next day.
    async fn restore_cap(&mut self) {
        if self.p.settings.daily_limit == 0 {
            return;
        }
        let id = self.p.account.id.clone();
        match blocking(&self.p.store, move |s| s.daily_count(&id)).await {
            Ok(Some(c)) => self.cap.restore(c.day, c.used),
            Ok(None) => {}
            Err(e) => {
                warn!(account = %self.p.account.id, error = %e, file = %self.p.store.daily_path(&self.p.account.id).display(),
                    "queue: the daily_limit count cannot be read; today counts as used up (mail waits for the next day); remove the file to start from 0");
                self.cap
                    .exhaust(self.p.clock.now(), self.p.settings.utc_offset);
            }
        }
    }

    /// Writes the day's count (with `daily_limit` only); a failure is logged, and the
    /// count in memory still holds until a restart.
    async fn save_cap(&self) {
        if self.p.settings.daily_limit == 0 {
            return;
        }
        let (day, used) = self.cap.state();
        let id = self.p.account.id.clone();
        let count = DailyCount { day, used };
        if let Err(e) = blocking(&self.p.store, move |s| s.save_daily_count(&id, count)).await {
            warn!(account = %self.p.account.id, error = %e, "queue: could not store the daily_limit count; a restart today may send past the limit");
        }
    }

    /// Before connecting: the daily cap (else pause until tomorrow) and the pacer.
    async fn gate(&mut self) -> bool {
        let now = self.p.clock.now();
        if let Err(next_day) = self.cap.check(now, self.p.settings.utc_offset) {
            info!(account = %self.p.account.id, "queue: daily_limit reached; the rest waits for the next day");
            self.standing = Standing::PausedUntil(next_day);
            return false;
        }
        let wait = self.pacer.wait(tokio::time::Instant::now().into_std());
        if !wait.is_zero() {
            tokio::select! {
                _ = self.p.cancel.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        true
    }

    /// Between messages of a batch: as [`Worker::gate`], but a long pacing wait ends the
    /// batch rather than idling on the upstream's connection.
    async fn gate_in_session(&mut self) -> bool {
        let wait = self.pacer.wait(tokio::time::Instant::now().into_std());
        wait <= self.p.settings.idle_max && self.gate().await
    }

    fn login_worked(&mut self) {
        if let Standing::Held(_) = self.standing {
            info!(account = %self.p.account.id, "queue: the upstream accepts the account's code again; deliveries resume");
        }
        self.standing = Standing::Open;
        self.login_failures = 0;
        self.code_refusals = 0;
        self.p.status.set_failing(None);
    }

    /// A failed login concerns the whole account: it pauses (or, after a second `535`,
    /// is held), and each due message records the error for `queue list`.
    async fn login_failed(&mut self, e: &UpstreamError, due: &[Envelope]) {
        let d = classify(&Outcome::from_login_error(e));
        let now = self.p.clock.now();
        self.login_failures = self.login_failures.saturating_add(1);
        if d.class == Class::CodeRefused {
            self.code_refusals = self.code_refusals.saturating_add(1);
        }
        let policy = &self.p.settings.policy;
        let plan = policy.after(
            d.class,
            self.login_failures,
            self.code_refusals,
            now,
            now,
            rand::random(),
        );
        let hint = e.hint().unwrap_or("");
        let until = match plan {
            Plan::HoldAccount => {
                let until = now + policy.retry_max;
                warn!(account = %self.p.account.id, error = %e, hint, "queue: the upstream refused the account's code twice; its deliveries are held until a login works");
                self.p.status.set_failing(Some(hint.to_string()));
                self.standing = Standing::Held(until);
                until
            }
            Plan::RetryAt(t) => {
                warn!(account = %self.p.account.id, error = %e, hint, class = d.class.as_str(), "queue: upstream login failed; deliveries deferred");
                self.standing = Standing::PausedUntil(t);
                t
            }
            Plan::Done | Plan::Bounce => return,
        };
        for env in due {
            let mut env = env.clone();
            env.attempts = env.attempts.saturating_add(1);
            env.next_attempt = env.next_attempt.max(until);
            env.last_error = Some(LastError {
                class: d.class,
                text: e.to_string().into_bytes(),
            });
            AccountStatus::count(&self.p.status.deferred);
            self.unrecorded.record(&self.p.store, env).await;
        }
    }

    /// Sends one message and writes its new state; false when the connection is done.
    async fn deliver_one<S>(&mut self, conn: &mut LineStream<S>, env: Envelope) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let path = self.p.store.body_path(&env.id);
        let mut body = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                self.quarantine(&env, &format!("body unreadable: {e}"))
                    .await;
                return true;
            }
        };
        let t = self.p.settings.timeouts;
        let first = !env
            .recipients
            .iter()
            .any(|r| r.state == RcptState::Delivered);
        let a = conversation::send(conn, &env, &mut body, t).await;
        self.pacer.sent(tokio::time::Instant::now().into_std());
        if a.ending == Ending::Delivered && first {
            // One Sent copy per message, not one per partial delivery.
            self.p.connector.accepted(&self.p.account.id, &path).await;
        }
        if let Ending::Corrupt(why) = &a.ending {
            self.quarantine(&env, why).await;
            return a.reusable;
        }
        let now = self.p.clock.now();
        let mut env = env;
        let s = settle(&mut env, &a, &self.p.settings.policy, now, rand::random());
        let (id, account) = (env.id.clone(), self.p.account.id.clone());
        if s.possibly_duplicated {
            warn!(%id, %account, "queue: no reply after the final dot; the retry is possibly duplicated");
            AccountStatus::count(&self.p.status.possibly_duplicated);
        }
        if s.delivered > 0 {
            self.cap.record(now, self.p.settings.utc_offset);
            self.save_cap().await;
        }
        match s.plan {
            Plan::Done => self.finish(env, Reason::Refused).await,
            Plan::Bounce | Plan::HoldAccount => self.finish(env, Reason::Expired).await,
            Plan::RetryAt(at) => {
                info!(%id, %account, class = s.class.as_str(), "queue: delivery deferred");
                AccountStatus::count(&self.p.status.deferred);
                if s.account_wide {
                    self.standing = Standing::PausedUntil(at);
                }
                self.unrecorded.record(&self.p.store, env).await;
            }
        }
        a.reusable
    }

    /// A message leaves the queue: its bounce (if one is owed) is queued first, durably,
    /// then the message is removed (envelope first). If the bounce cannot be queued the
    /// message stays, to be tried again later.
    async fn finish(&mut self, env: Envelope, reason: Reason) {
        let failed = env
            .recipients
            .iter()
            .any(|r| matches!(r.state, RcptState::Failed { .. }) || r.state == RcptState::Pending);
        if failed && !env.null_sender {
            if let Err(e) = self.queue_bounce(&env, reason).await {
                warn!(id = %env.id, error = %e, "queue: could not queue a bounce; the message stays queued");
                let mut env = env;
                env.next_attempt = self.p.clock.now() + self.p.settings.policy.retry_min;
                self.unrecorded.record(&self.p.store, env).await;
                return;
            }
            AccountStatus::count(&self.p.status.bounced);
        } else if !failed {
            info!(id = %env.id, account = %env.account, "queue: delivered");
            AccountStatus::count(&self.p.status.delivered);
        }
        let id = env.id.clone();
        match blocking(&self.p.store, move |s| s.unlink_envelope(&id)).await {
            Ok(r) => {
                self.unrecorded.forget(&env.id);
                self.removed.push(r);
            }
            Err(e) => {
                warn!(id = %env.id, error = %e, "queue: could not remove a finished message");
                // Its finished state outlives the stale file: it is never sent again,
                // and the removal is tried again when it comes up.
                self.unrecorded.keep(env);
            }
        }
    }

    /// Queues the RFC 3464 notification to the account's own address. It is sent from
    /// the account (QQ refuses any other `MAIL FROM`, `<>` included) and flagged
    /// `null_sender`, so a bounce that fails is dropped, never bounced: no loop.
    async fn queue_bounce(
        &self,
        env: &Envelope,
        reason: Reason,
    ) -> Result<(), crate::queue::store::StoreError> {
        let mut head = Vec::new();
        if let Ok(f) = tokio::fs::File::open(self.p.store.body_path(&env.id)).await {
            let _ = f.take(HEADER_READ as u64).read_to_end(&mut head).await;
        }
        let head = dsn::header_block(&head);
        let now = self.p.clock.now();
        let email = &self.p.account.email;
        let host = &self.p.settings.hostname;
        let Some(b) = Bounce::for_envelope(env, reason, email, host, &head, now, rand::random())
        else {
            return Ok(());
        };
        let text = dsn::dot_stuff(&b.render());
        let msg = NewMessage {
            account: self.p.account.id.clone(),
            sender: email.clone(),
            null_sender: true,
            recipients: vec![email.clone()],
        };
        let id = env.id.clone();
        let bounce = blocking(&self.p.store, move |s| {
            let mut w = s.begin(msg, now, Some(text.len() as u64))?;
            w.write(&text)?;
            w.commit()
        })
        .await?;
        info!(id = %id, bounce = %bounce.id, "queue: bounce queued for the account");
        // The bounce is this worker's own next message: do not sleep past it.
        self.p.wake.notify_one();
        Ok(())
    }

    async fn quarantine(&self, env: &Envelope, why: &str) {
        AccountStatus::count(&self.p.status.corrupt);
        let (id, why) = (env.id.clone(), why.to_string());
        if let Err(e) = blocking(&self.p.store, move |s| s.quarantine(&id, &why)).await {
            warn!(id = %env.id, error = %e, "queue: could not move a damaged message aside");
        }
    }
}
