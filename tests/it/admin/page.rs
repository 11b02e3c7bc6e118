//! The status page (issue 14) over real HTTP after real sessions through the proxy: one
//! good login that queues a message (upstream down), one bad login that locks the
//! address out (`lockout_failures = 1`). The JSON of each section, the HTML in English
//! and 中文, CSRF refused without the token, unlock and queue retry through the page
//! (the message then leaves the queue), and no secret in any response. `login`: off
//! loopback the page needs the password (network namespace, as `view`).

use std::net::SocketAddr;

use serde_json::Value;

use super::*;
use crate::queue::commands::queue_one;
use crate::smtp::{Client as SmtpClient, WAIT, WRONG};

/// One HTTP exchange's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn parse(text: &str) -> Answer {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// The `qqmail_session` cookie this answer sets, if any.
    pub(crate) fn session_cookie(&self) -> Option<String> {
        self.head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim()))
            .find(|v| v.starts_with("qqmail_session=") && !v.starts_with("qqmail_session=;"))
            .and_then(|v| v.split(';').next())
            .map(String::from)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }
}

/// A request's text (`Connection: close`: the answer ends at EOF).
pub(crate) fn request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = form {
        r.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        r.push_str("\r\n");
    }
    r
}

/// Sends `req` from loopback to `addr` and reads the answer to EOF.
async fn exchange(addr: SocketAddr, req: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to admin");
    tcp.write_all(req.as_bytes()).await.expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut bytes))
        .await
        .expect("admin answered")
        .expect("read");
    Answer::parse(&String::from_utf8_lossy(&bytes))
}

/// A loopback browser: keeps the session cookie, collects every body.
struct Browser {
    addr: SocketAddr,
    cookie: Option<String>,
    seen: Vec<String>,
}

impl Browser {
    async fn go(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        form: Option<&str>,
    ) -> Answer {
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        let cookie = self.cookie.clone();
        if let Some(c) = cookie.as_deref() {
            headers.push(("Cookie", c));
        }
        let req = request(method, path, &self.addr.to_string(), &headers, form);
        let a = exchange(self.addr, &req).await;
        if let Some(c) = a.session_cookie() {
            self.cookie = Some(c);
        }
        self.seen.push(format!("{}\r\n\r\n{}", a.head, a.body));
        a
    }

    async fn status(&mut self) -> Value {
        let a = self.go("GET", "/api/status", &[], None).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.json()
    }
}

/// Sends one bad SMTP login.
async fn bad_login(addr: SocketAddr) -> String {
    let mut c = SmtpClient::connect(addr).await;
    c.ehlo().await;
    c.auth_plain(crate::smtp::USER, WRONG).await
}

/// The JSON of each section after the sessions of [`page_and_json_after_real_sessions`].
fn assert_sections(s: &Value, upstream: SocketAddr, smtp_addr: SocketAddr, id: &str) {
    assert_eq!(s["accounts"][0]["address"], "12345@qq.com", "{s}");
    assert_eq!(s["accounts"][0]["servers"][0]["protocol"], "smtp", "{s}");
    assert_eq!(
        s["accounts"][0]["servers"][0]["server"],
        upstream.to_string(),
        "{s}"
    );
    let smtp = &s["listeners"][0];
    assert_eq!(smtp["protocol"], "smtp", "{s}");
    assert_eq!(smtp["address"], smtp_addr.to_string(), "{s}");
    assert_eq!(smtp["security"], "starttls", "{s}");
    assert_eq!(smtp["min_tls"], "1.2", "{s}");
    assert_eq!(s["lockouts"][0]["host"], "127.0.0.1", "{s}");
    assert!(s["lockouts"][0]["seconds_left"].as_u64() > Some(0), "{s}");
    let msg = &s["queue"]["messages"][0];
    assert_eq!(msg["id"], id, "{s}");
    assert_eq!(msg["recipients"][0]["address"], crate::smtp::RCPT, "{s}");
    assert!(msg["size"].as_u64() > Some(0), "{s}");
    // Activity: the failing device, the two session ends, the hourly chart's data.
    let device = &s["activity"]["devices"][0];
    assert_eq!(device["host"], "127.0.0.1", "{s}");
    assert_eq!(device["messages"], 1, "{s}");
    assert_eq!(device["last_error"]["result"], "auth_failed", "{s}");
    let recent = s["activity"]["recent"].as_array().expect("recent");
    assert_eq!(recent.len(), 2, "{s}");
    assert_eq!(recent[0]["result"], "auth_failed", "{s}");
    assert_eq!(recent[1]["messages"], 1, "{s}");
    let hourly = s["activity"]["hourly"].as_array().expect("hourly");
    assert_eq!(hourly.len(), 24, "{s}");
    assert_eq!(hourly[23]["messages"], 1, "{s}");
}

