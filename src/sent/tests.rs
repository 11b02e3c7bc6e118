//! The Copier's bounds, the retry table, and the metric.

use super::*;

#[test]
fn the_backlog_is_bounded_and_freed() {
    let copier = Copier::default();
    let slots: Vec<Slot> = (0..MAX_BACKLOG)
        .map(|_| copier.reserve().expect("room"))
        .collect();
    assert!(
        copier.reserve().is_none(),
        "past MAX_BACKLOG a copy is dropped"
    );
    drop(slots);
    assert!(
        copier.reserve().is_some(),
        "finished copies give their place back"
    );
    // Clones share the bound (the runtimes across a reload).
    let other = copier.clone();
    let held: Vec<Slot> = (0..MAX_BACKLOG - 1)
        .map(|_| other.reserve().expect("room"))
        .collect();
    let last = copier.reserve();
    assert!(last.is_some());
    assert!(other.reserve().is_none(), "one bound for both");
    drop((held, last));
}

#[test]
fn what_is_retried() {
    let up = |e| SentError::Upstream(e);
    let server = || "imap.qq.com:993".to_string();
    let cases = [
        (
            up(UpstreamError::Connect {
                server: server(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            }),
            true,
        ),
        (
            up(UpstreamError::TempFail {
                server: server(),
                email: "a@qq.com".into(),
                reply: b"a1 NO [UNAVAILABLE]".to_vec(),
            }),
            true,
        ),
        // QQ's 535 has been seen with a valid code (FACTS.md): worth another try.
        (
            up(UpstreamError::Rejected {
                server: server(),
                email: "a@qq.com".into(),
                reply: b"a1 NO Login fail".to_vec(),
            }),
            true,
        ),
        (up(UpstreamError::NotConfigured("imap")), false),
        (
            SentError::NoFolder {
                server: server(),
                preset: "Sent Messages",
            },
            false,
        ),
        (
            SentError::Refused {
                server: server(),
                folder: "Sent".into(),
                reply: "b3 NO [OVERQUOTA]".into(),
            },
            false,
        ),
        (
            SentError::File {
                path: "x".into(),
                source: std::io::ErrorKind::NotFound.into(),
            },
            false,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(e.retryable(), want, "{e}");
        assert!(!e.hint().is_empty());
    }
}

#[test]
fn the_metric_counts_saved_and_failed() {
    let m = Metrics::default();
    m.sent_copy(true);
    m.sent_copy(false);
    m.sent_copy(false);
    let text = m.render();
    assert!(
        text.contains("# TYPE qqmail_proxy_sent_copies_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("qqmail_proxy_sent_copies_total{result=\"saved\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("qqmail_proxy_sent_copies_total{result=\"failed\"} 2\n"),
        "{text}"
    );
}
