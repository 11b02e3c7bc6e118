//! A warm spare per account and protocol: when logins come in bursts (a mail client
//! opening several IMAP connections, a scanner sending a batch), the next upstream
//! connection is opened, TLS-verified and greeted ahead of time, so a client's login
//! waits only for the upstream's LOGIN round trip. A spare is kept for `max_age` at most
//! and is made only after a login that follows another within `max_age`: a proxy used
//! now and then opens no extra connections (QQ rate-limits connection frequency).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{connect, Ctx, Dialect, UpstreamError, UpstreamStream};
use crate::net::LineStream;
use crate::proto::Protocol;
use crate::providers::ServerAddr;

/// Which spare: account id and protocol.
pub type Key = (String, Protocol);

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

    fn spawn_refill<D: Dialect + 'static>(
        self: &Arc<Self>,
        key: Key,
        server: ServerAddr,
        tls: Arc<rustls::ClientConfig>,
        ctx: Ctx,
    ) {
        let pool = self.clone();
        tokio::spawn(async move {
            let made = connect::<D>(&server, tls, &ctx).await;
            let generation = {
                let mut slots = pool.lock();
                let slot = slots.entry(key.clone()).or_default();
                slot.filling = false;
                match made {
                    Ok(conn) => {
                        slot.spare = Some((conn, Instant::now()));
                        slot.generation += 1;
                        slot.generation
                    }
                    Err(_) => return,
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
    }
}

/// Opens a connection (a warm spare when there is one) and runs `login` on it. A spare
/// that turns out to be closed is replaced by a new connection, once.
pub async fn login_with<D, T, F, Fut>(
    pool: Option<&Arc<Pool>>,
    key: Key,
    server: &ServerAddr,
    tls: Arc<rustls::ClientConfig>,
    ctx: &Ctx,
    login: F,
) -> Result<T, UpstreamError>
where
    D: Dialect + 'static,
    F: Fn(LineStream<UpstreamStream>) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let (spare, refill) = match pool {
        Some(p) => p.take(&key),
        None => (None, false),
    };
    if let (Some(p), true) = (pool, refill) {
        p.spawn_refill::<D>(key, server.clone(), tls.clone(), ctx.clone());
    }
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
