//! The few filesystem steps the store's durability rests on: private creation modes,
//! an atomic replace (temporary file, fsync, rename, fsync of the directory) and the
//! directory fsync that makes a rename survive a power cut (rename(2) is atomic, but
//! only durable once the directory entry itself is on disk).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::StoreError;

/// Directories are private to the proxy's user: messages are other people's mail.
const DIR_MODE: u32 = 0o700;
/// Files likewise.
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; an existing one is kept as is.
pub fn create_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| StoreError::io("create directory", dir, e))
}

/// Creates a new file (mode 0600) for writing; fails if it exists.
pub fn create_new(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))
}

/// Flushes a directory's entries to disk.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Renames `from` to `to` (same filesystem; replaces `to` atomically).
pub fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(|e| StoreError::io("rename", to, e))
}

/// Writes `bytes` to `tmp`, flushes them to disk and renames the file to `dest`. The
/// caller fsyncs `dest`'s directory (once, when several renames land in it). On error the
/// temporary file is removed and `dest` is untouched.
pub fn write_replace(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let result = create_new(tmp).and_then(|mut f| {
        f.write_all(bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| StoreError::io("write", tmp, e))
    });
    let result = result.and_then(|()| rename(tmp, dest));
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Removes a file; one already gone is not an error (a retried removal must succeed).
pub fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io("remove", path, e))
        }
        _ => Ok(()),
    }
}
