//! Real IMAP clients through the proxy: async-imap (LOGIN, LIST of QQ's modified-UTF-7
//! folders, SELECT, FETCH, IDLE, LOGOUT), Python's imaplib (LOGIN, AUTHENTICATE PLAIN,
//! STARTTLS) and curl (`imap://`, with and without `--ssl-reqd`).

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response};
use async_imap::types::NameAttribute;
use futures_util::TryStreamExt;
use tokio::net::TcpStream;

use super::{Gateway, Tap, CODE, EMAIL, PASSWORD, T, USER};
use crate::support::imap::{QQ_OTHER_FOLDERS, QQ_POST_LOGIN_CAPS, QQ_SUBSCRIPTIONS};
use crate::support::tools::{python, require, run};
use crate::support::upstream::LoginMethod;

const FIRST: &[u8] = b"From: a@qq.com\r\nSubject: first\r\n\r\nhello from INBOX\r\n";
const NEWS: &[u8] = b"From: news@qq.com\r\nSubject: news\r\n\r\nsubscription\r\n";

#[tokio::test]
async fn async_imap_login_list_select_fetch_idle_logout() {
    let gw = Gateway::start(
        |o| o.message("INBOX", FIRST).message(QQ_SUBSCRIPTIONS, NEWS),
        |c| c,
    )
    .await;
    let mark = gw.proxy.log_mark();
    let tcp = TcpStream::connect(gw.proxy.imap_addr())
        .await
        .expect("connect");
    let (tap, seen) = Tap::new(tcp);
    let mut client = async_imap::Client::new(tap);
    client
        .read_response()
        .await
        .expect("greeting")
        .expect("greeting parses");
    let mut s = client
        .login(USER, PASSWORD)
        .await
        .map_err(|(e, _)| e)
        .expect("LOGIN through the proxy");

    // The tagged OK carries the upstream's post-login capabilities, not the proxy's own.
    let transcript = String::from_utf8_lossy(&seen.lock().expect("tap")).into_owned();
    let ok = transcript
        .lines()
        .find(|l| l.starts_with('A') && l.contains(" OK "))
        .unwrap_or_else(|| panic!("no tagged OK for LOGIN in {transcript:?}"));
    assert_eq!(
        ok.split_once(' ').map(|(_, rest)| rest),
        Some(format!("OK [CAPABILITY {QQ_POST_LOGIN_CAPS}] Logged in").as_str()),
        "{ok}"
    );
    for cap in ["IDLE", "MOVE", "XAPPLEPUSHSERVICE"] {
        assert!(ok.split([' ', ']']).any(|w| w == cap), "{cap} in {ok}");
    }
    let logins = gw.fake.wait_logins(1, T).await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    let login = &logins[0];
    assert_eq!(
        (login.method, login.user.as_str(), login.password.as_str()),
        (LoginMethod::ImapLogin, EMAIL, CODE)
    );
    assert!(login.accepted && login.over_tls, "{login:?}");

    // LIST shows QQ's folders by their modified-UTF-7 names (RFC 3501 §5.1.3).
    let names: Vec<_> = s
        .list(Some(""), Some("*"))
        .await
        .expect("LIST")
        .try_collect()
        .await
        .expect("LIST responses");
    let listed: Vec<&str> = names.iter().map(|n| n.name()).collect();
    for want in ["INBOX", "Sent Messages", QQ_OTHER_FOLDERS, QQ_SUBSCRIPTIONS] {
        assert!(listed.contains(&want), "{want} in {listed:?}");
    }
    let parent = names
        .iter()
        .find(|n| n.name() == QQ_OTHER_FOLDERS)
        .expect("parent folder");
    assert!(parent.attributes().contains(&NameAttribute::NoSelect));
    drop(names);

    // The modified-UTF-7 child folder selects and fetches.
    assert_eq!(s.select(QQ_SUBSCRIPTIONS).await.expect("SELECT").exists, 1);
    let got: Vec<_> = s
        .fetch("1", "BODY.PEEK[]")
        .await
        .expect("FETCH")
        .try_collect()
        .await
        .expect("FETCH data");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body(), Some(NEWS));
    drop(got);

    let inbox = s.select("INBOX").await.expect("SELECT INBOX");
    assert_eq!(inbox.exists, 1);
    let got: Vec<_> = s
        .fetch("1", "(UID RFC822.SIZE BODY.PEEK[])")
        .await
        .expect("FETCH")
        .try_collect()
        .await
        .expect("FETCH data");
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].uid, got[0].size),
        (Some(1), Some(FIRST.len() as u32))
    );
    assert_eq!(got[0].body(), Some(FIRST));
    drop(got);

    // IDLE (RFC 2177): the EXISTS the upstream pushes reaches the client.
    let mut idle = s.idle();
    idle.init().await.expect("IDLE accepted");
    let (wait, _stop) = idle.wait_with_timeout(T);
    assert_eq!(
        gw.fake
            .add_message("INBOX", &b"Subject: second\r\n\r\n2\r\n"[..]),
        2
    );
    match wait.await.expect("IDLE wait") {
        IdleResponse::NewData(d) => assert!(
            matches!(d.parsed(), Response::MailboxData(MailboxDatum::Exists(2))),
            "{:?}",
            d.parsed()
        ),
        other => panic!("expected * 2 EXISTS, got {other:?}"),
    }
    let mut s = idle.done().await.expect("DONE");
    s.noop().await.expect("NOOP after IDLE");
    s.logout().await.expect("LOGOUT");
    // The relay keeps the client's half open until the client closes (half-close).
    drop(s);
    assert_eq!(gw.wait_session_end(mark).await, "ok");
    assert_eq!(gw.fake.connections(), 1, "one upstream connection");
    gw.assert_clean();
}

