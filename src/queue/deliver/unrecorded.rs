//! Delivery states the store could not write (a full or read-only disk). The worker keeps
//! them and acts on them instead of the stale files, and writes them again at every turn
//! until the disk takes them. Without this a recipient the upstream had accepted would be
//! sent the message again (the file still says "pending"), and a deferred message would
//! be retried at once, in a loop, against an upstream that rate-limits (issue 12: "no
//! other path may send a message twice"). Only a restart before the disk recovers loses
//! these states: then the file's older state is what survives, as after any crash.

use std::collections::HashMap;
use std::time::SystemTime;

use tracing::{info, warn};

use super::blocking;
use crate::queue::store::{Envelope, QueueId, Request, Store, StoreError};

/// States waiting to be written, by message.
#[derive(Debug, Default)]
pub(super) struct Unrecorded {
    states: HashMap<QueueId, Envelope>,
}

impl Unrecorded {
    /// Writes `env`'s new state durably, or keeps it here if the store fails.
    pub(super) async fn record(&mut self, store: &Store, env: Envelope) {
        let id = env.id.clone();
        let kept = env.clone();
        match blocking(store, move |s| s.update(&env)).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {
                self.states.remove(&id);
            }
            Err(e) => {
                warn!(%id, error = %e, "queue: could not record a delivery attempt; the worker keeps its state in memory and writes it again later");
                self.states.insert(id, kept);
            }
        }
    }

    /// Tries again to write every kept state; those written (or whose message is gone)
    /// are dropped.
    pub(super) async fn flush(&mut self, store: &Store) {
        let ids: Vec<QueueId> = self.states.keys().cloned().collect();
        for id in ids {
            let Some(env) = self.states.get(&id).cloned() else {
                continue;
            };
            match blocking(store, move |s| s.update(&env)).await {
                Ok(()) => {
                    info!(%id, "queue: a delivery state kept in memory is on disk now");
                    self.states.remove(&id);
                }
                Err(StoreError::NotFound(_)) => {
                    self.states.remove(&id);
                }
                Err(_) => {}
            }
        }
    }

    /// `listed` (what the files say), with each kept state in place of its stale file;
    /// kept states of messages no longer listed are dropped.
    pub(super) fn overlay(&mut self, listed: Vec<Envelope>) -> Vec<Envelope> {
        let present: std::collections::HashSet<QueueId> =
            listed.iter().map(|e| e.id.clone()).collect();
        self.states.retain(|id, _| present.contains(id));
        let mut out: Vec<Envelope> = listed
            .into_iter()
            .map(|e| self.states.get(&e.id).cloned().unwrap_or(e))
            .collect();
        out.sort_by(|a, b| {
            a.next_attempt
                .cmp(&b.next_attempt)
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// An operator's request also applies to the kept states (the store applies it to the
    /// files, which the kept states override).
    pub(super) fn apply(&mut self, req: &Request, now: SystemTime) {
        match req {
            Request::Retry(id) => {
                if let Some(e) = self.states.get_mut(id) {
                    e.next_attempt = now;
                }
            }
            Request::RetryAll => self.states.values_mut().for_each(|e| e.next_attempt = now),
            Request::Delete(id) => {
                self.states.remove(id);
            }
        }
    }

    /// Keeps `env`'s state without trying to write it (it could not be removed).
    pub(super) fn keep(&mut self, env: Envelope) {
        self.states.insert(env.id.clone(), env);
    }

    /// The message left the queue.
    pub(super) fn forget(&mut self, id: &QueueId) {
        self.states.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::queue::store::{NewMessage, RcptState};

    fn env(store: &Store, at: u64) -> Envelope {
        let msg = NewMessage {
            account: "a".into(),
            sender: "a@qq.com".into(),
            null_sender: false,
            recipients: vec!["b@example.com".into(), "c@example.com".into()],
        };
        let mut w = store
            .begin(msg, UNIX_EPOCH + Duration::from_secs(at), None)
            .unwrap();
        w.write(b"x\r\n").unwrap();
        w.commit().unwrap()
    }

    #[tokio::test]
    async fn kept_states_override_stale_files_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("q"), None).unwrap();
        let (one, two, three) = (env(&store, 10), env(&store, 20), env(&store, 30));
        let mut kept = one.clone();
        kept.recipients[0].state = RcptState::Delivered;
        kept.next_attempt = UNIX_EPOCH + Duration::from_secs(40);
        let mut u = Unrecorded::default();
        u.keep(kept.clone());
        u.keep(three.clone()); // then removed from the queue
        let listed = vec![one.clone(), two.clone()];
        // (what is listed) -> (ids in order, first recipient of `one` delivered)
        let got = u.overlay(listed);
        let ids: Vec<&QueueId> = got.iter().map(|e| &e.id).collect();
        assert_eq!(ids, [&two.id, &one.id], "sorted by the kept next attempt");
        assert_eq!(got[1].recipients[0].state, RcptState::Delivered);
        assert!(
            !u.states.contains_key(&three.id),
            "gone from the queue: dropped"
        );

        let now = UNIX_EPOCH + Duration::from_secs(5);
        let cases = [
            (Request::Retry(one.id.clone()), Some(now)),
            (Request::RetryAll, Some(now)),
            (Request::Delete(one.id.clone()), None),
        ];
        for (req, want) in cases {
            u.keep(kept.clone());
            u.apply(&req, now);
            assert_eq!(
                u.states.get(&one.id).map(|e| e.next_attempt),
                want,
                "{req:?}"
            );
        }

        // Written once the store takes it: the file now holds the kept state.
        u.keep(kept.clone());
        u.flush(&store).await;
        assert!(u.states.is_empty());
        assert_eq!(store.get(&one.id).unwrap(), kept);
    }
}
