//! `qqmail-proxy queue list --json`: the listing as one JSON array, for scripts and
//! monitoring. Pure (envelopes and the time in, text out), so it is tested as a table.
//!
//! Each element: `id`, `age_seconds`, `size` (body bytes), `account`, `sender` (`""` for
//! `<>`), `null_sender`, `recipients` (each `address`, `state` = `pending` | `delivered`
//! | `failed`, and `reply` for a failed one), `attempts`, `next_attempt_in_seconds` (0:
//! due now), `last_error` (`class`, `text`; or `null`), `hint` (what to do about the last
//! error; or `null`) and `possibly_duplicated`. Upstream replies are bytes (QQ has sent
//! GBK): they appear as UTF-8 with invalid sequences replaced, line ends trimmed.

use std::time::SystemTime;

use serde::Serialize;

use super::format::hint;
use crate::queue::store::{Envelope, RcptState};

/// One message of the listing (the status page shows the same fields).
#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub(crate) id: &'a str,
    pub(crate) age_seconds: u64,
    pub(crate) size: u64,
    pub(crate) account: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) null_sender: bool,
    pub(crate) recipients: Vec<Rcpt<'a>>,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_in_seconds: u64,
    pub(crate) last_error: Option<LastError>,
    pub(crate) hint: Option<&'static str>,
    pub(crate) possibly_duplicated: bool,
}

/// One recipient of a [`Message`].
#[derive(Serialize)]
pub(crate) struct Rcpt<'a> {
    pub(crate) address: &'a str,
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply: Option<String>,
}

/// A [`Message`]'s last error.
#[derive(Serialize)]
pub(crate) struct LastError {
    pub(crate) class: &'static str,
    pub(crate) text: String,
}

/// Bytes as received, as JSON-safe text (serde escapes control characters).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_string()
}

fn message(env: &Envelope, now: SystemTime) -> Message<'_> {
    let secs = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_secs());
    Message {
        id: env.id.as_str(),
        age_seconds: secs(now.duration_since(env.queued_at).ok()),
        size: env.body.len,
        account: &env.account,
        sender: if env.null_sender { "" } else { &env.sender },
        null_sender: env.null_sender,
        recipients: env
            .recipients
            .iter()
            .map(|r| {
                let (state, reply) = match &r.state {
                    RcptState::Pending => ("pending", None),
                    RcptState::Delivered => ("delivered", None),
                    RcptState::Failed { reply } => ("failed", Some(text(reply))),
                };
                Rcpt {
                    address: &r.addr,
                    state,
                    reply,
                }
            })
            .collect(),
        attempts: env.attempts,
        next_attempt_in_seconds: secs(env.next_attempt.duration_since(now).ok()),
        last_error: env.last_error.as_ref().map(|e| LastError {
            class: e.class.as_str(),
            text: text(&e.text),
        }),
        hint: env.last_error.as_ref().map(hint),
        possibly_duplicated: env.possibly_duplicated,
    }
}

/// The listing's elements (the status page renders and serves the same).
pub(crate) fn messages(envs: &[Envelope], now: SystemTime) -> Vec<Message<'_>> {
    envs.iter().map(|e| message(e, now)).collect()
}

/// The listing as one JSON array (`[]` for an empty queue), pretty-printed, with a final
/// newline.
pub fn list(envs: &[Envelope], now: SystemTime) -> String {
    let all = messages(envs, now);
    // Serializing plain structs of strings and numbers cannot fail.
    let mut out = serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::queue::classify::Class;
    use crate::queue::store::LastError;

    fn env(null_sender: bool, last_error: Option<LastError>) -> Envelope {
        Envelope {
            null_sender,
            last_error,
            ..crate::queue::store::envelope::sample(b"550 5.1.1 \"no\" such user\r\n")
        }
    }

    #[test]
    fn listing() {
        use serde_json::{json, Value};
        let now = UNIX_EPOCH + Duration::from_secs(1100);
        let gbk = LastError {
            class: Class::RateLimited,
            text: b"550 Ip frequency limited \xc7\xeb\r\n\x1b[31m".to_vec(),
        };
        let rcpts = json!([
            {"address": "bob@example.com", "state": "pending"},
            {"address": "carol@example.com", "state": "delivered"},
            {"address": "dave@example.com", "state": "failed",
             "reply": "550 5.1.1 \"no\" such user"},
        ]);
        let cases: [(Vec<Envelope>, Value); 3] = [
            (vec![], json!([])),
            (
                vec![env(false, Some(gbk))],
                json!([{
                    "id": "0190A0B0C0D0E12345678",
                    "age_seconds": 100,
                    "size": 4321,
                    "account": "main",
                    "sender": "printer@qq.com",
                    "null_sender": false,
                    "recipients": rcpts,
                    "attempts": 2,
                    "next_attempt_in_seconds": 300,
                    "last_error": {
                        "class": "ratelimited",
                        "text": "550 Ip frequency limited \u{fffd}\u{fffd}\r\n\u{1b}[31m",
                    },
                    "hint": hint(&LastError { class: Class::RateLimited, text: Vec::new() }),
                    "possibly_duplicated": false,
                }]),
            ),
            (
                vec![env(true, None)],
                json!([{
                    "id": "0190A0B0C0D0E12345678",
                    "age_seconds": 100,
                    "size": 4321,
                    "account": "main",
                    "sender": "",
                    "null_sender": true,
                    "recipients": rcpts,
                    "attempts": 2,
                    "next_attempt_in_seconds": 300,
                    "last_error": null,
                    "hint": null,
                    "possibly_duplicated": false,
                }]),
            ),
        ];
        for (envs, want) in cases {
            let out = list(&envs, now);
            assert!(out.ends_with("]\n"), "{out}");
            let got: Value = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(got, want, "{out}");
        }
    }
}
