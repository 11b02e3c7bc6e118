//! The relay's side of `save_sent` (issue 17): while a message streams upstream, the
//! same bytes go into a [`CopyFile`]; when the upstream answers 250 to the final dot the
//! copy is finished and handed to the [`crate::sent::Copier`] in a task of its own, so
//! the client's 250 never waits for it. A copy the upstream did not accept is dropped
//! (its file removed). Queued messages get their copy from the deliverer instead.

use tracing::warn;

use super::Relay;
use crate::sent::{CopyFile, Slot};

/// A Sent copy being written for the message in progress.
pub(super) struct SentCopy {
    file: CopyFile,
    slot: Slot,
}

impl Relay<'_> {
    /// Starts the copy of the next message when the account saves copies (an earlier,
    /// unaccepted copy is dropped). A copy that cannot start is logged and skipped: the
    /// message goes on regardless.
    pub(super) async fn begin_sent_copy(&mut self) {
        self.sent_copy = None;
        if self.rt.sent_target(&self.account).is_none() {
            return;
        }
        let Some(slot) = self.rt.sent.reserve() else {
            warn!(account = %self.account.id, "too many Sent copies waiting; this message gets none");
            self.rt.metrics.sent_copy(false);
            return;
        };
        match CopyFile::create(&self.rt.config.state_dir, &self.account.id).await {
            Ok(file) => self.sent_copy = Some(SentCopy { file, slot }),
            Err(e) => {
                warn!(account = %self.account.id, error = %e, dir = %self.rt.config.state_dir.display(), "cannot write the Sent copy; this message gets none");
                self.rt.metrics.sent_copy(false);
            }
        }
    }

    /// Adds bytes that went upstream (transmission form) to the copy.
    pub(super) async fn push_sent_copy(&mut self, bytes: &[u8]) {
        let Some(copy) = self.sent_copy.as_mut() else {
            return;
        };
        if let Err(e) = copy.file.push(bytes).await {
            warn!(account = %self.account.id, error = %e, "cannot write the Sent copy; this message gets none");
            self.rt.metrics.sent_copy(false);
            self.sent_copy = None;
        }
    }

    /// The upstream accepted the message: the copy is finished and appended in the
    /// background.
    pub(super) fn sent_copy_accepted(&mut self) {
        let Some(SentCopy { file, slot }) = self.sent_copy.take() else {
            return;
        };
        let Some(target) = self.rt.sent_target(&self.account) else {
            return;
        };
        let copier = self.rt.sent.clone();
        let metrics = self.rt.metrics.clone();
        tokio::spawn(async move {
            match file.finish().await {
                Ok(written) => copier.submit(slot, written, target, metrics),
                Err(e) => {
                    warn!(account = %target.account.id, error = %e, "cannot write the Sent copy; this message gets none");
                    metrics.sent_copy(false);
                }
            }
        });
    }
}
