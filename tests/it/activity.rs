//! The activity record behind the status page (issue 14), through the real binary: a
//! good login that sends a message, a wrong local password and an account whose code the
//! upstream refuses; after a clean shutdown `state_dir/activity.json` holds all three
//! (recent sessions, the device, the hourly counts, the last upstream login per account
//! with the refusal and its hint) and no secret in any form; a restart goes on from it.
//! An upstream refusal inside the relay (a recipient) is the session's error.

use std::path::Path;

use qqmail_proxy::activity::{persist, Snapshot};
use qqmail_proxy::session::Outcome;

use crate::smtp::{dot_stuff, sample_message, Client, PASSWORD, RCPT, USER, WRONG};
use crate::support::ca::TestCa;
use crate::support::config::{Account, ConfigBuilder};
use crate::support::proxy::{secret_forms, Proxy};
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE};

/// The local user of the account whose code the upstream refuses.
const SCANNER: &str = "scanner";
const SCANNER_PASSWORD: &str = "Sc4nner-Pa55-77";
/// The refused account's stored code.
const REVOKED_CODE: &str = "Revoked-Code-2468";

fn read(state: &Path) -> (Snapshot, String) {
    let path = persist::path(state);
    let text = std::fs::read_to_string(&path).expect("activity.json after a clean shutdown");
    let snap = persist::read(&path).expect("readable").expect("present");
    (snap, text)
}

/// One SMTP session: EHLO, AUTH PLAIN as `user`, a message if the login worked, QUIT.
async fn session(proxy: &Proxy, user: &str, password: &str) -> String {
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let auth = c.auth_plain(user, password).await;
    if auth.starts_with("235") {
        let r = c
            .send_message(&[RCPT], &dot_stuff(&sample_message("activity")))
            .await;
        assert!(r.starts_with("250"), "{r}");
    }
    c.cmd("QUIT").await;
    auth
}

/// The gateway: account `main` (the fake accepts its code) for `printer`, account
/// `revoked` (a code the fake refuses with QQ's 535) for `scanner`; state in `state`.
fn gateway(ca: &TestCa, fake: &FakeSmtp, state: &Path) -> ConfigBuilder {
    ConfigBuilder::new(ca)
        .state_dir(Some(state.to_path_buf()))
        .account(Account::new("main").smtp_fake(fake))
        .account(
            Account::new("revoked")
                .email("67890@qq.com")
                .code(REVOKED_CODE)
                .code_file()
                .smtp_fake(fake),
        )
        .user(USER, PASSWORD, "main")
        .user(SCANNER, SCANNER_PASSWORD, "revoked")
        .smtp("optional")
        .local_cert_from(ca)
        .limit("lockout_failures", "100")
}