/// The page in English (default), in 中文 (`Accept-Language`) and by the switch.
async fn assert_html(web: &mut Browser, id: &str) {
    let en = web.go("GET", "/", &[], None).await;
    assert_eq!(en.status, 200, "{en:?}");
    for needle in [
        "Accounts",
        "12345@qq.com",
        id,
        "127.0.0.1",
        "Unlock",
        "Retry",
    ] {
        assert!(en.body.contains(needle), "{needle} missing:\n{}", en.body);
    }
    let csp = en.header("content-security-policy");
    assert!(csp.is_some(), "{}", en.head);
    let zh = web
        .go("GET", "/", &[("Accept-Language", "zh-CN,zh;q=0.9")], None)
        .await;
    for needle in ["账户", "发送队列", "解锁", "重试", id] {
        assert!(zh.body.contains(needle), "{needle} missing:\n{}", zh.body);
    }
    assert!(en.body.contains("class=\"device failing\""), "{}", en.body);
    assert!(en.body.contains("<svg"), "{}", en.body);
    assert_eq!(en.body.matches("class=\"session\"").count(), 2);
    let failures = web.go("GET", "/?failures=1", &[], None).await;
    assert_eq!(failures.body.matches("class=\"session\"").count(), 1);
    assert!(failures.body.contains("auth_failed"), "{}", failures.body);
    let switched = web.go("GET", "/?lang=zh", &[], None).await;
    assert!(switched.body.contains("账户") && switched.head.contains("lang=zh"));
}

/// POSTs without the token, with a wrong one, or without the session cookie: 403.
async fn assert_forgeries_refused(web: &mut Browser, cookie: &str, csrf: &str, id: &str) {
    let forms = [
        (Some(cookie), "host=127.0.0.1".to_string()),
        (Some(cookie), "host=127.0.0.1&csrf=00".to_string()),
        (None, format!("host=127.0.0.1&csrf={csrf}")),
    ];
    for (cookie, form) in forms {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        let host = web.addr.to_string();
        let req = request("POST", "/unlock", &host, &headers, Some(&form));
        let a = exchange(web.addr, &req).await;
        assert_eq!(a.status, 403, "{form}: {a:?}");
    }
    let forged = format!("id={id}");
    let a = web.go("POST", "/queue/retry", &[], Some(&forged)).await;
    assert_eq!(a.status, 403, "{a:?}");
}

