//! `qqmail-proxy queue list|show|retry|delete`: the operator's view of the
//! store-and-forward queue, modelled on Postfix's `postqueue -p` and `postsuper -d`.
//! `list` and `show` only read (safe while `serve` runs, and without it); `retry` and
//! `delete` never change a message themselves: they leave a request in `ctl/` that the
//! running server applies between deliveries (see `queue::store`), then wait a bounded
//! time for it to be taken. With no server running they say so: the request is applied
//! when `serve` starts, before any delivery.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;

use crate::config::Config;
use crate::queue::store::{QueueId, Request, Store, StoreError};

mod format;
pub(crate) mod json;

/// How long `retry` and `delete` wait for a running server to take their request: it
/// scans for requests every few seconds.
const WAIT: Duration = Duration::from_secs(10);
/// How often they look.
const POLL: Duration = Duration::from_millis(100);
/// At most this much of a body is read for its header block.
const HEADER_MAX: u64 = 1024 * 1024;

/// `queue` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages: ID, age, size, account, recipients, attempts, last error.
    List {
        /// Print one JSON array instead, one object per message: id, age_seconds, size,
        /// account, sender, null_sender, recipients (address, state = pending | delivered
        /// | failed, reply), attempts, next_attempt_in_seconds, last_error (class, text,
        /// or null), hint (or null), possibly_duplicated. An empty queue is [].
        #[arg(long)]
        json: bool,
    },
    /// Show one message's envelope and headers (the body only with --body).
    Show {
        /// The queue ID (from `queue list` or the `250 Ok: queued as ID` reply).
        id: String,
        /// Also print the body.
        #[arg(long)]
        body: bool,
    },
    /// Ask the running server to try a message (or every message) now.
    Retry {
        /// The queue ID.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every queued message.
        #[arg(long)]
        all: bool,
    },
    /// Ask the running server to remove a message without delivering it (no bounce).
    Delete {
        /// The queue ID.
        id: String,
    },
}

/// Runs one `queue` subcommand against `[queue] dir`.
pub fn run(config: &Config, cmd: QueueCommand) -> Result<()> {
    let dir = &config.queue.dir;
    match cmd {
        QueueCommand::List { json } => {
            let envs = match open(dir, true)? {
                Some(store) => store
                    .list()
                    .with_context(|| format!("reading the queue at {}", dir.display()))?,
                None => Vec::new(),
            };
            let render = if json { json::list } else { format::list };
            print!("{}", render(&envs, SystemTime::now()));
            Ok(())
        }
        QueueCommand::Show { id, body } => show(&need(dir)?, &parse_id(&id)?, body),
        QueueCommand::Retry { id, all } => {
            let req = match (id, all) {
                (_, true) => Request::RetryAll,
                (Some(id), false) => Request::Retry(parse_id(&id)?),
                (None, false) => bail!("name a message: `qqmail-proxy queue retry ID` or `--all`"),
            };
            ask(&need(dir)?, req)
        }
        QueueCommand::Delete { id } => ask(&need(dir)?, Request::Delete(parse_id(&id)?)),
    }
}

/// Opens the queue for reading; `None` when it was never created and `empty_ok`.
fn open(dir: &Path, empty_ok: bool) -> Result<Option<Store>> {
    match Store::open_existing(dir) {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::Missing { .. }) if empty_ok => Ok(None),
        Err(StoreError::Missing { .. }) => Err(anyhow!(
            "no queue at {}: it is created by `qqmail-proxy serve` with [smtp] delivery = \
             \"queue\" or \"fallback\"; check [queue] dir (or --config)",
            dir.display()
        )),
        Err(e) => Err(anyhow!(e).context(format!("opening the queue at {}", dir.display()))),
    }
}

fn need(dir: &Path) -> Result<Store> {
    open(dir, false)?.ok_or_else(|| anyhow!("no queue at {}", dir.display()))
}

