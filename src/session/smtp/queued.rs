//! `delivery = "queue"` in the SMTP session (issue 12): MAIL and RCPT are answered
//! locally (syntax and limits only: there is no upstream to ask), DATA streams through
//! the relay's own loop (`data::stream_message`: smuggling refusal, From rewrite) into a
//! queue [`Writer`], and the client gets `250 2.0.0 Ok: queued as ID` only once the
//! message is durable. Any store fault is `452 4.3.1`, never 250.

use tracing::warn;

use super::data::{Sink, Spool, Streamed};
use super::{Relay, Tx};
use crate::config::RewriteSender;
use crate::net::show;
use crate::queue::deliver::Intake;
use crate::queue::store::{NewMessage, StoreError, Writer};

/// The reply to any store fault (disk full, read-only, over `max_size`): RFC 3463's
/// "mail system full", temporary, so the client keeps the message and tries again.
pub(super) const STORE_FAULT: &str =
    "452 4.3.1 Insufficient system storage: message not queued, try again later\r\n";

/// Most recipients of one queued message: RFC 5321 §4.5.3.1.8's minimum buffer.
const MAX_RECIPIENTS: usize = 100;

/// A queue-mode transaction's envelope, built locally.
#[derive(Default)]
pub(super) struct Envelope {
    /// `MAIL FROM` as it will be sent upstream (after the rewrite).
    sender: String,
    /// The client said `MAIL FROM:<>`.
    null_sender: bool,
    /// Accepted recipients, in order.
    recipients: Vec<String>,
}

/// The session's queue mode: the intake (`None` if the deliverer is not running, then
/// every MAIL gets 452) and the current envelope.
pub(super) struct Queued {
    intake: Option<Intake>,
    env: Envelope,
}

impl Queued {
    /// Queue mode over the running deliverer's intake, if any.
    pub(super) fn new(intake: Option<Intake>) -> Queued {
        Queued {
            intake,
            env: Envelope::default(),
        }
    }

    /// Queue mode taking over a transaction the upstream had begun to accept (fallback
    /// after a temporary refusal): `sender` as sent upstream, and the recipients the
    /// upstream accepted so far.
    pub(super) fn carrying(
        intake: Intake,
        sender: String,
        null_sender: bool,
        recipients: Vec<String>,
    ) -> Queued {
        Queued {
            intake: Some(intake),
            env: Envelope {
                sender,
                null_sender,
                recipients,
            },
        }
    }
}

/// The address inside `<...>` of a MAIL or RCPT argument; `None` without brackets.
pub(super) fn address(arg: &[u8]) -> Option<&[u8]> {
    let arg = arg.strip_prefix(b"<")?;
    let end = arg.iter().position(|&b| b == b'>')?;
    Some(&arg[..end])
}

/// `SIZE=n` among MAIL parameters (RFC 1870).
fn size_param(params: &[u8]) -> Option<u64> {
    params
        .split(|b| b.is_ascii_whitespace())
        .find_map(|p| {
            let (k, v) = p.split_at(p.iter().position(|&b| b == b'=')?);
            k.eq_ignore_ascii_case(b"SIZE").then(|| &v[1..])
        })
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
}

