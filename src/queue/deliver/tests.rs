//! The deliverer against a scripted SMTP server over `tokio::io::duplex`, in paused
//! time: back-off, pacing and daily limits run instantly and exactly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::atomic::Ordering;

use tokio::io::DuplexStream;

use super::conversation::{send, Attempt, Ending, Timeouts};
use super::settle::settle;
use super::*;
use crate::net::LineStream;
use crate::queue::classify::{Class, Stage};
use crate::queue::schedule::{Plan, RATE_LIMIT_FLOOR};
use crate::queue::store::{Envelope, NewMessage, RcptState, Store};
use crate::upstream::UpstreamError;

const ACCOUNT: &str = "alice@qq.com";
const T: Timeouts = Timeouts {
    reply: Duration::from_secs(30),
    data: Duration::from_secs(600),
};
const BODY: &[u8] = b"From: alice@qq.com\r\nSubject: scan\r\n\r\n..stuffed line\r\nend\r\n";

/// What the fake server does for the next command.
#[derive(Debug, Clone)]
enum Act {
    /// Answer with these bytes.
    Say(&'static [u8]),
    /// Close the connection.
    Close,
    /// Say nothing (until the client gives up).
    Hang,
    /// Say 354, then close after the first line of the message.
    GoThenDrop,
}
use Act::*;

/// A scripted SMTP server: one action per command; after `354` it reads the message up
/// to the final dot and takes the next action for it. Records everything received.
async fn serve(io: DuplexStream, mut script: VecDeque<Act>, log: Arc<Mutex<Vec<u8>>>) {
    let mut conn = LineStream::new(io, 1 << 20);
    let mut in_data = false;
    loop {
        let Ok(line) = conn.read_line(Duration::from_secs(86400 * 3)).await else {
            return;
        };
        log.lock().unwrap().extend_from_slice(&line);
        if std::mem::take(&mut in_data) && &line[..] != b".\r\n" {
            in_data = true;
            continue;
        }
        let default = if line.starts_with(b"DATA") { GO } else { OK };
        match script.pop_front().unwrap_or(default) {
            GoThenDrop => {
                let _ = conn.send(b"354 go\r\n", T.reply).await;
                let _ = conn.read_line(T.reply).await;
                return;
            }
            Say(r) => {
                in_data = r.starts_with(b"354");
                if conn.send(r, T.reply).await.is_err() {
                    return;
                }
            }
            Close => return,
            Hang => {
                let _ = conn.read_line(Duration::from_secs(86400 * 3)).await;
                return;
            }
        }
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(&dir.path().join("q"), None).unwrap();
    (dir, store)
}

fn put(store: &Store, rcpts: &[&str], at: SystemTime, body: &[u8]) -> Envelope {
    let msg = NewMessage {
        account: ACCOUNT.into(),
        sender: ACCOUNT.into(),
        null_sender: false,
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
    };
    let mut w = store.begin(msg, at, None).unwrap();
    w.write(body).unwrap();
    w.commit().unwrap()
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Runs one conversation against `script`; returns the attempt and what the server got.
async fn converse(env: &Envelope, body: &[u8], script: &[Act]) -> (Attempt, Vec<u8>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(b, script.iter().cloned().collect(), log.clone()));
    let mut conn = LineStream::new(a, 1 << 16);
    let mut body = body;
    let attempt = send(&mut conn, env, &mut body, T).await;
    drop(conn);
    let _ = server.await;
    let got = log.lock().unwrap().clone();
    (attempt, got)
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

struct Case {
    name: &'static str,
    rcpts: &'static [&'static str],
    script: &'static [Act],
    corrupt_body: bool,
    ending: Ending,
    /// The plan's class (`Delivered` for done).
    class: Class,
    /// Recipient states after settling: 'D' delivered, 'F' failed, 'P' pending.
    states: &'static str,
    final_dot_sent: bool,
    possibly_duplicated: bool,
}

const OK: Act = Say(b"250 ok\r\n");
const GO: Act = Say(b"354 go ahead\r\n");
const NOT_FOUND: Act = Say(b"550 Mailbox not found or access denied\r\n");

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "all accepted",
            rcpts: &["b@x.cn", "c@x.cn"],
            script: &[OK, OK, OK, GO, OK],
            corrupt_body: false,
            ending: Ending::Delivered,
            class: Class::Delivered,
            states: "DD",
            final_dot_sent: true,
            possibly_duplicated: false,
        },
        Case {
            name: "partial RCPT: 4xx stays pending",
            rcpts: &["b@x.cn", "c@x.cn"],
            script: &[OK, OK, Say(b"450 try later\r\n"), GO, OK],
            corrupt_body: false,
            ending: Ending::Delivered,
            class: Class::Temporary,
            states: "DP",
            final_dot_sent: true,
            possibly_duplicated: false,
        },
        Case {
            name: "4xx at MAIL",
            rcpts: &["b@x.cn"],
            script: &[Say(b"451 local error\r\n"), OK],
            corrupt_body: false,
            ending: Ending::Refused {
                stage: Stage::Mail,
                code: 451,
                text: b"451 local error\r\n".to_vec(),
            },
            class: Class::Temporary,
            states: "P",
            final_dot_sent: false,
            possibly_duplicated: false,
        },
        Case {
            name: "QQ rate limit at MAIL",
            rcpts: &["b@x.cn"],
            script: &[Say(b"550 Ip frequency limited\r\n"), OK],
            corrupt_body: false,
            ending: Ending::Refused {
                stage: Stage::Mail,
                code: 550,
                text: b"550 Ip frequency limited\r\n".to_vec(),
            },
            class: Class::RateLimited,
            states: "P",
            final_dot_sent: false,
            possibly_duplicated: false,
        },
        Case {
            name: "550 at the only RCPT: no DATA",
            rcpts: &["b@x.cn"],
            script: &[OK, NOT_FOUND, OK],
            corrupt_body: false,
            ending: Ending::NoRecipient,
            class: Class::Delivered,
            states: "F",
            final_dot_sent: false,
            possibly_duplicated: false,
        },
        Case {
            name: "GBK 550 at RCPT is permanent",
            rcpts: &["b@x.cn", "c@x.cn"],
            script: &[
                OK,
                Say(b"550 \xd3\xc3\xbb\xa7\xb2\xbb\xb4\xe6\xd4\xda\r\n"),
                OK,
                GO,
                OK,
            ],
            corrupt_body: false,
            ending: Ending::Delivered,
            class: Class::Delivered,
            states: "FD",
            final_dot_sent: true,
            possibly_duplicated: false,
        },
        Case {
            name: "closed after DATA's 354 was asked",
            rcpts: &["b@x.cn"],
            script: &[OK, OK, Close],
            corrupt_body: false,
            ending: Ending::Dropped(Stage::Data),
            class: Class::Temporary,
            states: "P",
            final_dot_sent: false,
            possibly_duplicated: false,
        },
        Case {
            name: "no reply after the final dot",
            rcpts: &["b@x.cn"],
            script: &[OK, OK, GO, Hang],
            corrupt_body: false,
            ending: Ending::NoFinalReply,
            class: Class::Temporary,
            states: "P",
            final_dot_sent: true,
            possibly_duplicated: true,
        },
        Case {
            name: "554 after the final dot",
            rcpts: &["b@x.cn"],
            script: &[OK, OK, GO, Say(b"554 spam\r\n"), OK],
            corrupt_body: false,
            ending: Ending::Refused {
                stage: Stage::EndOfData,
                code: 554,
                text: b"554 spam\r\n".to_vec(),
            },
            class: Class::Delivered,
            states: "F",
            final_dot_sent: true,
            possibly_duplicated: false,
        },
        Case {
            name: "checksum mismatch: no final dot",
            rcpts: &["b@x.cn"],
            script: &[OK, OK, GO, OK],
            corrupt_body: true,
            ending: Ending::Corrupt(String::new()),
            class: Class::Delivered,
            states: "P",
            final_dot_sent: false,
            possibly_duplicated: false,
        },
    ]
}

