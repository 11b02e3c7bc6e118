//! The queue in the Prometheus text and `/healthz`: messages and bytes queued, the oldest
//! message's age, each account's delivery counters, and the accounts whose deliveries are
//! held because the upstream refused their code twice. Labels carry account ids only,
//! never addresses.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::deliver::Intake;
use super::store::StoreError;

/// The queue's samples (Prometheus text format 0.0.4). Reads the envelopes: a scrape
/// costs one directory scan, run on tokio's blocking pool (a listing of a large queue,
/// or of a slow disk, must not stall the async threads that serve mail).
pub async fn render(intake: &Intake, now: SystemTime) -> String {
    let mut out = String::new();
    let store = intake.store.clone();
    let listed = match tokio::task::spawn_blocking(move || store.list()).await {
        Ok(listed) => listed,
        Err(e) => Err(StoreError::io(
            "list",
            intake.store.dir(),
            std::io::Error::other(e.to_string()),
        )),
    };
    let (count, oldest) = match &listed {
        Ok(all) => (
            all.len(),
            all.iter()
                .filter_map(|e| now.duration_since(e.queued_at).ok())
                .max()
                .map_or(0, |d| d.as_secs()),
        ),
        Err(_) => (0, 0),
    };
    let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP qqmail_proxy_queue_{name} {help}");
        let _ = writeln!(out, "# TYPE qqmail_proxy_queue_{name} gauge");
        let _ = writeln!(out, "qqmail_proxy_queue_{name} {value}");
    };
    gauge(&mut out, "messages", "Messages in the queue.", count as u64);
    gauge(
        &mut out,
        "bytes",
        "Bytes of message bodies in the queue.",
        intake.store.used_bytes(),
    );
    gauge(
        &mut out,
        "oldest_age_seconds",
        "Age of the oldest queued message.",
        oldest,
    );
    gauge(
        &mut out,
        "readable",
        "1 when the queue directory could be listed.",
        u64::from(listed.is_ok()),
    );
    let statuses = intake.waker.statuses();
    let _ = writeln!(
        out,
        "# HELP qqmail_proxy_queue_deliveries_total Queued messages by what became of an attempt."
    );
    let _ = writeln!(out, "# TYPE qqmail_proxy_queue_deliveries_total counter");
    for (id, s) in &statuses {
        for (result, n) in [
            ("delivered", &s.delivered),
            ("deferred", &s.deferred),
            ("bounced", &s.bounced),
            ("possibly_duplicated", &s.possibly_duplicated),
            ("corrupt", &s.corrupt),
        ] {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "qqmail_proxy_queue_deliveries_total{{account=\"{id}\",result=\"{result}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP qqmail_proxy_queue_account_held 1 while the upstream refuses the account's code: its deliveries wait."
    );
    let _ = writeln!(out, "# TYPE qqmail_proxy_queue_account_held gauge");
    for (id, s) in &statuses {
        let held = u8::from(s.failing().is_some());
        let _ = writeln!(
            out,
            "qqmail_proxy_queue_account_held{{account=\"{id}\"}} {held}"
        );
    }
    out
}

/// For `/healthz`: each held account with what its owner must do.
pub fn held_accounts(intake: &Intake) -> Vec<String> {
    intake
        .waker
        .statuses()
        .into_iter()
        .filter_map(|(id, s)| {
            s.failing()
                .map(|hint| format!("queue account {id}: {hint}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use tokio::io::DuplexStream;

    use super::*;
    use crate::net::LineStream;
    use crate::queue::deliver::{Connector, Deliverer, Settings, SystemClock};
    use crate::queue::schedule::Policy;
    use crate::queue::store::{QueueId, Store};
    use crate::upstream::UpstreamError;

    struct NoUpstream;

    impl Connector for NoUpstream {
        type Stream = DuplexStream;
        async fn connect(&self, _: &str) -> Result<LineStream<DuplexStream>, UpstreamError> {
            Err(UpstreamError::NotConfigured("smtp"))
        }
    }

    /// A scrape whose directory listing hangs (an envelope that is a FIFO reads like a
    /// disk that does not answer) leaves the runtime's only thread free: a ticker task
    /// keeps running, and only its ticks release the listing.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hanging_listing_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("q"), None).unwrap();
        let id = QueueId::generate(SystemTime::now());
        let fifo = dir.path().join(format!("q/msg/{}.env", id.as_str()));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let settings = Settings::new(Policy::default(), None, 0, "proxy.local");
        let d = Deliverer::start(
            store,
            &[],
            Arc::new(NoUpstream),
            settings,
            Arc::new(SystemClock),
        );
        let ticks = Arc::new(AtomicUsize::new(0));
        let (ticked, wait_ticks) = mpsc::channel::<()>();
        let counter = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if counter.fetch_add(1, Ordering::Relaxed) == 5 {
                    let _ = ticked.send(());
                }
            }
        });
        // Releases the listing once the ticker ran (or, if it never does, after a while,
        // so that a stalled runtime fails the test instead of hanging it).
        let release = std::thread::spawn(move || {
            let ran = wait_ticks.recv_timeout(Duration::from_secs(5)).is_ok();
            drop(std::fs::OpenOptions::new().write(true).open(&fifo));
            ran
        });
        let text = render(&d.intake(), SystemTime::now()).await;
        assert!(
            release.join().unwrap(),
            "the runtime stalled during the listing"
        );
        assert!(text.contains("qqmail_proxy_queue_readable 1"), "{text}");
        d.shutdown(Duration::from_secs(5)).await;
    }
}
