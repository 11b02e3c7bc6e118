//! Off loopback the status page needs `[admin] password_hash` (issue 14): without a
//! login the JSON is 401, the page redirects to the form and a POST is 403; the login
//! form's own POST needs its CSRF token; a wrong password is refused (and counts against
//! the address like a mail login); the right one gives a fresh session id, which then
//! reads the JSON. `/healthz` stays open. The client address must not be loopback, so
//! the proxy runs in a network namespace of its own, as in `view`.

use std::net::SocketAddr;

use super::page::{request, Answer};
use super::*;
use crate::hardening::netns::Netns;
use crate::hardening::Client;
use crate::support::config::{argon2_hash, toml_str};
use crate::support::proxy::Launch;

const ADMIN_PW: &str = "Adm1n-Page-Pw";

/// The `value` of the form's hidden `csrf` input.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_page_needs_the_password() {
    let ns = Netns::create(1);
    let ca = TestCa::new("admin login CA");
    let proxy_ip = Netns::proxy_ip();
    let hash = argon2_hash(ADMIN_PW);
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp("tls://127.0.0.1:9"))
        .user("printer", PASSWORD, "main")
        .smtp("off")
        .listen("smtp", &[&format!("[{proxy_ip}]:0")])
        .extra(&format!(
            "\n[admin]\nlisten = \"[::]:0\"\npassword_hash = {}",
            toml_str(&hash)
        ));
    let mut words = ns.exec_prefix().to_vec();
    words.push(env!("CARGO_BIN_EXE_qqmail-proxy"));
    let proxy = Proxy::launch(Launch::from_builder(&builder).program("ip", &words)).await;
    let admin = SocketAddr::new(proxy_ip, proxy.admin_addr().port());
    let host = admin.to_string();
    let client = Netns::client_ip(0);
    let mut sockets = ns.sockets(16);
    let mut seen = Vec::new();
    let mut go =
        |method: &'static str, path: &'static str, cookie: Option<String>, form: Option<String>| {
            let socket = sockets.pop().expect("socket");
            let host = host.clone();
            async move {
                let headers: Vec<(&str, &str)> = cookie
                    .as_deref()
                    .map(|c| ("Cookie", c))
                    .into_iter()
                    .collect();
                let req = request(method, path, &host, &headers, form.as_deref());
                let mut c = Client::connect_with(socket, admin, Some(client))
                    .await
                    .expect("connect to admin inside the namespace");
                assert!(c.send(req.as_bytes()).await);
                let (text, eof) = c.read_to_eof(Duration::from_secs(10)).await;
                assert!(eof, "{text}");
                Answer::parse(&text)
            }
        };

    let a = go("GET", "/api/status", None, None).await;
    assert_eq!(a.status, 401, "{a:?}");
    seen.push(a.body.clone());
    let a = go("GET", "/", None, None).await;
    assert_eq!(a.status, 303, "{a:?}");
    assert!(a.head.contains("location: /login"), "{}", a.head);
    let a = go("POST", "/unlock", None, Some("host=x".into())).await;
    assert_eq!(a.status, 403, "{a:?}");
    let a = go("GET", "/healthz", None, None).await;
    assert_eq!(a.status, 200, "{a:?}");

    // The form, its session (not logged in) and its token.
    let form = go("GET", "/login", None, None).await;
    assert_eq!(form.status, 200, "{form:?}");
    let before = form.session_cookie().expect("a session for the form");
    let csrf = csrf_of(&form.body);
    seen.push(form.body.clone());
    let a = go("GET", "/api/status", Some(before.clone()), None).await;
    assert_eq!(
        a.status, 401,
        "a session before the login reads nothing: {a:?}"
    );

    // Without the token, with a wrong password: no login.
    let a = go(
        "POST",
        "/login",
        Some(before.clone()),
        Some(format!("password={ADMIN_PW}")),
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
    let wrong = format!("password=not-it&csrf={csrf}");
    let a = go("POST", "/login", Some(before.clone()), Some(wrong)).await;
    assert_eq!(a.status, 303, "{a:?}");
    assert!(a.head.contains("location: /login"), "{}", a.head);
    assert!(a.session_cookie().is_none(), "{}", a.head);

    // The right password: a fresh session id that reads the JSON.
    let right = format!("password={ADMIN_PW}&csrf={csrf}");
    let a = go("POST", "/login", Some(before.clone()), Some(right)).await;
    assert_eq!(a.status, 303, "{a:?}");
    let after = a.session_cookie().expect("a new session cookie");
    assert_ne!(after, before);
    let a = go("GET", "/api/status", Some(after.clone()), None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("\"accounts\""), "{}", a.body);
    seen.push(a.body.clone());
    let a = go("GET", "/api/status", Some(before), None).await;
    assert_eq!(
        a.status, 401,
        "the session before the login stays out: {a:?}"
    );
    let page = go("GET", "/", Some(after), None).await;
    assert_eq!(page.status, 200, "{page:?}");
    seen.push(page.body.clone());

    for text in &seen {
        for secret in [DEFAULT_CODE, PASSWORD, ADMIN_PW, hash.as_str()] {
            assert!(!text.contains(secret), "{secret:?} shown:\n{text}");
        }
    }
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD, ADMIN_PW]);
}
