//! A warm spare per account and protocol: when logins come in bursts (a mail client
//! opening several IMAP connections, a scanner sending a batch), the next upstream
//! connection is opened, TLS-verified and greeted ahead of time, so a client's login
//! waits only for the upstream's LOGIN round trip. A spare is kept for `max_age` at most
//! and is made only after a login that follows another within `max_age`: a proxy used
//! now and then opens no extra connections (QQ rate-limits connection frequency).
//!
//! The refill is background work for the *next* login, so it must not slow down the one
//! that triggered it: it waits until that session has ended, or has been logged in for
//! [`SETTLE`], whichever comes first ([`Refill`]). Measured on a 2-core loopback set-up
//! (bench/), a refill's TLS handshake running beside the session it followed cost that
//! session 0.3 ms of its 1.2 ms; deferred, the proxied login took 0.7× a direct TLS login.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{connect, Ctx, Dialect, UpstreamError, UpstreamStream};
use crate::net::LineStream;
use crate::proto::Protocol;
use crate::providers::ServerAddr;

/// Which spare: account id and protocol.
pub type Key = (String, Protocol);

/// How long a refill waits for the session it follows before starting anyway: long
/// enough for a login reply and a client's first commands, short against the tens of
/// milliseconds a provider's TCP and TLS handshakes take.
pub const SETTLE: Duration = Duration::from_millis(20);

/// The pending refill of a warm spare, held by the session whose login triggered it.
/// Dropping it (the session ended) starts the refill at once; [`Refill::cancel`] gives it
/// up; otherwise it starts after [`SETTLE`].
#[derive(Debug, Default)]
pub struct Refill(Option<oneshot::Sender<bool>>);

impl Refill {
    /// No refill pending.
    pub fn none() -> Refill {
        Refill(None)
    }

    /// Gives up the refill (the login failed: a spare would be wasted).
    pub fn cancel(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(false);
        }
    }
}

#[derive(Default)]
struct Slot {
    spare: Option<(LineStream<UpstreamStream>, Instant)>,
    filling: bool,
    last_login: Option<Instant>,
    generation: u64,
}

/// The spares, shared by all sessions.
pub struct Pool {
    slots: Mutex<HashMap<Key, Slot>>,
    max_age: Duration,
}

impl Pool {
    /// A pool whose spares live at most `max_age`; zero disables it.
    pub fn new(max_age: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            slots: Mutex::new(HashMap::new()),
            max_age,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a fresh spare if there is one, and says whether a new spare should be made
    /// (a second login within `max_age`).
    fn take(&self, key: &Key) -> (Option<LineStream<UpstreamStream>>, bool) {
        if self.max_age.is_zero() {
            return (None, false);
        }
        let now = Instant::now();
        let mut slots = self.lock();
        let slot = slots.entry(key.clone()).or_default();
        let spare = slot
            .spare
            .take()
            .filter(|(_, since)| now.duration_since(*since) < self.max_age)
            .map(|(conn, _)| conn);
        let burst = slot
            .last_login
            .is_some_and(|t| now.duration_since(t) < self.max_age);
        slot.last_login = Some(now);
        let refill = burst && !slot.filling;
        if refill {
            slot.filling = true;
        }
        (spare, refill)
    }

    /// Starts a refill that waits for the returned [`Refill`] (or [`SETTLE`]).
    fn spawn_refill<D: Dialect + 'static>(
        self: &Arc<Self>,
        key: Key,
        server: ServerAddr,
        tls: Arc<rustls::ClientConfig>,
        ctx: Ctx,
    ) -> Refill {
        let (tx, rx) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            if !wait_turn(rx, SETTLE).await {
                let mut slots = pool.lock();
                if let Some(slot) = slots.get_mut(&key) {
                    slot.filling = false;
                }
                return;
            }
            let made = connect::<D>(&server, tls, &ctx).await;
            let generation = {
                let mut slots = pool.lock();
                let slot = slots.entry(key.clone()).or_default();
                slot.filling = false;
                match made {
                    Ok(conn) => {
                        tracing::debug!(upstream = %ctx.server, "warm upstream spare ready");
                        slot.spare = Some((conn, Instant::now()));
                        slot.generation += 1;
                        slot.generation
                    }
                    Err(e) => {
                        tracing::debug!(upstream = %ctx.server, error = %e, "warm upstream spare failed");
                        return;
                    }
                }
            };
            // Close an unused spare when it gets old rather than leave it to the server.
            tokio::time::sleep(pool.max_age).await;
            let mut slots = pool.lock();
            if let Some(slot) = slots.get_mut(&key) {
                if slot.generation == generation {
                    slot.spare = None;
                }
            }
        });
        Refill(Some(tx))
    }
}