pub(crate) fn parse_id(s: &str) -> Result<QueueId> {
    QueueId::parse(s.trim()).ok_or_else(|| {
        anyhow!(
            "{:?} is not a queue ID: IDs are 21 characters 0-9A-F, as `qqmail-proxy queue list` \
             shows them",
            crate::logging::escape(s)
        )
    })
}

fn not_found(store: &Store, id: &QueueId) -> anyhow::Error {
    anyhow!(
        "no message {id} in the queue at {}: it was delivered or deleted; see `qqmail-proxy queue list`",
        store.dir().display()
    )
}

fn show(store: &Store, id: &QueueId, body: bool) -> Result<()> {
    let env = match store.get(id) {
        Err(StoreError::NotFound(_)) => return Err(not_found(store, id)),
        other => other.with_context(|| format!("reading message {id}"))?,
    };
    print!("{}", format::envelope(&env, SystemTime::now()));
    let path = store.body_path(id);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut stored = Vec::new();
    if body {
        BufReader::new(file).read_to_end(&mut stored)
    } else {
        read_headers(BufReader::new(file).take(HEADER_MAX), &mut stored)
    }
    .with_context(|| format!("reading {}", path.display()))?;
    println!("\n-- headers --");
    let headers = format::message_text(&stored, true);
    print!("{headers}");
    if body {
        println!("\n-- body --");
        let all = format::message_text(&stored, false);
        // The body is what follows the header block and its empty line.
        let rest = all.get(headers.len()..).unwrap_or_default();
        print!("{}", rest.strip_prefix('\n').unwrap_or(rest));
    } else {
        println!("\n(body not shown: add --body)");
    }
    Ok(())
}

/// Reads lines into `out` up to and including the first empty one.
fn read_headers(mut r: impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        let start = out.len();
        if r.read_until(b'\n', out)? == 0 {
            return Ok(out.len());
        }
        if matches!(&out[start..], b"\r\n" | b"\n") {
            return Ok(out.len());
        }
    }
}

/// Leaves `req` for the server and waits (bounded) for it to be applied.
fn ask(store: &Store, req: Request) -> Result<()> {
    let target = match &req {
        Request::Retry(id) | Request::Delete(id) => Some(id.clone()),
        Request::RetryAll => None,
    };
    leave_request(store, &req)?;
    let deadline = Instant::now() + WAIT;
    let taken = wait_until(deadline, || Ok(!store.pending_requests()?.contains(&req)))?;
    // The server takes the file, then applies the request between deliveries.
    let applied = taken
        && match (&req, &target) {
            (Request::Delete(_), Some(id)) => wait_until(deadline, || {
                Ok(matches!(store.get(id), Err(StoreError::NotFound(_))))
            })?,
            _ => true,
        };
    let ctl = store.dir().join("ctl");
    if applied {
        println!("done");
    } else if taken {
        println!(
            "the running server took the request; it applies it once the delivery in progress \
             for that account ends"
        );
    } else {
        // The request file stays: a server applies it on its next scan, or at its start
        // before any delivery (so a message deleted now is never sent).
        println!(
            "no running qqmail-proxy serve took the request within {}s: nothing was changed \
             yet; the request is kept in {} and applied when serve runs (at its start if it \
             is stopped)",
            WAIT.as_secs(),
            ctl.display()
        );
    }
    Ok(())
}

/// Leaves `req` in `ctl/` for the server (the status page's retry and delete buttons
/// too); the server applies it on its next scan, between deliveries.
pub(crate) fn leave_request(store: &Store, req: &Request) -> Result<()> {
    match store.request(req) {
        Err(StoreError::NotFound(id)) => Err(not_found(store, &id)),
        other => other.with_context(|| format!("writing a request in {}", store.dir().display())),
    }
}

/// Polls `done` every [`POLL`] until it is true or `deadline` passes.
fn wait_until(
    deadline: Instant,
    mut done: impl FnMut() -> Result<bool, StoreError>,
) -> Result<bool> {
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}
