//! Reading the whole queue: the recovery at server start (cleans `tmp/`, removes orphan
//! bodies, moves damaged messages to `corrupt/`), the side-effect-free listing the
//! `queue` commands use, and the `ctl/` requests by which those commands reach the server.

use std::collections::HashSet;
use std::fs;
use std::time::SystemTime;

use tracing::warn;

use super::{fsx, Envelope, QueueId, Store, StoreError};

/// What the start-up scan found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every message, sorted by next attempt (then ID, i.e. arrival).
    pub messages: Vec<Envelope>,
    /// Files removed because no message owned them (temporary files, orphan bodies).
    pub orphans_removed: usize,
    /// Messages moved to `corrupt/`.
    pub quarantined: usize,
}

/// One operator request, made by the `queue` commands and applied by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Try this message now.
    Retry(QueueId),
    /// Try every message now.
    RetryAll,
    /// Remove this message without delivering it (no bounce).
    Delete(QueueId),
}

impl Request {
    fn file_name(&self) -> String {
        match self {
            Request::Retry(id) => format!("retry.{id}"),
            Request::RetryAll => "retry.all".into(),
            Request::Delete(id) => format!("delete.{id}"),
        }
    }

    fn from_file_name(name: &str) -> Option<Request> {
        match name.split_once('.')? {
            ("retry", "all") => Some(Request::RetryAll),
            ("retry", id) => QueueId::parse(id).map(Request::Retry),
            ("delete", id) => QueueId::parse(id).map(Request::Delete),
            _ => None,
        }
    }
}

/// A message found in `msg/` and whether it passed its checks.
type Checked = (QueueId, Result<Envelope, String>);

impl Store {
    /// Every readable message, sorted by next attempt; changes nothing on disk (damaged
    /// ones are logged and left for the server's recovery).
    pub fn list(&self) -> Result<Vec<Envelope>, StoreError> {
        self.inner
            .lists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (found, _) = self.read_msg_dir()?;
        let mut out = Vec::new();
        for (id, checked) in found {
            match checked {
                Ok(env) => out.push(env),
                Err(why) => warn!(id = %id, why, "queue: damaged message skipped"),
            }
        }
        sort(&mut out);
        Ok(out)
    }

    pub(super) fn recover(&self) -> Result<Recovery, StoreError> {
        let mut rec = Recovery::default();
        // Nothing in tmp/ was ever acknowledged.
        let tmp = &self.inner.tmp;
        for entry in fs::read_dir(tmp).map_err(|e| StoreError::io("read", tmp, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", tmp, e))?;
            self.removed_orphan(&entry.path());
            rec.orphans_removed += 1;
        }
        let (found, orphans) = self.read_msg_dir()?;
        for path in orphans {
            self.removed_orphan(&path);
            rec.orphans_removed += 1;
        }
        for (id, checked) in found {
            match checked {
                Ok(env) => rec.messages.push(env),
                Err(why) => {
                    self.quarantine(&id, &why)?;
                    rec.quarantined += 1;
                }
            }
        }
        sort(&mut rec.messages);
        Ok(rec)
    }

    /// Reads `msg/`: each envelope checked (parses, names itself, body present with the
    /// right length; the checksum is checked when the body is sent), plus the paths of
    /// bodies without an envelope. Unknown names are logged and left alone.
    fn read_msg_dir(&self) -> Result<(Vec<Checked>, Vec<std::path::PathBuf>), StoreError> {
        let dir = &self.inner.msg;
        let mut envs = Vec::new();
        let mut bodies = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StoreError::io("read", dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let parsed = name
                .split_once('.')
                .and_then(|(id, ext)| Some((QueueId::parse(id)?, ext)));
            match parsed {
                Some((id, "env")) => envs.push(id),
                Some((id, "body")) => bodies.push(id),
                _ => {
                    warn!(file = %entry.path().display(), "queue: unknown file in msg/ left alone")
                }
            }
        }
        let owned: HashSet<&QueueId> = envs.iter().collect();
        let orphans = bodies
            .iter()
            .filter(|id| !owned.contains(id))
            .map(|id| self.body_path(id))
            .collect();
        let found = envs.iter().map(|id| (id.clone(), self.check(id))).collect();
        Ok((found, orphans))
    }

    fn check(&self, id: &QueueId) -> Result<Envelope, String> {
        let env = self.get(id).map_err(|e| e.to_string())?;
        let body = self.body_path(id);
        match fs::metadata(&body) {
            Ok(m) if m.len() == env.body.len => Ok(env),
            Ok(m) => Err(format!(
                "body is {} bytes, the envelope says {} (truncated?)",
                m.len(),
                env.body.len
            )),
            Err(e) => Err(format!("body unreadable: {e}")),
        }
    }

    /// Leaves a request for the server (from the `queue` commands). It is applied on the
    /// server's next scan, or at its next start if none runs.
    pub fn request(&self, req: &Request) -> Result<(), StoreError> {
        if let Request::Retry(id) | Request::Delete(id) = req {
            if !self.env_path(id).exists() {
                return Err(StoreError::NotFound(id.clone()));
            }
        }
        let name = req.file_name();
        let tmp = self
            .inner
            .ctl
            .join(format!(".{name}.{:08x}", rand::random::<u32>()));
        fsx::write_replace(&tmp, &self.inner.ctl.join(&name), b"")?;
        fsx::sync_dir(&self.inner.ctl)
    }

    /// Requests not yet taken by the server (for `queue` commands that wait for it).
    pub fn pending_requests(&self) -> Result<Vec<Request>, StoreError> {
        let ctl = &self.inner.ctl;
        let mut out = Vec::new();
        for entry in fs::read_dir(ctl).map_err(|e| StoreError::io("read", ctl, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", ctl, e))?;
            if let Some(r) = Request::from_file_name(&entry.file_name().to_string_lossy()) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The server's side: takes every request (removing its file) for the caller to
    /// apply with [`Store::apply`]. A file that is not a request is removed with a log line.
    pub fn take_requests(&self) -> Result<Vec<Request>, StoreError> {
        let ctl = &self.inner.ctl;
        let mut out = Vec::new();
        for entry in fs::read_dir(ctl).map_err(|e| StoreError::io("read", ctl, e))? {
            let entry = entry.map_err(|e| StoreError::io("read", ctl, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a request being written
            }
            match Request::from_file_name(&name) {
                Some(r) => out.push(r),
                None => warn!(file = %name, "queue: unknown request file removed"),
            }
            fsx::remove(&entry.path())?;
        }
        Ok(out)
    }

    /// Applies one request at `now`. A message already gone is not an error (it was
    /// delivered in the meantime).
    pub fn apply(&self, req: &Request, now: SystemTime) -> Result<(), StoreError> {
        let result = match req {
            Request::Retry(id) => self.retry_now(id, now),
            Request::Delete(id) => self.remove(id),
            Request::RetryAll => {
                for env in self.list()? {
                    match self.retry_now(&env.id, now) {
                        Err(StoreError::NotFound(_)) | Ok(()) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        };
        match result {
            Err(StoreError::NotFound(_)) => Ok(()),
            other => other,
        }
    }
}

fn sort(v: &mut [Envelope]) {
    v.sort_by(|a, b| {
        a.next_attempt
            .cmp(&b.next_attempt)
            .then_with(|| a.id.cmp(&b.id))
    });
}
