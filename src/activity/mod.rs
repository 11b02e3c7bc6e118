//! The activity record behind the status page (issue 14): the last session ends, the
//! devices seen this week, messages and failures per hour over the last day, and the last
//! upstream login per account and protocol. Bounded in memory (a ring of
//! [`recent::MAX_RECENT`] ends, at most [`devices::MAX_DEVICES`] devices, [`hourly::HOURS`]
//! buckets, [`logins::MAX_LOGINS`] logins), kept across reloads like the metrics
//! (`runtime::Kept`), and in `state_dir` across restarts (`persist`).
//!
//! Fed from two places only: the end of every session (`session::end`, after the one
//! log line) and the one place upstream logins are made and classified
//! (`session::connect::login_upstream`). Each is one short lock and a few small copies:
//! no per-byte work, no lock held across an await. Health probes (connect, greeting,
//! QUIT) are not recorded, or Docker's health check would fill the ring.
//!
//! What it never holds: the authorization code, local passwords or hashes, SASL blobs,
//! message bodies or envelopes. A failed login's user name is not kept either (devices
//! sometimes send the password in the user field).
//!
//! # The JSON shape ([`Snapshot`], also the file's)
//! Every time is an object `{"utc": "2026-12-07T03:24:47Z", "unix": 1796613887}` (RFC
//! 3339 UTC, and unix seconds). Absent values are `null`.
//! ```text
//! {
//!   "version": 1,
//!   "generated": <time>,
//!   "recent": [                       // newest first, at most 200
//!     { "at": <time>, "client": "192.168.1.50", "host": "192.168.1.50",
//!       "protocol": "smtp" | "imap" | "pop3", "user": "printer" | null,
//!       "account": "main" | null,
//!       "result": "ok" | "client_closed" | "auth_failed" | "upstream_error" | "timeout"
//!               | "tls_failed" | "error" | "shutdown" | "shed" | "cross_protocol" | "refused",
//!       "failed": false, "messages": 1, "bytes_in": 2048, "bytes_out": 512,
//!       "error": "535 5.7.8 Error: authentication failed" | null } ],
//!   "devices": [                      // seen in the last 7 days, most recent first, at most 1000
//!     { "host": "192.168.1.50" | "2001:db8:1:2::/64", "last_address": "192.168.1.50",
//!       "protocols": ["smtp"], "users": ["printer"],
//!       "first_seen": <time>, "last_seen": <time>,
//!       "sessions": 12, "messages": 9, "failures": 3,
//!       "last_error": { "at": <time>, "result": "auth_failed", "text": "535 ..." | null } | null } ],
//!   "hourly": [                       // exactly 24, oldest first; the last is the current hour
//!     { "hour": <time>, "messages": 4, "failures": 1 } ],
//!   "upstream_logins": [              // by account, then smtp, imap, pop3
//!     { "account": "main", "protocol": "smtp", "server": "smtp.qq.com:465", "at": <time>,
//!       "ok": false, "error": "smtp.qq.com:465 rejected the login for me@qq.com: 535 Login Fail ..." | null,
//!       "hint": "the authorization code is wrong or was revoked ..." | null,
//!       "last_ok": <time> | null, "failing_since": <time> | null } ]
//! }
//! ```

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::proto::Protocol;
use crate::session::Report;
use crate::upstream::UpstreamError;

mod clock;
mod devices;
mod hourly;
mod logins;
mod recent;

pub use clock::Time;
pub use devices::{Device, DeviceError, MAX_DEVICES, WINDOW_DAYS};
pub use hourly::{HourBucket, HOURS};
pub use logins::UpstreamLogin;
pub use recent::{SessionEnd, MAX_RECENT};

/// The version of the [`Snapshot`] shape (and of the file).
pub const VERSION: u32 = 1;

/// Everything the status page shows of the gateway's activity, as of `generated`. See
/// the module documentation for its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`VERSION`].
    pub version: u32,
    /// When it was taken.
    pub generated: Time,
    /// The last session ends, newest first.
    pub recent: Vec<SessionEnd>,
    /// Devices seen in the last [`WINDOW_DAYS`] days, most recently seen first.
    pub devices: Vec<Device>,
    /// [`HOURS`] hourly buckets, oldest first; the last is the current hour.
    pub hourly: Vec<HourBucket>,
    /// The last upstream login per account and protocol.
    pub upstream_logins: Vec<UpstreamLogin>,
}

#[derive(Debug, Default)]
struct Book {
    recent: recent::Recent,
    devices: devices::Devices,
    hourly: hourly::Hourly,
    logins: logins::Logins,
}

/// The record, shared by every runtime of the process.
#[derive(Debug, Default)]
pub struct Activity {
    book: Mutex<Book>,
    /// Wakes the writer of the file (`persist`) after a change.
    changed: tokio::sync::Notify,
}

impl SessionEnd {
    /// The entry for a session of `protocol` from `peer` (counted for `host`) that ended
    /// at `at` as `report` says.
    pub fn new(at: Time, protocol: Protocol, peer: IpAddr, host: Host, report: &Report) -> Self {
        SessionEnd {
            at,
            client: peer.to_canonical().to_string(),
            host: host.to_string(),
            protocol,
            user: report.user.clone(),
            account: report.account.clone(),
            result: report.outcome,
            failed: report.outcome.is_failure() || report.error.is_some(),
            messages: report.messages,
            bytes_in: report.from_client,
            bytes_out: report.to_client,
            error: report.error.clone(),
        }
    }
}

impl Activity {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a finished session (not a health probe: see [`Report::is_probe`]).
    pub fn session_ended(&self, protocol: Protocol, peer: IpAddr, host: Host, report: &Report) {
        if report.is_probe() {
            return;
        }
        self.record(SessionEnd::new(Time::now(), protocol, peer, host, report));
    }

    /// Records a session end.
    pub fn record(&self, end: SessionEnd) {
        {
            let mut b = self.book();
            b.hourly.add(end.at, end.messages, end.failed);
            b.devices.record(&end);
            b.recent.push(end);
        }
        self.changed.notify_one();
    }

    /// Records an upstream login of `account` (its id) for `protocol` to `server`.
    pub fn upstream_login(
        &self,
        login: (&str, Protocol, &str),
        result: Result<(), &UpstreamError>,
    ) {
        self.book().logins.record(Time::now(), login, result);
        self.changed.notify_one();
    }

    /// The record as of now.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(Time::now())
    }

    /// The record as of `now`.
    pub fn snapshot_at(&self, now: Time) -> Snapshot {
        let b = self.book();
        Snapshot {
            version: VERSION,
            generated: now,
            recent: b.recent.list(),
            devices: b.devices.list(now),
            hourly: b.hourly.chart(now),
            upstream_logins: b.logins.list(),
        }
    }

    /// A record holding what `snapshot` held (after a restart).
    pub fn restore(snapshot: Snapshot) -> Activity {
        let book = Book {
            recent: recent::Recent::restore(snapshot.recent),
            devices: devices::Devices::restore(snapshot.devices),
            hourly: hourly::Hourly::restore(snapshot.hourly),
            logins: logins::Logins::restore(snapshot.upstream_logins),
        };
        Activity {
            book: Mutex::new(book),
            changed: tokio::sync::Notify::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
