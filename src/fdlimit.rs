//! The process's file-descriptor budget: at start the soft `RLIMIT_NOFILE` is raised to
//! the hard limit (a default soft limit of 1024 is far below what `max_sessions` may
//! need, two descriptors per relayed session), and the admin listener asks here whether
//! a new connection would eat into the reserve kept for mail sessions.

use std::path::Path;

/// Descriptors kept free for the mail listeners: the admin listener refuses connections
/// once fewer than this many are left. A mail session needs two (client and upstream),
/// so this leaves room for a few dozen logins even while the admin port is flooded.
pub const MAIL_RESERVE: u64 = 64;

/// What [`raise_nofile`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit at start (`None`: unlimited).
    pub was: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. On failure the limit stays as it
/// was (and [`NofileLimit::now`] says so); the caller logs the outcome.
#[cfg(unix)]
pub fn raise_nofile() -> NofileLimit {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let mut now = before.current;
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            now = getrlimit(Resource::Nofile).current;
        }
    }
    NofileLimit {
        was: before.current,
        now,
        hard: before.maximum,
    }
}

/// Elsewhere there is no `RLIMIT_NOFILE`: nothing to raise.
#[cfg(not(unix))]
pub fn raise_nofile() -> NofileLimit {
    NofileLimit {
        was: None,
        now: None,
        hard: None,
    }
}

/// The soft `RLIMIT_NOFILE` in force (`None`: unlimited, or no such limit).
pub fn soft_limit() -> Option<u64> {
    #[cfg(unix)]
    return rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(unix))]
    None
}

/// The number of descriptors this process has open, where the platform tells
/// (`/proc/self/fd` on Linux); `None` elsewhere. The count includes the directory
/// handle used to read it, which is harmless: it errs on the side of the reserve.
pub fn open_descriptors() -> Option<u64> {
    let dir = Path::new("/proc/self/fd");
    let entries = std::fs::read_dir(dir).ok()?;
    Some(entries.count() as u64)
}

/// True when `open` descriptors leave at least `reserve` of `limit` free. An unknown
/// count or an unlimited soft limit has room.
pub fn has_room(open: Option<u64>, limit: Option<u64>, reserve: u64) -> bool {
    match (open, limit) {
        (Some(open), Some(limit)) => open.saturating_add(reserve) < limit,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_against_the_reserve() {
        let cases = [
            // (open, limit, reserve) -> room
            ((Some(10), Some(1024), 64), true),
            ((Some(959), Some(1024), 64), true),
            ((Some(960), Some(1024), 64), false),
            ((Some(2000), Some(1024), 64), false),
            ((Some(u64::MAX), Some(1024), 64), false),
            ((None, Some(1024), 64), true),
            ((Some(5000), None, 64), true),
        ];
        for ((open, limit, reserve), want) in cases {
            assert_eq!(
                has_room(open, limit, reserve),
                want,
                "{open:?} {limit:?} {reserve}"
            );
        }
    }

    #[test]
    fn raising_never_lowers_and_counts_are_plausible() {
        let got = raise_nofile();
        match (got.was, got.now) {
            (Some(was), Some(now)) => assert!(now >= was, "{got:?}"),
            (None, now) => assert_eq!(now, None, "{got:?}"),
            (Some(_), None) => {}
        }
        assert_eq!(soft_limit(), got.now);
        if cfg!(target_os = "linux") {
            // stdin, stdout, stderr and the directory handle at least.
            assert!(open_descriptors().is_some_and(|n| n >= 3));
        }
    }
}
