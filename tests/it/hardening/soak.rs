//! Soak: 50 concurrent SMTP clients send distinct messages through the proxy while the
//! upstream resets connections at random. Every message the client saw accepted (250)
//! is at the upstream exactly once and byte for byte; every other one got a 4xx/5xx
//! reply; nothing hangs, nothing is lost silently.

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::{Fault, SmtpOptions};

const CLIENTS: usize = 50;
/// An upstream reset at about one command boundary in this many (about 8 % of messages).
const DROP_ONE_IN: u32 = 50;
/// AUTH attempts per connection before a client gives up on its current message.
const AUTH_TRIES: usize = 10;

/// What became of one message, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Accepted,
    /// The 4xx/5xx reply that refused it.
    Refused(String),
}

/// A distinct message (dot-stuffed already: one line starts with "..").
fn message(id: usize) -> Vec<u8> {
    let mut m = format!(
        "Message-ID: <soak-{id}@hardening.test>\r\nSubject: soak {id}\r\n\r\nbody of {id}\r\n"
    );
    for line in 0..id % 7 {
        m.push_str(&format!("..line {line} of message {id}\r\n"));
    }
    m.into_bytes()
}

/// The id in a recorded message's Message-ID.
fn id_of(data: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(data);
    let rest = text.strip_prefix("Message-ID: <soak-")?;
    rest.split('@').next()?.parse().ok()
}

/// Connects and logs in, retrying AUTH while the upstream login fails with 454; returns
/// the client, or the last refusal.
async fn login(addr: SocketAddr) -> Result<Client, String> {
    let (mut c, mut auth) = smtp_login(addr, None, USER, PASSWORD).await;
    for _ in 1..AUTH_TRIES {
        match &auth {
            Got::Reply(r) if r.starts_with("235 ") => return Ok(c),
            Got::Reply(r) if r.starts_with("454 ") => {}
            other => panic!("unexpected AUTH answer {other:?}"),
        }
        auth = c
            .cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))
            .await;
    }
    match auth {
        Got::Reply(r) if r.starts_with("235 ") => Ok(c),
        Got::Reply(r) => Err(r),
        Got::Closed(p) => panic!("closed during AUTH: {p:?}"),
    }
}

/// One client: sends `ids` in order on one connection, reconnecting when the proxy
/// closes it.
async fn client(addr: SocketAddr, ids: Vec<usize>) -> Vec<(usize, Fate)> {
    let mut conn: Option<Client> = None;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if conn.is_none() {
            match login(addr).await {
                Ok(c) => conn = Some(c),
                Err(refusal) => {
                    out.push((id, Fate::Refused(refusal)));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let fate = match send_message(c, &message(id)).await {
            Got::Reply(r) if r.starts_with("250 ") => Fate::Accepted,
            Got::Reply(r) if r.starts_with('4') || r.starts_with('5') => {
                if r.starts_with("421") {
                    conn = None;
                }
                Fate::Refused(r)
            }
            Got::Reply(r) => panic!("message {id}: unexpected reply {r:?}"),
            Got::Closed(p) => panic!("message {id}: connection closed without a reply ({p:?})"),
        };
        out.push((id, fate));
    }
    if let Some(mut c) = conn {
        let _ = c.cmd("QUIT").await;
    }
    out
}

async fn soak(total: usize) {
    let ca = TestCa::new("soak CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca).fault(Fault::RandomDrop {
        one_in: DROP_ONE_IN,
    }));
    let builder = smtp_builder(&ca, &smtp).limit("max_sessions_per_ip", "100");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let ids: Vec<usize> = (k..total).step_by(CLIENTS).collect();
            tokio::spawn(client(addr, ids))
        })
        .collect();
    let mut fates = HashMap::new();
    for t in tasks {
        for (id, fate) in t.await.expect("client task") {
            assert!(fates.insert(id, fate).is_none(), "message {id} sent twice");
        }
    }
    let took = started.elapsed();
    assert_eq!(fates.len(), total, "every message has a fate");
    let accepted: Vec<usize> = (0..total)
        .filter(|id| fates[id] == Fate::Accepted)
        .collect();
    let mut refusals: HashMap<String, usize> = HashMap::new();
    for fate in fates.values() {
        if let Fate::Refused(r) = fate {
            let code = r.trim_end().to_owned();
            *refusals.entry(code).or_default() += 1;
        }
    }
    // The upstream recorded a message before its 250, and the proxy said 250 only after
    // the upstream's: by now every accepted message is there.
    let got = smtp.messages();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for m in &got {
        let id = id_of(&m.data).expect("a soak message");
        *seen.entry(id).or_default() += 1;
        let want = message(id);
        assert_eq!(m.data, &want[..want.len() - 2], "message {id} altered");
    }
    println!(
        "soak: {total} messages from {CLIENTS} clients in {took:?}: {} accepted, {} refused \
         {refusals:?}; upstream holds {}, {} upstream connections",
        accepted.len(),
        total - accepted.len(),
        got.len(),
        smtp.connections()
    );
    for id in &accepted {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "accepted message {id} at the upstream"
        );
    }
    assert_eq!(
        got.len(),
        accepted.len(),
        "only accepted messages reach the upstream"
    );
    assert!(
        accepted.len() > total / 2,
        "too few accepted to mean anything"
    );
    assert!(accepted.len() < total, "the fault never struck");
    proxy.assert_no_secret(&secrets());
}

/// The full soak: about 8 s on 2 shared cores, trace logging on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_2000_messages_with_random_upstream_drops() {
    soak(2000).await;
}
