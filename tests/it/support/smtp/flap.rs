//! A switch that makes the fake upstream flap, as smtp.qq.com does under load: down for a
//! while (every new connection refused with a 421 greeting, or every message deferred
//! with a 451 after its final dot), then up again. For tests of what the queue does
//! across such outages; the switch can be thrown at any moment from the test.

use std::time::Duration;

use super::{FakeSmtp, Message};

/// The greeting of a [`Flap::Refusing`] fake, which then closes (RFC 5321 §3.1: a server
/// that cannot serve says 421 instead of 220). Not QQ's "frequency limited" text: this
/// outage is a plain temporary one, not a rate limit with its 15-minute floor.
pub const REFUSED_421: &str =
    "421 4.3.2 smtp.qq.com Service not available, closing transmission channel";
/// The reply of a [`Flap::Deferring`] fake to the final dot.
pub const DEFERRED_451: &str = "451 4.3.0 Temporary local problem, try again later";

/// Whether the fake serves now; changed at any time with [`FakeSmtp::set_flap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flap {
    /// Behave (subject to the fake's [`super::Fault`]).
    #[default]
    Up,
    /// New connections get [`REFUSED_421`] as their greeting and are closed; sessions
    /// already running go on.
    Refusing,
    /// Every message is read to its final dot, answered [`DEFERRED_451`] and not recorded.
    Deferring,
}

impl FakeSmtp {
    /// Throws the switch: applies to the next greeting and the next final dot.
    pub fn set_flap(&self, flap: Flap) {
        self.shared.record(|r| r.flap = flap);
    }

    /// Connections refused and messages deferred by the switch so far.
    pub fn flap_counts(&self) -> (usize, usize) {
        let r = self.shared.lock();
        (r.flap_refused, r.flap_deferred)
    }

    /// Waits until the accepted messages satisfy `pred`: `Ok` with them, or `Err` with
    /// those that came, after `timeout` (the caller says what is missing).
    pub async fn wait_messages_where(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Message]) -> bool,
    ) -> Result<Vec<Message>, Vec<Message>> {
        let mut rx = self.shared.changed.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            while !pred(&self.shared.lock().messages) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match waited {
            Ok(()) => Ok(self.messages()),
            Err(_) => Err(self.messages()),
        }
    }
}