impl Relay<'_> {
    /// MAIL in queue mode: the sender is rewritten as the relay would; `SIZE=` is
    /// checked against the queue's room.
    pub(super) async fn queued_mail(&mut self, path: &[u8], params: &[u8]) -> bool {
        let email = self.account.email.clone();
        let rewrite = self.rt.config.smtp.as_ref().map(|s| s.rewrite_sender);
        let sender = match rewrite {
            Some(RewriteSender::Off) => String::from_utf8_lossy(path).into_owned(),
            _ => email,
        };
        let shown = show(sender.as_bytes());
        let Some(q) = self.mode.queue() else {
            return false;
        };
        let room = match &q.intake {
            None => Err(None),
            Some(i) => i
                .store
                .check_room(size_param(params).unwrap_or(0))
                .map_err(Some),
        };
        if let Err(e) = room {
            let e = e.map_or("the queue is not running".to_string(), |e| e.to_string());
            warn!(account = %self.account.id, error = %e, "queue: message refused at MAIL; client told 452");
            return self.fail(STORE_FAULT).await;
        }
        q.env = Envelope {
            sender,
            null_sender: path.is_empty(),
            recipients: Vec::new(),
        };
        self.tx = Tx::Mail { sender: shown };
        self.send(b"250 2.1.0 Ok\r\n").await
    }

    /// RCPT in queue mode: syntax and the recipient limit only.
    pub(super) async fn queued_rcpt(&mut self, arg: &[u8]) -> bool {
        let Some(addr) = address(arg).filter(|a| !a.is_empty() && a.contains(&b'@')) else {
            return self
                .error("501 5.1.3 Error: bad recipient address syntax\r\n")
                .await;
        };
        let addr = String::from_utf8_lossy(addr).into_owned();
        let Some(q) = self.mode.queue() else {
            return false;
        };
        if q.env.recipients.len() >= MAX_RECIPIENTS {
            return self.send(b"452 4.5.3 Error: too many recipients\r\n").await;
        }
        q.env.recipients.push(addr.clone());
        self.tx = std::mem::replace(&mut self.tx, Tx::Idle).with_recipient(addr);
        self.send(b"250 2.1.5 Ok\r\n").await
    }

    /// DATA in queue mode: into a writer, then durable, then 250 and a wake-up.
    pub(super) async fn queued_data(&mut self) -> bool {
        let Some(q) = self.mode.queue() else {
            return false;
        };
        let env = std::mem::take(&mut q.env);
        let msg = NewMessage {
            account: self.account.id.clone(),
            sender: env.sender,
            null_sender: env.null_sender,
            recipients: env.recipients,
        };
        let writer = match &q.intake {
            Some(i) => super::sink::begin(&i.store, msg, None).await,
            None => {
                self.tx = Tx::Idle;
                return self.fail(STORE_FAULT).await;
            }
        };
        if let Err(e) = &writer {
            warn!(account = %self.account.id, error = %e, "queue: cannot start a message; client told 452");
            self.tx = Tx::Idle;
            return self.fail(STORE_FAULT).await;
        }
        if !self.send(b"354 End data with <CR><LF>.<CR><LF>\r\n").await {
            return false;
        }
        match self
            .stream_message(Sink::Store(Box::new(Spool::new(writer))))
            .await
        {
            Ok(m) => self.queued_end(m).await,
            Err(keep_going) => {
                self.tx = Tx::Idle;
                keep_going
            }
        }
    }

    /// The end of a queued message: the proxy's refusal, a store fault, or the commit.
    async fn queued_end(&mut self, m: Streamed) -> bool {
        let (sender, recipients) = self.tx.take();
        let size = m.size;
        if let Some(why) = m.refused {
            let text = why.reply();
            let envelope = (sender.as_str(), recipients.as_slice());
            self.log_not_sent(why.reason(), envelope, size, text.as_bytes());
            return self.fail(text).await;
        }
        let writer = match m.sink {
            Sink::Store(w) => w.finish(),
            _ => return self.fail(STORE_FAULT).await,
        };
        let intake = self.mode.queue().and_then(|q| q.intake.clone());
        self.commit_queued(writer, (&sender, &recipients), size, false, intake)
            .await
    }

    /// Makes the message durable and answers `250 2.0.0 Ok: queued as ID` (then wakes
    /// the account's worker), or 452 4.3.1 if the store fails. `dup`: the upstream may
    /// already have it (no reply to the final dot), so its retry is flagged.
    pub(super) async fn commit_queued(
        &mut self,
        writer: Result<Writer, StoreError>,
        envelope: (&str, &[String]),
        size: usize,
        dup: bool,
        intake: Option<Intake>,
    ) -> bool {
        let store = intake.as_ref().map(|i| i.store.clone());
        let committed = match writer {
            Ok(w) => match tokio::task::spawn_blocking(move || {
                let mut env = w.commit()?;
                if let (true, Some(store)) = (dup, store) {
                    env.possibly_duplicated = true;
                    store.update(&env)?;
                }
                Ok(env)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => Err(StoreError::io(
                    "commit",
                    std::path::Path::new("-"),
                    std::io::Error::other(e.to_string()),
                )),
            },
            Err(e) => Err(e),
        };
        match committed {
            Ok(env) => {
                self.report.messages += 1;
                let text = format!("250 2.0.0 Ok: queued as {}\r\n", env.id);
                self.log_message("queued", envelope, size, text.as_bytes());
                if let Some(i) = &intake {
                    i.waker.wake(&self.account.id);
                }
                self.send(text.as_bytes()).await
            }
            Err(e) => {
                let why = format!("the queue could not store it: {e}");
                self.log_not_sent(&why, envelope, size, STORE_FAULT.as_bytes());
                self.fail(STORE_FAULT).await
            }
        }
    }

    /// RSET, HELO or EHLO in queue mode: forget the envelope.
    pub(super) fn queued_reset(&mut self) {
        if let Some(q) = self.mode.queue() {
            q.env = Envelope::default();
        }
        if let Some(f) = self.mode.fallback() {
            f.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{address, size_param};

    #[test]
    fn arguments() {
        let addrs: [(&[u8], Option<&[u8]>); 4] = [
            (b"<a@b.c>", Some(b"a@b.c")),
            (b"<a@b.c> NOTIFY=NEVER", Some(b"a@b.c")),
            (b"a@b.c", None),
            (b"<a@b.c", None),
        ];
        for (arg, want) in addrs {
            assert_eq!(address(arg), want, "{arg:?}");
        }
        let sizes: [(&[u8], Option<u64>); 5] = [
            (b"SIZE=1000", Some(1000)),
            (b"BODY=8BITMIME size=42", Some(42)),
            (b"", None),
            (b"SIZE=x", None),
            (b"SIZE", None),
        ];
        for (params, want) in sizes {
            assert_eq!(size_param(params), want, "{params:?}");
        }
    }
}
