//! Slowloris: hundreds of SMTP connections that say nothing (or one byte every 500 ms)
//! are all closed soon after `pre_auth_timeout`, while a client from another address
//! still gets its greeting at once and sends a mail.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

const PRE_AUTH: Duration = Duration::from_secs(2);
/// Connections that send a byte every 500 ms (opened first, so they are served).
const DRIBBLERS: usize = 10;
const BUSY: &str = "421 4.7.0 Too many connections, try again later";

/// What one idle connection saw.
#[derive(Debug)]
struct Seen {
    /// Its first line: the greeting or a refusal.
    first: String,
    /// Everything after the first line, up to EOF.
    rest: String,
    /// Connect to EOF, if EOF came within the limit.
    closed_after: Option<Duration>,
}

/// The open-file limit of this process (a child shell inherits it).
fn fd_soft_limit() -> usize {
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -n"])
        .output()
        .expect("sh");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or(usize::MAX) // "unlimited"
}

/// Longest wait for the proxy to close an idle connection.
const EOF_LIMIT: Duration = Duration::from_secs(15);

/// Sends one byte every 500 ms until the connection fails.
async fn dribble(mut writer: OwnedWriteHalf) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if writer.write_all(b"N").await.is_err() {
            return;
        }
    }
}

/// Opens one connection that never completes a command (`dribbling` sends one byte every
/// 500 ms). Reports its first line on `first_tx`, then waits for the proxy to close it.
async fn idle(addr: SocketAddr, dribbling: bool, first_tx: mpsc::Sender<()>) -> Seen {
    let start = Instant::now();
    let Client { mut reader, writer } = Client::connect(addr, None).await.expect("connect");
    let mut first = Vec::new();
    let _ = reader.read_until(b'\n', &mut first).await;
    let _ = first_tx.send(()).await;
    let _writer = if dribbling {
        tokio::spawn(dribble(writer));
        None
    } else {
        Some(writer)
    };
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(EOF_LIMIT, reader.read_to_end(&mut rest)).await;
    Seen {
        first: String::from_utf8_lossy(&first).into_owned(),
        rest: String::from_utf8_lossy(&rest).into_owned(),
        closed_after: eof.is_ok().then(|| start.elapsed()),
    }
}

/// Runs the flood against a proxy with `limits` and checks what every connection saw.
async fn flood(limits: &[(&str, &str)], want_all_served: bool) {
    let wanted = 500;
    let soft = fd_soft_limit();
    // This process holds one descriptor per connection, the proxy one more per session;
    // each has the same soft limit. Keep 200 for everything else.
    let n = wanted.min(soft.saturating_sub(200));
    if n < wanted {
        println!("open-file soft limit {soft}: flooding with {n} connections instead of {wanted}");
    }
    let ca = TestCa::new("slowloris CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let mut builder = smtp_builder(&ca, &smtp).limit("pre_auth_timeout", "\"2s\"");
    for (k, v) in limits {
        builder = builder.limit(k, v);
    }
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    let started = Instant::now();

    // The dribblers first, so that they are among the sessions served; then the rest in
    // waves of 100. The proxy listens with the standard backlog of 128 (std/mio): a
    // burst of 500 connects at once overflows its accept queue and the kernel drops
    // SYNs, which clients retry after 1 s, 3 s, 7 s... (seen: 15 s under load).
    let (first_tx, mut first_rx) = mpsc::channel(n);
    let mut tasks = Vec::with_capacity(n);
    let mut waves = vec![DRIBBLERS.min(n)];
    while waves.iter().sum::<usize>() < n {
        waves.push(100.min(n - waves.iter().sum::<usize>()));
    }
    for wave in waves {
        for _ in 0..wave {
            let dribbling = tasks.len() < DRIBBLERS;
            tasks.push(tokio::spawn(idle(addr, dribbling, first_tx.clone())));
        }
        for _ in 0..wave {
            let first = tokio::time::timeout(EOF_LIMIT, first_rx.recv()).await;
            assert!(
                matches!(first, Ok(Some(()))),
                "a connection got no first line within {:?}",
                started.elapsed()
            );
        }
    }
    let flooded = started.elapsed();

    // Meanwhile, a client from another address is greeted at once and sends a mail.
    let t = Instant::now();
    let mut other = Client::connect(addr, Some(OTHER_IP))
        .await
        .expect("connect");
    let greeting = other.smtp_reply().await.text();
    let greeted = t.elapsed();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(
        greeted < Duration::from_secs(1),
        "greeting took {greeted:?}"
    );
    other.cmd("EHLO other.test").await.text();
    let auth = other
        .cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
        .await;
    assert!(auth.text().starts_with("235 "));
    let sent = send_message(&mut other, b"Subject: during the flood\r\n\r\nok\r\n").await;
    assert!(sent.text().starts_with("250 "));
    assert_eq!(other.cmd("QUIT").await.text(), "221 2.0.0 Bye\r\n");
    let mailed = started.elapsed();
    smtp.wait_messages(1, REPLY_WAIT).await;

    let mut seen = Vec::with_capacity(n);
    for t in tasks {
        seen.push(t.await.expect("idle task"));
    }
    let served: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.first.starts_with("220 "))
        .collect();
    let refused = seen.iter().filter(|s| s.first.starts_with(BUSY)).count();
    let latest = served.iter().filter_map(|s| s.closed_after).max();
    println!(
        "{n} idle connections: {} served, {refused} refused; all had a first line after \
         {flooded:?}; other address mailed by {mailed:?}; last served one closed after {latest:?}",
        served.len()
    );
    assert_eq!(
        served.len() + refused,
        n,
        "every connection was greeted or refused"
    );
    if want_all_served {
        assert_eq!(served.len(), n);
    } else {
        // The per-address limit (32) refuses most; a few more may be served if earlier
        // ones were already timed out.
        assert!(
            served.len() >= 32 && refused >= n * 4 / 5,
            "{} served",
            served.len()
        );
    }
    for s in &served {
        let closed = s.closed_after.expect("the proxy closed the connection");
        assert!(
            closed >= PRE_AUTH - Duration::from_millis(100)
                && closed < PRE_AUTH + Duration::from_secs(4),
            "closed after {closed:?}"
        );
        assert!(
            s.rest.contains("421 4.4.2"),
            "timeout reply, got {:?}",
            s.rest
        );
        // The mail from the other address went through while this one was still open.
        assert!(
            closed > mailed,
            "closed after {closed:?}, mail sent by {mailed:?}"
        );
    }
    proxy.assert_no_secret(&secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_with_default_limits() {
    flood(&[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_with_raised_limits() {
    flood(
        &[("max_sessions_per_ip", "1000"), ("max_sessions", "4000")],
        true,
    )
    .await;
}
