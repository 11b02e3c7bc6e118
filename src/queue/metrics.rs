//! The queue in the Prometheus text and `/healthz`: messages and bytes queued, the oldest
//! message's age, each account's delivery counters, and the accounts whose deliveries are
//! held because the upstream refused their code twice. Labels carry account ids only,
//! never addresses.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::deliver::Intake;

/// The queue's samples (Prometheus text format 0.0.4). Reads the envelopes: a scrape
/// costs one directory scan.
pub fn render(intake: &Intake, now: SystemTime) -> String {
    let mut out = String::new();
    let listed = intake.store.list();
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