#[tokio::test]
async fn page_and_json_after_real_sessions() {
    let ca = TestCa::new("admin page CA");
    let spool = tempfile::tempdir().unwrap();
    let upstream = crate::queue::unused_port();
    let b = crate::queue::queue_mode_builder(&ca, upstream, spool.path())
        .limit("lockout_failures", "1")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let proxy = Proxy::start_built(&b, &[]).await;
    let id = queue_one(&proxy, "page test").await;
    let refused = bad_login(proxy.smtp_addr()).await;
    // With lockout_failures = 1 the failure locks the address out at once: 421.
    assert!(
        refused.starts_with("535") || refused.starts_with("421"),
        "{refused}"
    );
    // Both sessions are in the activity record once they ended.
    proxy.wait_for_log("\"result\":\"auth_failed\"", WAIT).await;
    let mut web = Browser {
        addr: proxy.admin_addr(),
        cookie: None,
        seen: Vec::new(),
    };

    // JSON: every section.
    let s = web.status().await;
    let cookie = web.cookie.clone().expect("a session cookie on loopback");
    assert!(web.seen[0].contains("HttpOnly") && web.seen[0].contains("SameSite=Strict"));
    assert_sections(&s, upstream, proxy.smtp_addr(), &id);
    let csrf = s["csrf_token"].as_str().expect("csrf_token").to_string();

    // HTML, English and 中文.
    assert_html(&mut web, &id).await;

    // CSRF: no token, a wrong one, or no session cookie: 403, nothing changes.
    assert_forgeries_refused(&mut web, &cookie, &csrf, &id).await;
    assert_eq!(web.status().await["lockouts"][0]["host"], "127.0.0.1");

    // Unlock with the token: the address may log in again.
    let a = web
        .go(
            "POST",
            "/unlock",
            &[],
            Some(&format!("host=127.0.0.1&csrf={csrf}")),
        )
        .await;
    assert_eq!(a.status, 303, "{a:?}");
    assert_eq!(web.status().await["lockouts"], serde_json::json!([]));
    proxy
        .wait_for_log("address unlocked from the status page", WAIT)
        .await;

    // The upstream comes back; "retry" sends the message now.
    let fake = FakeSmtp::start_on(
        std::net::TcpListener::bind(upstream).unwrap(),
        SmtpOptions::implicit(&ca),
    );
    let a = web
        .go(
            "POST",
            "/queue/retry",
            &[],
            Some(&format!("id={id}&csrf={csrf}")),
        )
        .await;
    assert_eq!(a.status, 303, "{a:?}");
    fake.wait_messages(1, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    while web.status().await["queue"]["messages"] != serde_json::json!([]) {
        assert!(std::time::Instant::now() < deadline, "still queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No secret anywhere: the code, the local password, its hash.
    let hash = b.users()[0].password_hash.clone();
    for text in &web.seen {
        for secret in [DEFAULT_CODE, crate::smtp::PASSWORD, WRONG, hash.as_str()] {
            assert!(!text.contains(secret), "{secret:?} shown:\n{text}");
        }
    }
    proxy.assert_no_secret(&[DEFAULT_CODE, crate::smtp::PASSWORD]);
}

/// "Check now" runs `qqmail-proxy check`'s checks (only with the CSRF token) and the
/// page shows one line per service: OK for the fake SMTP upstream, the failure for IMAP
/// and POP3 whose port has nothing listening.
#[tokio::test]
async fn check_now_runs_the_checks_of_the_cli() {
    let ca = TestCa::new("admin check CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let dead = crate::queue::unused_port().to_string();
    let b = ConfigBuilder::new(&ca)
        .account(
            Account::new("main")
                .smtp_fake(&smtp)
                .imap(&dead)
                .pop3(&dead),
        )
        .user("printer", PASSWORD, "main")
        .smtp("off")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let proxy = Proxy::start_built(&b, &[]).await;
    let mut web = Browser {
        addr: proxy.admin_addr(),
        cookie: None,
        seen: Vec::new(),
    };
    let csrf = web.status().await["csrf_token"]
        .as_str()
        .expect("csrf_token")
        .to_string();
    let a = web.go("POST", "/check", &[], Some("csrf=")).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        smtp.auth_attempts().is_empty(),
        "nothing ran without the token"
    );

    let a = web
        .go("POST", "/check", &[], Some(&format!("csrf={csrf}")))
        .await;
    assert_eq!(a.status, 303, "{a:?}");
    let s = web.status().await;
    let lines = s["last_check"]["lines"].as_array().expect("check lines");
    let by = |service: &str| {
        lines
            .iter()
            .find(|l| l["service"] == service)
            .unwrap_or_else(|| panic!("no {service} line: {s}"))
            .clone()
    };
    assert_eq!(by("smtp")["ok"], true, "{s}");
    assert_eq!(by("smtp")["text"], "OK", "{s}");
    for service in ["imap", "pop3"] {
        let line = by(service);
        assert_eq!(line["ok"], false, "{s}");
        assert!(line["text"].as_str().unwrap_or("").contains(&dead), "{s}");
    }
    assert_eq!(smtp.auth_attempts().len(), 1);
    let html = web.go("GET", "/", &[], None).await;
    assert!(html.body.contains("id=\"check\""), "{}", html.body);
    for text in &web.seen {
        assert!(!text.contains(DEFAULT_CODE), "the code shown:\n{text}");
    }
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD]);
}
