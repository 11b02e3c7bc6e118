//! A warm spare per account and protocol: when logins come in bursts (a mail client
//! opening several IMAP connections, a scanner sending a batch), the next upstream
//! connection is opened, TLS-verified and greeted ahead of time, so a client's login
//! waits only for the upstream's LOGIN round trip. A spare is kept for `max_age` at most
//! and is made only after a login that follows another within `max_age`: a proxy used
//! now and then opens no extra connections (QQ rate-limits connection frequency).
//!
//! The refill is background work for the *next* login, so it must not slow down the one
//! that triggered it: it starts only once that login has succeeded (a failed login makes
//! no spare), and then waits until the session has ended or has been logged in for
//! [`SETTLE`], whichever comes first ([`Refill`]). Measured on a 2-core loopback set-up
//! (bench/), a refill's TLS handshake running beside the session it followed cost that
//! session 0.3 ms of its 1.2 ms; deferred, the proxied login took 0.7-0.8× a direct TLS
//! login.

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
/// enough for a login reply and a client's first commands on a local network, short
/// against the tens of milliseconds a provider's TCP and TLS handshakes take.
pub const SETTLE: Duration = Duration::from_millis(20);

/// The pending refill of a warm spare, held by the session whose login triggered it.
/// Dropping it (the session ended) starts the refill at once; otherwise it starts
/// [`SETTLE`] after the login.
#[derive(Debug, Default)]
pub struct Refill {
    /// Never sent on: its drop is the signal.
    _on_drop: Option<oneshot::Sender<()>>,
}

impl Refill {
    /// No refill pending.
    pub fn none() -> Refill {
        Refill::default()
    }
}

#[derive(Default)]
struct Slot {
    spare: Option<(LineStream<UpstreamStream>, Instant)>,
    /// A [`Reservation`] exists: one spare is being made (or is about to be).
    filling: bool,
    last_login: Option<Instant>,
    generation: u64,
}

/// The spares, shared by all sessions.
pub struct Pool {
    slots: Mutex<HashMap<Key, Slot>>,
    max_age: Duration,
}

/// The right to make the next spare for a key (its slot's `filling`), taken when a login
/// in a burst takes what spare there is. Dropped unused (the login failed, or its task was
/// cancelled), it gives the right back, so a later login can refill.
struct Reservation {
    pool: Arc<Pool>,
    key: Key,
    held: bool,
}

impl Reservation {
    /// Gives the right back while the caller holds the lock on the slots.
    fn release(&mut self, slot: &mut Slot) {
        slot.filling = false;
        self.held = false;
    }

    /// Makes the spare in the background once `wait_turn` allows it; returns the handle
    /// the session holds meanwhile.
    fn spawn<D: Dialect + 'static>(
        mut self,
        server: ServerAddr,
        tls: Arc<rustls::ClientConfig>,
        ctx: Ctx,
    ) -> Refill {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            wait_turn(rx, SETTLE).await;
            let made = connect::<D>(&server, tls, &ctx).await;
            let pool = self.pool.clone();
            let generation = {
                let mut slots = pool.lock();
                let slot = slots.entry(self.key.clone()).or_default();
                self.release(slot);
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
            if let Some(slot) = slots.get_mut(&self.key) {
                if slot.generation == generation {
                    slot.spare = None;
                }
            }
        });
        Refill { _on_drop: Some(tx) }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            if let Some(slot) = self.pool.lock().get_mut(&self.key) {
                slot.filling = false;
            }
        }
    }
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

    /// Takes a fresh spare if there is one, and the right to make the next spare when
    /// this login follows another within `max_age` and no spare is being made.
    fn take(
        self: &Arc<Self>,
        key: &Key,
    ) -> (Option<LineStream<UpstreamStream>>, Option<Reservation>) {
        if self.max_age.is_zero() {
            return (None, None);
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
        let reservation = (burst && !slot.filling).then(|| {
            slot.filling = true;
            Reservation {
                pool: self.clone(),
                key: key.clone(),
                held: true,
            }
        });
        (spare, reservation)
    }
}

/// Waits until the refill may start: the session let go of its [`Refill`], or `settle`
/// passed.
async fn wait_turn(rx: oneshot::Receiver<()>, settle: Duration) {
    tokio::select! {
        // The sender is never used: only its drop (the session is over) is news.
        _ = rx => {}
        _ = tokio::time::sleep(settle) => {}
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
    let (spare, reservation) = match pool {
        Some(p) => p.take(&key),
        None => (None, None),
    };
    let up = async {
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
        login(connect::<D>(server, tls.clone(), ctx).await?).await
    }
    .await?;
    // Only now: a login that failed (or the provider's rate limit) must not open another
    // connection, and the handshake must not compete with the login it follows.
    let refill = match reservation {
        Some(r) => r.spawn::<D>(server.clone(), tls, ctx.clone()),
        None => Refill::none(),
    };
    Ok((up, refill))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the refill waits, under paused time, for what the session does.
    #[tokio::test(start_paused = true)]
    async fn the_refill_waits_for_its_session() {
        type Act = fn(oneshot::Sender<()>);
        let table: [(&str, Act, Duration); 2] = [
            ("session ended", drop, Duration::ZERO),
            ("session still running", std::mem::forget, SETTLE),
        ];
        for (what, act, waited) in table {
            let (tx, rx) = oneshot::channel();
            let t0 = Instant::now();
            act(tx);
            wait_turn(rx, SETTLE).await;
            assert_eq!(t0.elapsed(), waited, "{what}");
        }
    }

    #[tokio::test]
    async fn one_reservation_at_a_time_given_back_when_unused() {
        let pool = Pool::new(Duration::from_secs(20));
        let key: Key = ("main".into(), Protocol::Imap);
        // The first login is not a burst.
        assert!(pool.take(&key).1.is_none());
        let first = pool.take(&key).1;
        assert!(
            first.is_some(),
            "a second login within max_age reserves the refill"
        );
        assert!(pool.take(&key).1.is_none(), "only one refill at a time");
        // The login that reserved it failed: the right goes back.
        drop(first);
        assert!(pool.take(&key).1.is_some());
        // A disabled pool reserves nothing.
        let off = Pool::new(Duration::ZERO);
        off.take(&key);
        assert!(off.take(&key).1.is_none());
    }
}
