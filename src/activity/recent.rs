//! The last session ends, newest first: a ring of at most [`MAX_RECENT`] entries, so the
//! record's memory and file stay bounded however busy the gateway is.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Time;
use crate::proto::Protocol;
use crate::session::Outcome;

/// Session ends kept.
pub const MAX_RECENT: usize = 200;

/// One finished session, as the status page lists it. Never holds a password, the
/// authorization code, a SASL blob or a message: only names, counts and refusal texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// When it ended.
    pub at: Time,
    /// The client's IP address (no port).
    pub client: String,
    /// The device it counts for (see [`super::Device::host`]).
    pub host: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The local user who logged in; `None` when nobody did (a failed login's name is
    /// not kept: devices sometimes send the password in the user field).
    pub user: Option<String>,
    /// The account used, if any.
    pub account: Option<String>,
    /// How it ended (the session log line's `result`).
    pub result: Outcome,
    /// Whether it counts as a failure: a failing result, or a refusal noted in `error`.
    pub failed: bool,
    /// Messages accepted (relayed upstream, or stored in the queue).
    pub messages: u64,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// The upstream's refusal, or the error the client was shown, if any.
    pub error: Option<String>,
}

/// The ring.
#[derive(Debug, Default)]
pub(super) struct Recent {
    /// Oldest first (pushed at the back).
    ends: VecDeque<SessionEnd>,
}

impl Recent {
    /// Adds one, dropping the oldest beyond [`MAX_RECENT`].
    pub fn push(&mut self, end: SessionEnd) {
        if self.ends.len() >= MAX_RECENT {
            self.ends.pop_front();
        }
        self.ends.push_back(end);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<SessionEnd> {
        self.ends.iter().rev().cloned().collect()
    }

    /// Restores a [`Recent::list`] (newest first), keeping the newest [`MAX_RECENT`].
    pub fn restore(list: Vec<SessionEnd>) -> Recent {
        let mut r = Recent::default();
        for end in list.into_iter().take(MAX_RECENT).rev() {
            r.push(end);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(at: i64, client: &str) -> SessionEnd {
        SessionEnd {
            at: Time::from_unix(at),
            client: client.into(),
            host: client.into(),
            protocol: Protocol::Smtp,
            user: None,
            account: None,
            result: Outcome::Ok,
            failed: false,
            messages: 0,
            bytes_in: 0,
            bytes_out: 0,
            error: None,
        }
    }

    #[test]
    fn bounded_newest_first() {
        // (pushed, kept, newest, oldest kept)
        #[rustfmt::skip]
        let cases = [
            (0, 0, None, None),
            (1, 1, Some(0), Some(0)),
            (MAX_RECENT, MAX_RECENT, Some(MAX_RECENT - 1), Some(0)),
            (MAX_RECENT + 1, MAX_RECENT, Some(MAX_RECENT), Some(1)),
            (3 * MAX_RECENT + 7, MAX_RECENT, Some(3 * MAX_RECENT + 6), Some(2 * MAX_RECENT + 7)),
        ];
        for (pushed, kept, newest, oldest) in cases {
            let mut r = Recent::default();
            for i in 0..pushed {
                r.push(end(i as i64, "192.0.2.1"));
            }
            let list = r.list();
            let at = |e: Option<&SessionEnd>| e.map(|e| e.at.unix() as usize);
            assert_eq!(list.len(), kept, "{pushed}");
            assert_eq!(at(list.first()), newest, "{pushed}");
            assert_eq!(at(list.last()), oldest, "{pushed}");
            assert_eq!(Recent::restore(list.clone()).list(), list, "{pushed}");
        }
        // A longer list (a file written by a bigger build) keeps its newest entries.
        let long: Vec<_> = (0..MAX_RECENT + 50)
            .rev()
            .map(|i| end(i as i64, "a"))
            .collect();
        let back = Recent::restore(long).list();
        assert_eq!(back.len(), MAX_RECENT);
        assert_eq!(back[0].at.unix(), (MAX_RECENT + 49) as i64);
    }
}
