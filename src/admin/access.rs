//! Who may use the status page. A peer on loopback may, without a login (the operator on
//! this machine). Anyone else logs in with `[admin] password_hash` and then carries a
//! session cookie: a random 256-bit id, `HttpOnly` (scripts cannot read it),
//! `SameSite=Strict` (no other site's page sends it) and `Max-Age` [`SESSION_TTL`].
//! Every state-changing request is a POST whose form carries the session's CSRF token
//! (OWASP's synchronizer token pattern): loopback visitors get a session too, since a
//! web page anywhere can make the browser POST to `http://127.0.0.1:9925/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore;

/// The session cookie's name.
pub const COOKIE: &str = "qqmail_session";

/// How long a session lives (from its creation; no sliding renewal).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once; the oldest without a login goes first. A few operators need a
/// handful; the bound keeps a stream of cookie-less requests from growing the table.
const MAX_SESSIONS: usize = 64;

/// One browser's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie value (hex of 32 random bytes).
    pub id: String,
    /// The token every POST form must carry (hex of 32 random bytes).
    pub csrf: String,
    /// Logged in with the password (always false for loopback's open sessions).
    pub logged_in: bool,
    /// What the last action said, shown once on the next page.
    pub notice: Option<String>,
    created: Instant,
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session the request's cookie names.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut table = self.lock();
        let s = table.get(id)?;
        if s.created.elapsed() >= SESSION_TTL {
            table.remove(id);
            return None;
        }
        Some(s.clone())
    }

    /// Starts a session (`logged_in` after a password login).
    pub fn start(&self, logged_in: bool) -> Session {
        let s = Session {
            id: random_hex(),
            csrf: random_hex(),
            logged_in,
            notice: None,
            created: Instant::now(),
        };
        let mut table = self.lock();
        table.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        while table.len() >= MAX_SESSIONS {
            // Sessions without a login go first: strangers loading the login form must
            // not log the operator out.
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| (s.logged_in, s.created))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
        table.insert(s.id.clone(), s.clone());
        s
    }

    /// Ends session `id` (log out, or replaced at login so that an id set before the
    /// login is never a logged-in one).
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves `notice` for the session's next page.
    pub fn notify(&self, id: &str, notice: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.notice = Some(notice);
        }
    }

    /// Takes the session's notice.
    pub fn take_notice(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.notice.take())
    }
}

/// The `Set-Cookie` value for `session`.
pub fn set_cookie(session: &Session) -> HeaderValue {
    let v = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session.id,
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that ends the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("qqmail_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether `peer` may use the page without a password.
pub fn open_to(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let cases = [
            // (Cookie header, value of qqmail_session)
            ("qqmail_session=abc", Some("abc")),
            ("lang=zh; qqmail_session=abc", Some("abc")),
            ("lang=zh;qqmail_session=abc ; x=1", Some("abc")),
            ("xqqmail_session=abc", None),
            ("qqmail_session", None),
            ("", None),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(value).expect("value"));
            assert_eq!(cookie(&h, COOKIE), want, "{value:?}");
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        let cases = [
            ("a", "a", true),
            ("a", "b", false),
            ("ab", "a", false),
            ("", "", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(same(a, b), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn sessions_are_random_bounded_and_end() {
        let s = Sessions::default();
        let first = s.start(false);
        assert_eq!(first.id.len(), 64);
        assert_ne!(first.id, first.csrf);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, set_cookie(&first));
        let cookie_line = set_cookie(&first);
        let text = cookie_line.to_str().expect("ascii");
        assert!(
            text.contains("HttpOnly") && text.contains("SameSite=Strict"),
            "{text}"
        );
        // A Set-Cookie value is not a Cookie header, but its first pair is the same.
        assert_eq!(s.get(&h).map(|x| x.id), Some(first.id.clone()));
        for _ in 1..MAX_SESSIONS {
            s.start(true);
        }
        // Strangers keep loading the login form: only sessions without a login go.
        for _ in 0..5 {
            s.start(false);
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
        assert!(s.get(&h).is_none(), "the oldest session was dropped");
        let logged_in = s.lock().values().filter(|x| x.logged_in).count();
        assert_eq!(
            logged_in,
            MAX_SESSIONS - 1,
            "no logged-in session was dropped"
        );
        let last = s.start(true);
        s.end(&last.id);
        assert!(!s.lock().contains_key(&last.id));
    }
}
