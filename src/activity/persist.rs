//! The record on disk, so a restart does not blank the status page:
//! `<state_dir>/activity.json`, the [`Snapshot`] JSON itself. Written by one background
//! task woken by changes, at most once every [`WRITE_EVERY`] and once more at shutdown,
//! on the blocking pool (never on the async threads), atomically: a temporary file
//! (0600: it names users and addresses), fsync, rename over the old one, fsync of the
//! directory (rename(2) is atomic, but durable only once the directory entry is on disk).
//! Bounded: what it holds is bounded (see the parent module) and a file over
//! [`MAX_FILE`] is not read. A missing file starts an empty record; an unreadable,
//! damaged or foreign one logs one warning and starts an empty record too: the page is
//! a convenience, never a reason to refuse to start.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Activity, Snapshot, VERSION};

/// The file's name in `state_dir`.
pub const FILE: &str = "activity.json";
/// Largest file read back (what the record holds stays well under 1 MiB).
pub const MAX_FILE: u64 = 4 << 20;
/// Shortest time between two writes.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// Why the file could not be read or written. `Display` names the file and the step.
#[derive(Debug, Error)]
pub enum PersistError {
    /// A filesystem step failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE`].
    #[error("{path} is {size} bytes, more than the {MAX_FILE} an activity record can be")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not a record this version reads.
    #[error("{path} is not an activity record of version {VERSION}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The record kept in `state_dir`: empty when there is none, and (after one warning)
/// when it cannot be read.
pub fn load(state_dir: &Path) -> Activity {
    let path = path(state_dir);
    match read(&path) {
        Ok(Some(snapshot)) => Activity::restore(snapshot),
        Ok(None) => Activity::default(),
        Err(e) => {
            warn!(
                error = %e,
                "the status page's activity record could not be read; starting with an empty \
                 one (the file is replaced at the next write)"
            );
            Activity::default()
        }
    }
}

/// Reads a record; `None` when the file does not exist.
pub fn read(path: &Path) -> Result<Option<Snapshot>, PersistError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", path)(e)),
    };
    let size = file.metadata().map_err(io("stat", path))?.len();
    if size > MAX_FILE {
        return Err(PersistError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    Read::by_ref(&mut &file)
        .take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    let corrupt = |why: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    // The version first, so a future format is named as such rather than as damage.
    #[derive(serde::Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if v.version != VERSION {
        return Err(corrupt(format!("it is of version {}", v.version)));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// Writes `snapshot` to `path` atomically and durably (creating its directory, 0700, if
/// needed). Blocking: call it on the blocking pool.
pub fn write(path: &Path, snapshot: &Snapshot) -> Result<(), PersistError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::trust::create_private_dir(dir).map_err(io("create directory", dir))?;
    let bytes = serde_json::to_vec(snapshot).map_err(|e| PersistError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    // Left over by a crash mid-write: it was never the record.
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts
        .open(&tmp)
        .map_err(io("create", &tmp))
        .and_then(|mut f| {
            f.write_all(&bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(io("rename", path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// The task writing the record; [`Writer::finish`] writes what is left and stops it.
pub struct Writer {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Starts the writer of `activity` to the file in `state_dir` (within a tokio runtime).
pub fn spawn(activity: Arc<Activity>, state_dir: &Path) -> Writer {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(activity, path(state_dir), stop.clone()));
    Writer { stop, task }
}

impl Writer {
    /// Writes the last changes (the sessions that ended during shutdown) and stops.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What the task knows between writes.
struct State {
    activity: Arc<Activity>,
    path: PathBuf,
    /// The change count the file holds.
    written: u64,
    /// The last write failed (warned once, not at every retry).
    failing: bool,
}

async fn run(activity: Arc<Activity>, path: PathBuf, stop: CancellationToken) {
    let mut s = State {
        written: activity.changes(),
        activity,
        path,
        failing: false,
    };
    loop {
        tokio::select! {
            _ = s.activity.changed.notified() => {}
            _ = stop.cancelled() => break,
        }
        save(&mut s).await;
        tokio::select! {
            _ = tokio::time::sleep(WRITE_EVERY) => {}
            _ = stop.cancelled() => break,
        }
    }
    save(&mut s).await;
}

/// Writes the record if it changed since the last write.
async fn save(s: &mut State) {
    let changes = s.activity.changes();
    if changes == s.written {
        return;
    }
    let (activity, path) = (s.activity.clone(), s.path.clone());
    let result = tokio::task::spawn_blocking(move || write(&path, &activity.snapshot())).await;
    match result {
        Ok(Ok(())) => {
            s.written = changes;
            if std::mem::take(&mut s.failing) {
                info!(path = %s.path.display(), "the activity record is written again");
            }
        }
        Ok(Err(e)) if !s.failing => {
            s.failing = true;
            warn!(error = %e, "the status page's activity record could not be written; retrying at the next change");
        }
        Ok(Err(e)) => debug!(error = %e, "activity record still not written"),
        Err(e) => warn!(error = %e, "the activity record's writer failed"),
    }
}

#[cfg(test)]
mod tests;
