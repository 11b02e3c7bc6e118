//! The last upstream login per account and protocol: when, whether it worked, and if not
//! the refusal as `qqmail-proxy check` prints it (the [`UpstreamError`] text and its
//! plain-language hint, from the same classification). Fed by the one place upstream
//! logins are made (`session::connect::login_upstream`), for sessions, the SMTP relay's
//! reconnects and the queue's deliverer alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Time;
use crate::proto::Protocol;
use crate::upstream::UpstreamError;

/// Entries kept: accounts are few, but a file may still hold accounts removed since.
pub const MAX_LOGINS: usize = 256;

/// Longest refusal text kept.
const TEXT_MAX: usize = 400;

/// An account's latest upstream login for one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamLogin {
    /// The account's id (`[[account]] id`).
    pub account: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The server, `host:port`.
    pub server: String,
    /// When the latest login ended.
    pub at: Time,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not: the error, with the server's reply when it sent one (never the code).
    pub error: Option<String>,
    /// The plain-language hint for that error, if there is one.
    pub hint: Option<String>,
    /// The latest success, if any is recorded.
    pub last_ok: Option<Time>,
    /// While failing: the first failure since the latest success.
    pub failing_since: Option<Time>,
}

/// The table, by (account, protocol).
#[derive(Debug, Default)]
pub(super) struct Logins {
    by_key: BTreeMap<(String, Protocol), UpstreamLogin>,
}

impl Logins {
    /// Records a login to `server` for `account` that ended at `at`.
    pub fn record(
        &mut self,
        at: Time,
        (account, protocol, server): (&str, Protocol, &str),
        result: Result<(), &UpstreamError>,
    ) {
        let key = (account.to_string(), protocol);
        if !self.by_key.contains_key(&key) && self.by_key.len() >= MAX_LOGINS {
            let oldest = self
                .by_key
                .iter()
                .min_by_key(|(_, l)| l.at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_key.remove(&k);
            }
        }
        let before = self.by_key.remove(&key);
        let (last_ok, was_failing) = before.map_or((None, None), |b| (b.last_ok, b.failing_since));
        let entry = match result {
            Ok(()) => UpstreamLogin {
                account: account.to_string(),
                protocol,
                server: server.to_string(),
                at,
                ok: true,
                error: None,
                hint: None,
                last_ok: Some(at),
                failing_since: None,
            },
            Err(e) => UpstreamLogin {
                account: account.to_string(),
                protocol,
                server: server.to_string(),
                at,
                ok: false,
                error: Some(crate::proto::reply_text(&e.to_string(), TEXT_MAX)),
                hint: e.hint().map(str::to_string),
                last_ok,
                failing_since: was_failing.or(Some(at)),
            },
        };
        self.by_key.insert(key, entry);
    }

    /// By account, then protocol (smtp, imap, pop3).
    pub fn list(&self) -> Vec<UpstreamLogin> {
        self.by_key.values().cloned().collect()
    }

    /// Restores a [`Logins::list`], at most [`MAX_LOGINS`] entries.
    pub fn restore(list: Vec<UpstreamLogin>) -> Logins {
        let mut l = Logins::default();
        for e in list.into_iter().take(MAX_LOGINS) {
            l.by_key.insert((e.account.clone(), e.protocol), e);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::hint;

    fn rejected() -> UpstreamError {
        UpstreamError::Rejected {
            server: "smtp.qq.com:465".into(),
            email: "me@qq.com".into(),
            reply: b"535 Login Fail. Please enter your authorization code to login\r\n".to_vec(),
        }
    }

    #[test]
    fn latest_per_account_and_protocol() {
        let mut l = Logins::default();
        let smtp = ("main", Protocol::Smtp, "smtp.qq.com:465");
        let imap = ("main", Protocol::Imap, "imap.qq.com:993");
        type Smtp = (bool, Option<i64>, Option<i64>);
        let e = rejected();
        // (time, login, result) -> the smtp entry's (ok, last_ok, failing_since)
        #[rustfmt::skip]
        let steps: [(i64, _, Result<(), &UpstreamError>, Smtp); 5] = [
            (1, smtp, Ok(()), (true, Some(1), None)),
            (2, smtp, Err(&e), (false, Some(1), Some(2))),
            (3, imap, Ok(()), (false, Some(1), Some(2))),
            (4, smtp, Err(&e), (false, Some(1), Some(2))),
            (5, smtp, Ok(()), (true, Some(5), None)),
        ];
        for (at, login, result, (ok, last_ok, since)) in steps {
            l.record(Time::from_unix(at), login, result);
            let list = l.list();
            let s = list.iter().find(|x| x.protocol == Protocol::Smtp).unwrap();
            assert_eq!(s.ok, ok, "{at}");
            assert_eq!(s.last_ok.map(Time::unix), last_ok, "{at}");
            assert_eq!(s.failing_since.map(Time::unix), since, "{at}");
            assert_eq!(s.error.is_some(), !ok, "{at}");
        }
        assert_eq!(l.list().len(), 2);
        assert_eq!(Logins::restore(l.list()).list(), l.list());
    }

    #[test]
    fn refusal_text_and_hint_as_check_prints_them() {
        let mut l = Logins::default();
        let e = rejected();
        l.record(
            Time::from_unix(1),
            ("main", Protocol::Smtp, "smtp.qq.com:465"),
            Err(&e),
        );
        let got = &l.list()[0];
        assert_eq!(got.error.as_deref(), Some(e.to_string().as_str()));
        assert!(got.error.as_deref().unwrap().contains("535 Login Fail"));
        assert_eq!(got.hint.as_deref(), e.hint());
        assert_eq!(got.hint.as_deref(), Some(hint::CODE_REFUSED));
    }

    #[test]
    fn bounded() {
        let mut l = Logins::default();
        for i in 0..MAX_LOGINS + 5 {
            let id = format!("a{i}");
            l.record(
                Time::from_unix(i as i64),
                (&id, Protocol::Smtp, "s:1"),
                Ok(()),
            );
        }
        let list = l.list();
        assert_eq!(list.len(), MAX_LOGINS);
        assert!(!list.iter().any(|x| x.account == "a0"));
        assert!(list
            .iter()
            .any(|x| x.account == format!("a{}", MAX_LOGINS + 4)));
    }
}