#[tokio::test(start_paused = true)]
async fn conversation_table() {
    let (_dir, store) = store();
    for c in cases() {
        let mut env = put(&store, c.rcpts, t0(), BODY);
        let body: Vec<u8> = if c.corrupt_body {
            BODY.iter()
                .map(|b| if *b == b'x' { b'y' } else { *b })
                .chain(*b"x")
                .collect()
        } else {
            BODY.to_vec()
        };
        let (a, got) = converse(&env, &body, c.script).await;
        match (&a.ending, &c.ending) {
            (Ending::Corrupt(_), Ending::Corrupt(_)) => {}
            (got, want) => assert_eq!(got, want, "{}", c.name),
        }
        assert_eq!(
            has(&got, b"\r\n.\r\n"),
            c.final_dot_sent,
            "{}: final dot",
            c.name
        );
        if c.ending == Ending::NoRecipient {
            assert!(
                !has(&got, b"DATA\r\n") && has(&got, b"RSET\r\n"),
                "{}",
                c.name
            );
        }
        if c.final_dot_sent {
            assert!(has(&got, BODY), "{}: body sent byte for byte", c.name);
        }
        if matches!(a.ending, Ending::Corrupt(_)) {
            continue;
        }
        let s = settle(&mut env, &a, &Policy::default(), t0(), 0.0);
        let states: String = env
            .recipients
            .iter()
            .map(|r| match r.state {
                RcptState::Delivered => 'D',
                RcptState::Failed { .. } => 'F',
                RcptState::Pending => 'P',
            })
            .collect();
        assert_eq!(states, c.states, "{}", c.name);
        assert_eq!(s.class, c.class, "{}", c.name);
        assert_eq!(env.possibly_duplicated, c.possibly_duplicated, "{}", c.name);
        assert_eq!(s.possibly_duplicated, c.possibly_duplicated, "{}", c.name);
        match s.plan {
            Plan::Done => assert_eq!(c.class, Class::Delivered, "{}", c.name),
            Plan::RetryAt(at) if c.class == Class::RateLimited => {
                assert!(at >= t0() + RATE_LIMIT_FLOOR, "{}", c.name);
                assert!(s.account_wide, "{}", c.name);
            }
            Plan::RetryAt(at) => assert!(at > t0(), "{}", c.name),
            other => panic!("{}: {other:?}", c.name),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_sends_only_the_pending_recipients() {
    let (_dir, store) = store();
    let mut env = put(&store, &["b@x.cn", "c@x.cn"], t0(), BODY);
    let (a, _) = converse(&env, BODY, &[OK, OK, Say(b"451 later\r\n"), GO, OK]).await;
    settle(&mut env, &a, &Policy::default(), t0(), 0.0);
    let (a, got) = converse(&env, BODY, &[OK, OK, GO, OK]).await;
    assert_eq!(a.ending, Ending::Delivered);
    assert!(!has(&got, b"RCPT TO:<b@x.cn>"), "b was delivered already");
    assert!(has(&got, b"RCPT TO:<c@x.cn>"));
}

#[tokio::test(start_paused = true)]
async fn a_body_without_final_crlf_still_ends_with_a_dot_line() {
    let (_dir, store) = store();
    let env = put(&store, &["b@x.cn"], t0(), b"Subject: x\r\n\r\nno newline");
    let (a, got) = converse(&env, b"Subject: x\r\n\r\nno newline", &[OK, OK, GO, OK]).await;
    assert_eq!(a.ending, Ending::Delivered);
    assert!(got.ends_with(b"no newline\r\n.\r\n"));
}

#[tokio::test(start_paused = true)]
async fn a_drop_mid_data_is_retried_and_not_flagged() {
    let (_dir, store) = store();
    // Larger than the pipe: the writes fail once the server is gone, before the dot.
    let big: Vec<u8> = b"0123456789abcdef0123456789abcde\r\n".repeat(8192);
    let mut env = put(&store, &["b@x.cn"], t0(), &big);
    let (a, got) = converse(&env, &big, &[OK, OK, GoThenDrop]).await;
    assert_eq!(a.ending, Ending::Dropped(Stage::Data));
    assert!(!has(&got, b"\r\n.\r\n"));
    let s = settle(&mut env, &a, &Policy::default(), t0(), 0.0);
    assert!(matches!(s.plan, Plan::RetryAt(_)));
    assert!(!env.possibly_duplicated && !s.possibly_duplicated);
}

/// What the fake connector writes into the log at each login attempt.
const LOGIN: &[u8] = b"#LOGIN\r\n";

/// Logins in order: an error, or a session with its script; then sessions that take all.
struct Fake {
    logins: Mutex<VecDeque<Result<Vec<Act>, UpstreamError>>>,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Connector for Fake {
    type Stream = DuplexStream;
    async fn connect(&self, _: &str) -> Result<LineStream<DuplexStream>, UpstreamError> {
        // Every login attempt, failed or not, is counted in the log.
        self.log.lock().unwrap().extend_from_slice(LOGIN);
        let next = self
            .logins
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(Vec::new()));
        let script = next?;
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(b, script.into(), self.log.clone()));
        Ok(LineStream::new(a, 1 << 16))
    }
}

fn refused_code() -> UpstreamError {
    UpstreamError::Rejected {
        server: "smtp.qq.com:465".into(),
        email: ACCOUNT.into(),
        reply: b"535 Login Fail. Please enter your authorization code to login.\r\n".to_vec(),
    }
}

fn unreachable() -> UpstreamError {
    UpstreamError::Connect {
        server: "smtp.qq.com:465".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    }
}

/// Starts a deliverer over `logins`; returns it, its status and the server's log.
fn start(
    store: &Store,
    logins: Vec<Result<Vec<Act>, UpstreamError>>,
    settings: Settings,
) -> (Deliverer, Arc<AccountStatus>, Arc<Mutex<Vec<u8>>>) {
    start_at(store, logins, settings, t0())
}

/// As [`start`], with the deliverer's clock reading `base` now.
fn start_at(
    store: &Store,
    logins: Vec<Result<Vec<Act>, UpstreamError>>,
    settings: Settings,
    base: SystemTime,
) -> (Deliverer, Arc<AccountStatus>, Arc<Mutex<Vec<u8>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let fake = Arc::new(Fake {
        logins: Mutex::new(logins.into()),
        log: log.clone(),
    });
    let account = AccountRef {
        id: ACCOUNT.into(),
        email: ACCOUNT.into(),
    };
    let clock = Arc::new(TokioClock::starting_at(base));
    let d = Deliverer::start(store.clone(), &[account], fake, settings, clock);
    let status = d.status(ACCOUNT).unwrap();
    (d, status, log)
}

fn settings() -> Settings {
    Settings::new(Policy::default(), None, 0, "proxy.local")
}

/// Waits (in paused time) until the queue is empty, at most `limit`.
async fn drained(store: &Store, limit: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    while !store.list().unwrap().is_empty() {
        assert!(
            start.elapsed() < limit,
            "queue not drained after {limit:?}: {:?}",
            store.list().unwrap()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    start.elapsed()
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[tokio::test(start_paused = true)]
async fn upstream_down_then_up_delivers_once() {
    let (_dir, store) = store();
    put(&store, &["b@x.cn"], t0(), BODY);
    let (d, status, log) = start(
        &store,
        vec![Err(unreachable()), Err(unreachable())],
        settings(),
    );
    let took = drained(&store, Duration::from_secs(3600)).await;
    assert!(took >= Duration::from_secs(60), "backed off: {took:?}");
    d.shutdown(Duration::from_secs(5)).await;
    let got = log.lock().unwrap().clone();
    assert_eq!(count(&got, BODY), 1, "delivered exactly once");
    assert_eq!(status.delivered.load(Ordering::Relaxed), 1);
}

/// A backlog is worked through from one reading of the directory (reading every
/// envelope before each batch made n queued messages cost n²/batch_max reads), and each
/// batch's removals share one fsync of `msg/` (one per message bounded the rate).
#[tokio::test(start_paused = true)]
async fn a_backlog_is_read_once_and_synced_once_per_batch() {
    let (_dir, store) = store();
    let n = 4 * settings().batch_max as u64;
    for _ in 0..n {
        put(&store, &["b@x.cn"], t0(), BODY);
    }
    let syncs = store.msg_syncs();
    let (d, status, log) = start(&store, Vec::new(), settings());
    let mut waited = 0;
    while status.delivered.load(Ordering::Relaxed) < n {
        assert!(waited < 600, "not delivered in 10 min");
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += 1;
    }
    // One reading for the backlog; a second may have started since, finding it empty.
    let reads = store.lists();
    d.shutdown(Duration::from_secs(5)).await;
    assert!(
        reads <= 2,
        "{reads} readings of the directory for 4 batches"
    );
    // The removals: one fsync of msg/ per batch, not one per message.
    let synced = store.msg_syncs() - syncs;
    assert!(synced <= 4, "{synced} fsyncs of msg/ for 4 batches");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&log.lock().unwrap(), BODY), n as usize, "each once");
}

#[tokio::test(start_paused = true)]
async fn mailbox_not_found_bounces_to_the_account() {
    let (_dir, store) = store();
    let env = put(&store, &["nobody@x.cn"], t0(), BODY);
    let (d, status, log) = start(&store, vec![Ok(vec![OK, NOT_FOUND, OK])], settings());
    drained(&store, Duration::from_secs(600)).await;
    d.shutdown(Duration::from_secs(5)).await;
    let got = log.lock().unwrap().clone();
    assert_eq!(status.bounced.load(Ordering::Relaxed), 1);
    assert!(
        has(&got, format!("RCPT TO:<{ACCOUNT}>").as_bytes()),
        "the DSN goes to the account"
    );
    assert!(has(&got, b"multipart/report") && has(&got, env.id.as_str().as_bytes()));
    assert!(has(&got, b"Mailbox not found"));
}

#[tokio::test(start_paused = true)]
async fn rate_spaces_messages() {
    let (_dir, store) = store();
    for _ in 0..3 {
        put(&store, &["b@x.cn"], t0(), BODY);
    }
    let mut s = settings();
    s.rate = crate::queue::schedule::Rate::parse("2/min").unwrap();
    let (d, _, _) = start(&store, vec![], s);
    let took = drained(&store, Duration::from_secs(600)).await;
    assert!(
        took >= Duration::from_secs(60),
        "3 messages at 2/min take a minute: {took:?}"
    );
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn max_age_bounces() {
    let (_dir, store) = store();
    let old = t0() - Duration::from_secs(5 * 86400 + 1);
    put(&store, &["b@x.cn"], old, BODY);
    let (d, status, log) = start(&store, vec![], settings());
    drained(&store, Duration::from_secs(600)).await;
    d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(status.bounced.load(Ordering::Relaxed), 1);
    let got = log.lock().unwrap().clone();
    assert!(
        !has(&got, b"RCPT TO:<b@x.cn>"),
        "an expired message is not sent"
    );
    assert!(has(&got, format!("RCPT TO:<{ACCOUNT}>").as_bytes()));
}

mod daily;
mod hold;
