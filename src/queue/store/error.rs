//! The store's errors. The SMTP session maps every one that can happen while accepting a
//! message to `452 4.3.1` (RFC 3463: mail system full / storage trouble), never to 250.

use std::io;
use std::path::{Path, PathBuf};

use super::QueueId;

/// Why the queue could not do what was asked. `Display` names the path and what to do;
/// it never contains message contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Accepting this would take the queue past `[queue] max_size`.
    #[error("the queue is full ({used} of max_size {max} bytes in use): wait for deliveries, or raise [queue] max_size")]
    Full {
        /// Bytes in use (stored bodies plus messages being received).
        used: u64,
        /// The limit.
        max: u64,
    },
    /// The filesystem is out of space (ENOSPC) or quota (EDQUOT).
    #[error("no space left on the device holding {path}: free some space or move [queue] dir")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// The filesystem is mounted read-only (EROFS).
    #[error("{path} is on a read-only filesystem: mount it read-write or move [queue] dir")]
    ReadOnly {
        /// The file being written.
        path: PathBuf,
    },
    /// The queue directory (or one of its parts) does not exist.
    #[error("{path} does not exist: create it, or check [queue] dir")]
    Missing {
        /// What is missing.
        path: PathBuf,
    },
    /// The proxy's user may not read or write there.
    #[error("permission denied on {path}: the proxy's user must own [queue] dir")]
    PermissionDenied {
        /// The path refused.
        path: PathBuf,
    },
    /// No message with that ID (delivered, deleted, or never queued).
    #[error("no queued message {0}")]
    NotFound(QueueId),
    /// A stored file failed its checks (moved to `corrupt/` by the caller that found it).
    #[error("queue file {path} is corrupt: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Any other I/O failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

impl StoreError {
    /// Names an I/O failure by its cause, so callers (and the log) can tell a full disk
    /// from a read-only one without looking at errno themselves.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                StoreError::DiskFull { path }
            }
            io::ErrorKind::ReadOnlyFilesystem => StoreError::ReadOnly { path },
            io::ErrorKind::NotFound => StoreError::Missing { path },
            io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { path },
            _ => StoreError::Io { op, path, source },
        }
    }

    /// True for the faults an SMTP session answers with `452 4.3.1` (the queue cannot
    /// take the message now); false for `NotFound` and `Corrupt`, which concern one
    /// stored message.
    pub fn is_storage_fault(&self) -> bool {
        !matches!(self, StoreError::NotFound(_) | StoreError::Corrupt { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_named_by_cause() {
        let p = Path::new("/q/x");
        let cases: &[(io::Error, &str)] = &[
            (io::Error::from_raw_os_error(28 /* ENOSPC */), "DiskFull"),
            (io::Error::from_raw_os_error(122 /* EDQUOT */), "DiskFull"),
            (io::Error::from_raw_os_error(30 /* EROFS */), "ReadOnly"),
            (io::Error::from_raw_os_error(2 /* ENOENT */), "Missing"),
            (
                io::Error::from_raw_os_error(13 /* EACCES */),
                "PermissionDenied",
            ),
            (io::Error::from_raw_os_error(5 /* EIO */), "Io"),
        ];
        for (e, want) in cases {
            let got = StoreError::io(
                "write",
                p,
                io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(0)),
            );
            let name = format!("{got:?}");
            assert!(name.starts_with(want), "{e}: {name}");
            assert!(got.is_storage_fault());
            assert!(got.to_string().contains("/q/x"), "{got}");
        }
    }
}