/// Logs in with `login()`, with `authenticate('PLAIN', ...)` and after `starttls()`,
/// fetching the message each time; prints one line per step.
const IMAPLIB_SCRIPT: &str = r#"
import imaplib, ssl, sys
host, port, user, pw, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def fetch(m, step):
    typ, data = m.select('INBOX')
    assert typ == 'OK', (step, typ, data)
    exists = data[0].decode()
    typ, data = m.fetch('1', '(BODY.PEEK[])')
    assert typ == 'OK', (step, typ, data)
    print(step, 'exists', exists, 'body', data[0][1].hex())
    typ, data = m.logout()
    assert typ == 'BYE', (step, typ, data)

m = imaplib.IMAP4(host, port)
typ, data = m.login(user, pw)
assert typ == 'OK', data
print('login', typ, data[0].decode())
fetch(m, 'login')

m = imaplib.IMAP4(host, port)
typ, data = m.authenticate('PLAIN', lambda _: ('\0%s\0%s' % (user, pw)).encode())
assert typ == 'OK', data
print('plain', typ)
fetch(m, 'plain')

m = imaplib.IMAP4(host, port)
assert 'STARTTLS' in m.capabilities, m.capabilities
typ, data = m.starttls(ssl_context=ssl.create_default_context(cafile=cafile))
assert typ == 'OK', data
print('starttls', m.sock.version(), 'LOGINDISABLED' in m.capabilities)
typ, data = m.login(user, pw)
assert typ == 'OK', data
fetch(m, 'tls')
"#;

#[tokio::test]
async fn python_imaplib_login_authenticate_plain_and_starttls() {
    let gw = Gateway::start(|o| o.message("INBOX", FIRST), |c| c).await;
    let proxy = &gw.proxy;
    let args = vec![
        "127.0.0.1".to_owned(),
        proxy.imap_addr().port().to_string(),
        USER.to_owned(),
        PASSWORD.to_owned(),
        gw.ca.pem_path().display().to_string(),
    ];
    let out = python(IMAPLIB_SCRIPT, &args, T).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "imaplib failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex: String = FIRST.iter().map(|b| format!("{b:02x}")).collect();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert_eq!(
        lines[0],
        format!("login OK [CAPABILITY {QQ_POST_LOGIN_CAPS}] Logged in")
    );
    for (line, step) in [(lines[1], "login"), (lines[3], "plain"), (lines[5], "tls")] {
        assert_eq!(line, format!("{step} exists 1 body {hex}"));
    }
    assert_eq!(lines[2], "plain OK");
    // After STARTTLS the capabilities offer AUTH= again, without LOGINDISABLED.
    assert!(
        lines[4].starts_with("starttls TLSv1.") && lines[4].ends_with(" False"),
        "{}",
        lines[4]
    );
    let logins = gw.fake.wait_logins(3, T).await;
    assert_eq!(logins.len(), 3, "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|l| l.user == EMAIL && l.password == CODE && l.accepted && l.over_tls),
        "{logins:?}"
    );
    gw.assert_clean();
}

#[tokio::test]
async fn curl_lists_inbox_and_fetches_a_message_with_and_without_ssl_reqd() {
    let curl = require("curl", "curl");
    let gw = Gateway::start(|o| o.message("INBOX", FIRST), |c| c).await;
    let proxy = &gw.proxy;
    let base = format!("imap://127.0.0.1:{}", proxy.imap_addr().port());
    let cacert = gw.ca.pem_path().display().to_string();
    let user = format!("{USER}:{PASSWORD}");
    for tls in [false, true] {
        let mut common = vec!["-sS", "--max-time", "10", "--user", &user];
        if tls {
            common.extend(["--ssl-reqd", "--cacert", &cacert]);
        }
        let list_url = format!("{base}/");
        let fetch_url = format!("{base}/INBOX;UID=1");
        for (url, what) in [(&list_url, "LIST"), (&fetch_url, "FETCH")] {
            let mut args: Vec<String> = common.iter().map(|a| (*a).to_owned()).collect();
            args.push(url.clone());
            let out = run(curl.clone(), args, None, T).await;
            assert!(
                out.status.success(),
                "curl {what} (tls {tls}) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if what == "LIST" {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.lines()
                        .any(|l| l.starts_with("* LIST (") && l.ends_with(" \"/\" \"INBOX\"")),
                    "{text}"
                );
                assert!(text.contains(QQ_SUBSCRIPTIONS), "{text}");
            } else {
                assert_eq!(out.stdout, FIRST, "curl {what} (tls {tls})");
            }
        }
    }
    let logins = gw.fake.wait_logins(4, T).await;
    assert_eq!(logins.len(), 4, "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|l| l.user == EMAIL && l.password == CODE && l.accepted),
        "{logins:?}"
    );
    gw.assert_clean();
}