/// Waits until the refill may start: true when the session let go of its [`Refill`] (or
/// `settle` passed), false when it cancelled it.
async fn wait_turn(rx: oneshot::Receiver<bool>, settle: Duration) -> bool {
    tokio::select! {
        // A dropped sender (the session is over) counts as "go".
        r = rx => r.unwrap_or(true),
        _ = tokio::time::sleep(settle) => true,
    }
}

/// Opens a connection (a warm spare when there is one) and runs `login` on it. A spare
/// that turns out to be closed is replaced by a new connection, once. On success, the
/// caller holds the returned [`Refill`] for as long as the session runs.
pub async fn login_with<D, T, F, Fut>(
    pool: Option<&Arc<Pool>>,
    key: Key,
    server: &ServerAddr,
    tls: Arc<rustls::ClientConfig>,
    ctx: &Ctx,
    login: F,
) -> Result<(T, Refill), UpstreamError>
where
    D: Dialect + 'static,
    F: Fn(LineStream<UpstreamStream>) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let (spare, refill) = match pool {
        Some(p) => p.take(&key),
        None => (None, false),
    };
    let refill = match (pool, refill) {
        (Some(p), true) => p.spawn_refill::<D>(key, server.clone(), tls.clone(), ctx.clone()),
        _ => Refill::none(),
    };
    let result = async {
        if let Some(conn) = spare {
            match login(conn).await {
                // The verdict on the code stands; anything else (closed, BYE/421 from an
                // idle spare, a timeout) may be the spare's age: try a new connection once.
                Err(e @ (UpstreamError::Rejected { .. } | UpstreamError::TempFail { .. })) => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::debug!(upstream = %ctx.server, error = %e, "warm upstream connection failed; reconnecting");
                }
                ok => return ok,
            }
        }
        login(connect::<D>(server, tls, ctx).await?).await
    }
    .await;
    match result {
        Ok(up) => Ok((up, refill)),
        Err(e) => {
            refill.cancel();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the refill's turn comes, under paused time: (what the session does, whether
    /// the refill goes, how long it waited).
    #[tokio::test(start_paused = true)]
    async fn the_refill_waits_for_its_session() {
        type Act = fn(oneshot::Sender<bool>);
        let table: [(&str, Act, bool, Duration); 3] = [
            ("session ended", drop, true, Duration::ZERO),
            (
                "login failed",
                |tx| {
                    let _ = tx.send(false);
                },
                false,
                Duration::ZERO,
            ),
            ("session still running", std::mem::forget, true, SETTLE),
        ];
        for (what, act, go, waited) in table {
            let (tx, rx) = oneshot::channel();
            let t0 = Instant::now();
            act(tx);
            assert_eq!(wait_turn(rx, SETTLE).await, go, "{what}");
            assert_eq!(t0.elapsed(), waited, "{what}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refill_handle_starts_or_cancels() {
        let (tx, rx) = oneshot::channel();
        Refill(Some(tx)).cancel();
        assert!(!wait_turn(rx, SETTLE).await);
        let (tx, rx) = oneshot::channel();
        drop(Refill(Some(tx)));
        let t0 = Instant::now();
        assert!(wait_turn(rx, SETTLE).await);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        Refill::none().cancel();
    }
}