#[tokio::test]
async fn sessions_and_upstream_logins_are_kept_in_state_dir_without_secrets() {
    let ca = TestCa::new("it-activity CA");
    let fake = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let tmp = tempfile::tempdir().expect("state");
    let state = tmp.path().join("state");
    let b = gateway(&ca, &fake, &state);
    let proxy = Proxy::start_built(&b, &[]).await;
    assert!(session(&proxy, USER, PASSWORD).await.starts_with("235"));
    let wrong = session(&proxy, USER, WRONG).await;
    assert!(wrong.starts_with("535"), "{wrong}");
    let refused = session(&proxy, SCANNER, SCANNER_PASSWORD).await;
    assert!(!refused.starts_with("235"), "{refused}");
    assert!(proxy.terminate().await.success());

    let (snap, text) = read(&state);
    assert_sessions(&snap, &text);
    assert_device_hours_and_logins(&snap, &text);
    assert_no_secret(&text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(persist::path(&state))
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    // Restarted: the record goes on from the file.
    let proxy = Proxy::start_built(&b, &[]).await;
    assert!(session(&proxy, USER, PASSWORD).await.starts_with("235"));
    assert!(proxy.terminate().await.success());
    let (again, text) = read(&state);
    assert_eq!(again.recent.len(), 4, "{text}");
    assert_eq!(&again.recent[1..], &snap.recent[..]);
    assert_eq!(again.devices[0].sessions, 4);
    assert_eq!(again.devices[0].first_seen, snap.devices[0].first_seen);
    assert_eq!(again.upstream_logins.len(), 2);
}

/// Newest first: the refused account, the wrong password, the message.
fn assert_sessions(snap: &Snapshot, text: &str) {
    let results: Vec<Outcome> = snap.recent.iter().map(|e| e.result).collect();
    assert_eq!(
        results,
        [Outcome::UpstreamError, Outcome::AuthFailed, Outcome::Ok],
        "{text}"
    );
    let [up, bad, good] = &snap.recent[..] else {
        unreachable!()
    };
    assert_eq!(
        (good.user.as_deref(), good.messages, good.failed),
        (Some(USER), 1, false)
    );
    assert_eq!(good.account.as_deref(), Some("main"));
    assert!(good.bytes_in > 0 && good.bytes_out > 0);
    assert_eq!((bad.user.as_deref(), bad.failed), (None, true));
    assert!(
        bad.error.as_deref().is_some_and(|e| e.starts_with("535")),
        "{bad:?}"
    );
    assert_eq!(up.user.as_deref(), Some(SCANNER));
    assert!(
        up.error
            .as_deref()
            .is_some_and(|e| e.contains("Login Fail")),
        "{up:?}"
    );
    for e in &snap.recent {
        assert_eq!(
            (e.client.as_str(), e.host.as_str()),
            ("127.0.0.1", "127.0.0.1")
        );
    }
}

/// One device with both users and its last failure; this hour's counts; the last
/// upstream login per account, the refusal with `check`'s hint.
fn assert_device_hours_and_logins(snap: &Snapshot, text: &str) {
    assert_eq!(snap.devices.len(), 1, "{text}");
    let dev = &snap.devices[0];
    assert_eq!((dev.sessions, dev.messages, dev.failures), (3, 1, 2));
    assert_eq!(dev.users, [USER, SCANNER]);
    let last = dev.last_error.as_ref().expect("last error");
    assert_eq!(last.result, Outcome::UpstreamError);

    let messages: u64 = snap.hourly.iter().map(|h| h.messages).sum();
    let failures: u64 = snap.hourly.iter().map(|h| h.failures).sum();
    assert_eq!((messages, failures), (1, 2));

    let login = |id: &str| {
        snap.upstream_logins
            .iter()
            .find(|l| l.account == id)
            .unwrap()
    };
    assert!(login("main").ok);
    let revoked = login("revoked");
    assert!(!revoked.ok);
    assert!(
        revoked.error.as_deref().unwrap().contains("Login Fail"),
        "{revoked:?}"
    );
    assert_eq!(
        revoked.hint.as_deref(),
        Some(qqmail_proxy::upstream::hint::CODE_REFUSED)
    );
}

/// No code or password, in clear, base64 or as a PLAIN blob.
fn assert_no_secret(text: &str) {
    let users = [USER, SCANNER, "12345@qq.com", "67890@qq.com"];
    for secret in [
        DEFAULT_CODE,
        REVOKED_CODE,
        PASSWORD,
        WRONG,
        SCANNER_PASSWORD,
    ] {
        for (form, f) in secret_forms(secret, &users) {
            assert!(!text.contains(&f), "a secret ({form}) is in activity.json");
        }
    }
}

/// A recipient the upstream refuses, in a session that logged in and ended normally: the
/// session counts as a failure with the upstream's reply as its error (the hook in the
/// relay's refusal log, `session::smtp::verdict`).
#[tokio::test]
async fn an_upstream_refusal_in_the_relay_is_the_sessions_error() {
    let ca = TestCa::new("it-activity relay CA");
    let gone = "gone@example.com";
    let fake =
        FakeSmtp::start(SmtpOptions::implicit(&ca).rcpt_replies(gone, &["550 Mailbox not found"]));
    let tmp = tempfile::tempdir().expect("state");
    let state = tmp.path().join("state");
    let proxy = Proxy::start_built(&gateway(&ca, &fake, &state), &[]).await;
    let mut c = Client::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    assert!(c.auth_plain(USER, PASSWORD).await.starts_with("235"));
    assert!(c
        .cmd("MAIL FROM:<scan@printer.local>")
        .await
        .starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{gone}>")).await;
    assert!(r.starts_with("550"), "{r}");
    c.cmd("QUIT").await;
    assert!(proxy.terminate().await.success());

    let (snap, text) = read(&state);
    let [e] = &snap.recent[..] else {
        panic!("one session: {text}")
    };
    assert_eq!((e.result, e.failed), (Outcome::Ok, true), "{text}");
    assert_eq!(e.error.as_deref(), Some("550 Mailbox not found"));
    assert_eq!(snap.devices[0].failures, 1);
}
