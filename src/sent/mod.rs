//! `[[account]] save_sent = "on"` (issue 17): a copy of each message the upstream
//! accepted, APPENDed flagged `\Seen` to the account's Sent folder over IMAP. One
//! component for both paths: the relay (after the upstream's 250 to the final dot) and
//! the queue's deliverer (after its 250) write a [`CopyFile`] and [`Copier::submit`] it.
//!
//! The copy never delays the client and never fails a delivery: it runs in a background
//! task, one APPEND per account at a time, at most [`MAX_BACKLOG`] copies waiting (past
//! that a copy is dropped, logged and counted as failed). A failed APPEND is tried again
//! after each of [`RETRY_WAITS`] unless retrying cannot help (no Sent folder, APPEND
//! refused); then it is logged at warn with the reason and a hint. The file is removed
//! after success or the final failure; files left by a crash are retried at the next
//! start ([`Copier::recover`]), or removed if their account no longer saves copies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::upstream::UpstreamError;

mod append;
pub mod folder;
pub mod spool;

pub use append::Target;
pub use spool::{copy_of, CopyFile, Written};

/// Waits before the second, third and fourth try of an APPEND: the provider's IMAP
/// server may be briefly down or rate-limiting logins (FACTS.md: QQ's risk control).
pub const RETRY_WAITS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// Most copies waiting or being appended, all accounts together: a bound on the disk and
/// tasks a stalled IMAP server can cost. Past it a new copy is dropped (and logged).
pub const MAX_BACKLOG: usize = 100;

/// Why a copy could not be saved. Never contains the code or the message.
#[derive(Debug, Error)]
pub enum SentError {
    /// Connecting or logging in to the IMAP server failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// No folder is marked `\Sent` and the preset's name is not listed.
    #[error("{server} has no Sent folder: none is marked \\Sent (SPECIAL-USE or XLIST) and there is no folder named {preset:?}")]
    NoFolder {
        /// `host:port`.
        server: String,
        /// The provider preset's Sent folder name.
        preset: &'static str,
    },
    /// The server refused the APPEND.
    #[error("{server} refused the APPEND to {folder:?}: {reply}")]
    Refused {
        /// `host:port`.
        server: String,
        /// The folder, as the server spells it.
        folder: String,
        /// The server's reply.
        reply: String,
    },
    /// The copy's file could not be read.
    #[error("cannot read the copy {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl SentError {
    /// Whether trying again later may work (a network or login problem may pass; a
    /// missing folder, a refused APPEND or an unreadable file will not).
    fn retryable(&self) -> bool {
        match self {
            SentError::Upstream(e) => !matches!(e, UpstreamError::NotConfigured(_)),
            SentError::NoFolder { .. } | SentError::Refused { .. } | SentError::File { .. } => {
                false
            }
        }
    }

    /// What the owner can do about it.
    fn hint(&self) -> &'static str {
        match self {
            SentError::Upstream(e) => e.hint().unwrap_or(
                "check that the account's IMAP service is on and imap_server is reachable",
            ),
            SentError::NoFolder { .. } => {
                "create the Sent folder in the web mail, or turn on the provider's own setting \
                 (QQ: 设置 → 账户 → 「SMTP发信后保存到服务器」) and set save_sent = \"off\""
            }
            SentError::Refused { .. } => {
                "the mailbox may be full or the folder read-only; the message itself was delivered"
            }
            SentError::File { .. } => "check state_dir's disk and permissions",
        }
    }
}

/// The Sent copies of every account: who may APPEND now, and how many wait. Shared by
/// the runtimes across reloads, so the bounds hold across them.
#[derive(Clone, Default)]
pub struct Copier {
    /// Copies begun and not yet finished (written, waiting, being appended).
    backlog: Arc<AtomicUsize>,
    /// One APPEND at a time per account id.
    locks: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// A place in the backlog: given back when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Copier {
    /// A place for one more copy, unless [`MAX_BACKLOG`] copies already wait.
    pub fn reserve(&self) -> Option<Slot> {
        let taken = self
            .backlog
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_BACKLOG).then_some(n + 1)
            });
        taken.ok().map(|_| Slot(self.backlog.clone()))
    }

    /// Starts the background APPEND of `copy` to `target`'s Sent folder.
    pub fn submit(&self, slot: Slot, copy: Written, target: Target, metrics: Arc<Metrics>) {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks
                .entry(target.account.id.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone()
        };
        tokio::spawn(run(slot, copy, target, lock, metrics));
    }

    /// At start: the copies a crash or a shutdown left in `state_dir/sent/` are submitted
    /// again when `target` finds their account (one saving copies), else removed.
    pub fn recover(
        &self,
        state_dir: &Path,
        target: impl Fn(&str) -> Option<Target>,
        metrics: &Arc<Metrics>,
    ) {
        let Ok(entries) = std::fs::read_dir(state_dir.join(spool::DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let account = spool::account_of(&name);
            let found = account.as_deref().and_then(&target);
            let size = entry.metadata().map(|m| m.len());
            match (found, size, self.reserve()) {
                (Some(t), Ok(size), Some(slot)) => {
                    info!(account = %t.account.id, file = %path.display(), "Sent copy left by an earlier run: trying again");
                    self.submit(slot, Written { path, size }, t, metrics.clone());
                }
                _ => {
                    warn!(file = %path.display(), "Sent copy left by an earlier run whose account no longer saves copies (or too many wait): removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// Tries the APPEND, waiting [`RETRY_WAITS`] between tries (the account's lock is held
/// only while trying), then removes the file.
async fn run(_slot: Slot, copy: Written, t: Target, lock: Arc<Semaphore>, metrics: Arc<Metrics>) {
    let account = t.account.id.clone();
    let tries = RETRY_WAITS.len() + 1;
    for attempt in 1..=tries {
        let result = match lock.acquire().await {
            Ok(_permit) => append::save(&t, &copy.path, copy.size).await,
            Err(_) => break,
        };
        match result {
            Ok(saved) => {
                let _ = tokio::fs::remove_file(&copy.path).await;
                metrics.sent_copy(true);
                info!(%account, folder = %saved.folder, found = ?saved.found, size = copy.size, "copy saved in the Sent folder");
                return;
            }
            Err(e) if e.retryable() && attempt < tries => {
                let wait = RETRY_WAITS[attempt - 1];
                info!(%account, error = %e, "Sent copy not saved yet (try {attempt} of {tries}); trying again in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                warn!(%account, error = %e, hint = e.hint(), "Sent copy not saved after {attempt} tries, given up (the message itself was delivered)");
                break;
            }
        }
    }
    metrics.sent_copy(false);
    let _ = tokio::fs::remove_file(&copy.path).await;
}

#[cfg(test)]
mod tests;
