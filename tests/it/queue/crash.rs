//! "Test it by killing the process, not by reasoning" (issue 12). This test re-runs its
//! own binary as a child that commits messages in a loop (some updated, some removed) and
//! prints each acknowledged ID and checksum the moment `commit` returns; the parent kills
//! it with SIGKILL at random moments, restarts it on the same queue, and finally checks
//! that every acknowledged message is there, byte for byte, and nothing is corrupt.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qqmail_proxy::queue::store::{QueueId, RcptState, Store};
use rand::Rng;

use super::{new_message, read_body, sha256_hex};

/// Set (to the queue directory) in the child.
const CHILD: &str = "QQMAIL_TEST_QUEUE_CRASH_CHILD";
/// This test's full name, for `--exact`.
const NAME: &str = "queue::crash::acknowledged_messages_survive_sigkill";
/// How many times the child is killed.
const KILLS: usize = 6;
/// The child stops by itself after this, should the parent be gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

#[test]
fn acknowledged_messages_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let mut rng = rand::thread_rng();
    // id -> (sha256, state): acknowledged messages and what happened to them since.
    let mut acked: HashMap<String, (String, Removal)> = HashMap::new();
    let started = Instant::now();
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, &queue)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a random number of acknowledgements, plus a random instant.
        let kill_after = rng.gen_range(1..40);
        let mut seen = 0;
        for line in lines.by_ref() {
            if record(&mut acked, &line.unwrap()) {
                seen += 1;
                if seen >= kill_after {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..20_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever the child printed before it died was acknowledged.
        for line in lines.map_while(Result::ok) {
            record(&mut acked, &line);
        }
        assert!(seen > 0, "round {round}: the child acknowledged nothing");
    }

    let (store, rec) = Store::open(&queue, None).unwrap();
    // Also what the child's own restarts found: nothing may ever be corrupt after a kill.
    let corrupt = std::fs::read_dir(queue.join("corrupt")).unwrap().count();
    assert_eq!(
        (rec.quarantined, corrupt),
        (0, 0),
        "a kill left a damaged message"
    );
    let present: HashMap<String, _> = rec.messages.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut kept = 0;
    for (id, (sha, removal)) in &acked {
        match (present.get(id), removal) {
            (Some(env), Removal::None | Removal::Started) => {
                assert_eq!(&sha256_hex(&read_body(&store, env)), sha, "{id} changed");
                kept += 1;
            }
            (None, Removal::Started | Removal::Done) => {}
            (Some(_), Removal::Done) => panic!("{id} came back after its removal"),
            (None, Removal::None) => panic!("acknowledged message {id} lost"),
        }
    }
    for env in &rec.messages {
        read_body(&store, env); // acknowledged or not, nothing in the queue is damaged
    }
    let leftovers = std::fs::read_dir(queue.join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "temporary files cleaned at start");
    let files = std::fs::read_dir(queue.join("msg")).unwrap().count();
    assert_eq!(files, 2 * rec.messages.len(), "no orphan body left");
    eprintln!(
        "crash test: {KILLS} kills, {} acknowledged, {kept} kept, {} removed, {} orphans cleaned, {:?}",
        acked.len(),
        acked.len() - kept,
        rec.orphans_removed,
        started.elapsed()
    );
}

/// What the child said it did to a message after acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    None,
    Started,
    Done,
}

/// Takes one line of the child's output; true for an acknowledgement.
fn record(acked: &mut HashMap<String, (String, Removal)>, line: &str) -> bool {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("ACK"), Some(id), Some(sha)) => {
            acked.insert(id.to_string(), (sha.to_string(), Removal::None));
            true
        }
        (Some("DEL-START"), Some(id), None) => {
            if let Some(m) = acked.get_mut(id) {
                m.1 = Removal::Started;
            }
            false
        }
        (Some("DEL-DONE"), Some(id), None) => {
            if let Some(m) = acked.get_mut(id) {
                m.1 = Removal::Done;
            }
            false
        }
        _ => false,
    }
}

/// The child: opens the queue as the server does at start, then commits messages of
/// random sizes in random chunks, marks a recipient delivered on every third, and removes
/// every fifth, reporting each step on stdout right after it returned.
fn child(dir: &Path) {
    let (store, rec) = Store::open(dir, None).unwrap();
    let mut rng = rand::thread_rng();
    let mut out = std::io::stdout().lock();
    let mut ids: Vec<QueueId> = rec.messages.into_iter().map(|e| e.id).collect();
    let deadline = Instant::now() + CHILD_LIFETIME;
    for n in 0u64.. {
        if Instant::now() > deadline {
            return;
        }
        let len = if n % 4 == 0 {
            rng.gen_range(0..300_000)
        } else {
            rng.gen_range(0..4000)
        };
        let mut body = vec![0u8; len];
        rng.fill(&mut body[..]);
        let mut w = store
            .begin(new_message(), std::time::SystemTime::now(), None)
            .unwrap();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rng.gen_range(1..=rest.len().min(70_000)));
            w.write(chunk).unwrap();
            rest = tail;
        }
        let mut env = w.commit().unwrap();
        writeln!(out, "ACK {} {}", env.id, sha256_hex(&body)).unwrap();
        out.flush().unwrap();
        if n % 3 == 0 {
            env.recipients[0].state = RcptState::Delivered;
            env.attempts += 1;
            store.update(&env).unwrap();
        }
        ids.push(env.id);
        if n % 5 == 4 {
            let victim = ids.remove(rng.gen_range(0..ids.len()));
            writeln!(out, "DEL-START {victim}").unwrap();
            out.flush().unwrap();
            store.remove(&victim).unwrap();
            writeln!(out, "DEL-DONE {victim}").unwrap();
            out.flush().unwrap();
        }
    }
}
