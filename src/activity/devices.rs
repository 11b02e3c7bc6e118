//! Devices: one entry per client host seen in the last [`WINDOW_DAYS`] days, grouped as
//! the per-address limits group them ([`crate::host::Host`]: an IPv4 address, an IPv6
//! /64, or an on-link IPv6 address), so "the copier at 192.168.1.50 has been failing
//! since Tuesday" is one line. At most [`MAX_DEVICES`]: when a new one comes and the table
//! is full, the entries past the window go first, then the one seen longest ago.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::clock::DAY;
use super::{SessionEnd, Time};
use crate::proto::Protocol;
use crate::session::Outcome;

/// Days a device stays listed after it was last seen.
pub const WINDOW_DAYS: i64 = 7;
/// Devices kept.
pub const MAX_DEVICES: usize = 1000;
/// Local user names kept per device (the most recent ones).
pub const MAX_USERS: usize = 8;

/// One client host, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The host: `192.168.1.50`, `2001:db8:1:2::/64`, or an on-link `fe80::10`.
    pub host: String,
    /// The address of its latest session.
    pub last_address: String,
    /// Protocols it used, in the order smtp, imap, pop3.
    pub protocols: Vec<Protocol>,
    /// Local users who logged in from it, oldest first, at most [`MAX_USERS`].
    pub users: Vec<String>,
    /// Its first session end in this record.
    pub first_seen: Time,
    /// Its latest session end.
    pub last_seen: Time,
    /// Sessions.
    pub sessions: u64,
    /// Messages accepted.
    pub messages: u64,
    /// Failed sessions (see [`SessionEnd::failed`]).
    pub failures: u64,
    /// Its latest failure, if it ever failed.
    pub last_error: Option<DeviceError>,
}

/// A device's latest failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceError {
    /// When the failed session ended.
    pub at: Time,
    /// How it ended.
    pub result: Outcome,
    /// The upstream's refusal, or the error the client was shown, if any.
    pub text: Option<String>,
}

impl Device {
    fn new(end: &SessionEnd) -> Device {
        Device {
            host: end.host.clone(),
            last_address: end.client.clone(),
            protocols: Vec::new(),
            users: Vec::new(),
            first_seen: end.at,
            last_seen: end.at,
            sessions: 0,
            messages: 0,
            failures: 0,
            last_error: None,
        }
    }

    fn add(&mut self, end: &SessionEnd) {
        if end.at >= self.last_seen {
            self.last_seen = end.at;
            self.last_address.clone_from(&end.client);
        }
        self.first_seen = self.first_seen.min(end.at);
        if !self.protocols.contains(&end.protocol) {
            self.protocols.push(end.protocol);
            self.protocols.sort();
        }
        if let Some(user) = &end.user {
            self.users.retain(|u| u != user);
            if self.users.len() >= MAX_USERS {
                self.users.remove(0);
            }
            self.users.push(user.clone());
        }
        self.sessions += 1;
        self.messages += end.messages;
        if end.failed {
            self.failures += 1;
            self.last_error = Some(DeviceError {
                at: end.at,
                result: end.result,
                text: end.error.clone(),
            });
        }
    }

    fn current(&self, now: Time) -> bool {
        self.last_seen > now.plus(-WINDOW_DAYS * DAY)
    }
}

/// The table, by host.
#[derive(Debug, Default)]
pub(super) struct Devices {
    by_host: HashMap<String, Device>,
}

impl Devices {
    /// Counts a session end for its device, making room for a new device if needed.
    pub fn record(&mut self, end: &SessionEnd) {
        if !self.by_host.contains_key(&end.host) && self.by_host.len() >= MAX_DEVICES {
            self.make_room(end.at);
        }
        self.by_host
            .entry(end.host.clone())
            .or_insert_with(|| Device::new(end))
            .add(end);
    }

    /// Drops the devices past the window; if none was, the one seen longest ago.
    fn make_room(&mut self, now: Time) {
        let before = self.by_host.len();
        self.by_host.retain(|_, d| d.current(now));
        if self.by_host.len() < before {
            return;
        }
        let oldest = self
            .by_host
            .values()
            .min_by_key(|d| (d.last_seen, d.host.clone()))
            .map(|d| d.host.clone());
        if let Some(host) = oldest {
            self.by_host.remove(&host);
        }
    }

    /// The devices seen in the window before `now`, most recently seen first.
    pub fn list(&self, now: Time) -> Vec<Device> {
        let mut list: Vec<Device> = self
            .by_host
            .values()
            .filter(|d| d.current(now))
            .cloned()
            .collect();
        list.sort_by(|a, b| (b.last_seen, &a.host).cmp(&(a.last_seen, &b.host)));
        list
    }

    /// Restores a [`Devices::list`]: the first [`MAX_DEVICES`] (the most recent), one
    /// per host, users bounded.
    pub fn restore(list: Vec<Device>) -> Devices {
        let mut d = Devices::default();
        for mut dev in list.into_iter().take(MAX_DEVICES) {
            let extra = dev.users.len().saturating_sub(MAX_USERS);
            dev.users.drain(..extra);
            d.by_host.entry(dev.host.clone()).or_insert(dev);
        }
        d
    }
}

#[cfg(test)]
mod tests;
