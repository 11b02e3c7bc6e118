//! Password guessing: distinct failures slow down, the address is locked out after
//! `lockout_failures` of them (logged once, even the right password refused, other
//! addresses unaffected), concurrent guesses cannot get past the lockout, a repeated
//! wrong password (a device with a stale one) counts once, and neither successful logins
//! between guesses (the victim's own or with another known password) nor a SIGHUP reset
//! the count.

use std::time::{Duration, Instant};

use super::*;
use crate::support::proxy::Proxy;
use crate::support::smtp::SmtpOptions;

/// The proxy's failure delays: 250 ms doubling per distinct failure, capped at 4 s
/// (src/auth/failures.rs).
const DELAYS_MS: [u64; 10] = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000];
const LOCKED_LOG: &str = "address locked out";
const TOO_MANY: &str = "421 4.7.0 Error: too many failed authentications";

/// One failed AUTH on a fresh connection: (reply, latency of the AUTH reply).
async fn guess(addr: SocketAddr, password: String) -> (Got, Duration) {
    let mut c = Client::connect(addr, None).await.expect("connect");
    c.smtp_reply().await.text();
    c.cmd("EHLO guesser").await.text();
    let t = Instant::now();
    let got = c
        .cmd(&format!("AUTH PLAIN {}", plain(USER, &password)))
        .await;
    (got, t.elapsed())
}

fn count(proxy: &Proxy, needle: &str) -> usize {
    proxy.logs().lines().filter(|l| l.contains(needle)).count()
}

/// A fake QQ and a config whose lockout comes after `failures` distinct failures and
/// lasts an hour (longer than any test). The CA must outlive the proxy.
fn lockout_after(name: &str, failures: u32) -> (TestCa, FakeSmtp, ConfigBuilder) {
    let ca = TestCa::new(name);
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let builder = smtp_builder(&ca, &smtp)
        .limit("lockout_failures", &failures.to_string())
        .limit("lockout_duration", "\"1h\"");
    (ca, smtp, builder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_slow_down_then_lock_out_one_address_only() {
    let (_ca, smtp, builder) = lockout_after("brute force CA", 10);
    let builder = builder.limit("max_auth_failures", "100");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    let mut latencies = Vec::new();

    // Failures 1..5 on one connection, one after the other: each waits longer.
    let mut c = Client::connect(addr, None).await.expect("connect");
    c.smtp_reply().await.text();
    c.cmd("EHLO guesser").await.text();
    for n in 0..5 {
        let t = Instant::now();
        let reply = c
            .cmd(&format!(
                "AUTH PLAIN {}",
                plain(USER, &format!("wrong-{n}"))
            ))
            .await
            .text();
        latencies.push(t.elapsed());
        assert!(reply.starts_with("535 "), "failure {}: {reply}", n + 1);
    }
    // Failures 6..10 at once from five connections: all at the 4 s cap, and the tenth
    // locks the address out (its connection is closed).
    let tasks: Vec<_> = (5..10)
        .map(|n| tokio::spawn(guess(addr, format!("wrong-{n}"))))
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        let (got, latency) = t.await.expect("guess task");
        latencies.push(latency);
        replies.push(got);
    }
    let printed: Vec<u128> = latencies.iter().map(Duration::as_millis).collect();
    println!("failure latencies 1..10 (ms): {printed:?}");
    for (n, (latency, want)) in latencies.iter().zip(DELAYS_MS).enumerate() {
        let want = Duration::from_millis(want);
        assert!(
            *latency >= want.mul_f32(0.9) && *latency < want + Duration::from_secs(2),
            "failure {} took {latency:?}, expected about {want:?}",
            n + 1
        );
    }
    assert!(
        latencies[..5].windows(2).all(|w| w[1] > w[0]),
        "{printed:?}"
    );
    let locked = replies
        .iter()
        .filter(|g| matches!(g, Got::Reply(r) if r.starts_with(TOO_MANY)))
        .count();
    let rejected = replies
        .iter()
        .filter(|g| matches!(g, Got::Reply(r) if r.starts_with("535 ")))
        .count();
    assert_eq!((rejected, locked), (4, 1), "{replies:?}");
    proxy.wait_for_log(LOCKED_LOG, REPLY_WAIT).await;

    // Locked: even the right password is refused, at once.
    for _ in 0..3 {
        let (got, latency) = guess(addr, PASSWORD.to_owned()).await;
        assert!(
            matches!(&got, Got::Reply(r) if r.starts_with(TOO_MANY)),
            "{got:?}"
        );
        assert!(latency < Duration::from_millis(500), "{latency:?}");
    }
    // Another address logs in and sends as usual.
    let (mut other, auth) = smtp_login(addr, Some(OTHER_IP), USER, PASSWORD).await;
    assert!(auth.text().starts_with("235 "));
    let sent = send_message(&mut other, b"Subject: still here\r\n\r\nhi\r\n").await;
    assert!(sent.text().starts_with("250 "));
    smtp.wait_messages(1, REPLY_WAIT).await;
    assert_eq!(count(&proxy, LOCKED_LOG), 1, "the lockout is logged once");

    // What this means for an attacker with the defaults (10 failures, 15 min lockout):
    // each lockout costs 15 min, and the ten guesses before it at least the 4 s cap.
    let cycle = 15.0 * 60.0 + 4.0;
    let per_hour = 10.0 * 3600.0 / cycle;
    let hours_per_1000 = 1000.0 / per_hour;
    println!(
        "defaults: at most {per_hour:.1} guesses/hour per client address; \
         1,000 guesses take at least {hours_per_1000:.1} h"
    );
    proxy.assert_no_secret(&secrets());
}

/// Guesses sent at the same moment from many connections: each check in progress holds
/// one of the address's `lockout_failures` slots, the others wait, and once the lockout
/// is recorded they are refused unchecked: fewer than `lockout_failures` get a 535 that
/// tells anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_cannot_outrun_the_lockout() {
    let (_ca, _smtp, builder) = lockout_after("burst CA", 10);
    let builder = builder.limit("max_sessions_per_ip", "64");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    // Unknown users are checked against a dummy hash with the proxy's full argon2 cost
    // (tens of ms), which is the window concurrent guesses would race through.
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(addr, None).await.expect("connect");
        c.smtp_reply().await.text();
        c.cmd("EHLO burst").await.text();
        clients.push(c);
    }
    for (n, c) in clients.iter_mut().enumerate() {
        let line = format!("AUTH PLAIN {}\r\n", plain("nobody", &format!("guess-{n}")));
        assert!(c.send(line.as_bytes()).await);
    }
    let mut replies = Vec::new();
    for c in &mut clients {
        replies.push(c.smtp_reply().await);
    }
    let answered = replies
        .iter()
        .filter(|g| matches!(g, Got::Reply(r) if r.starts_with("535 ")))
        .count();
    let locked = replies
        .iter()
        .filter(|g| matches!(g, Got::Reply(r) if r.starts_with(TOO_MANY)))
        .count();
    println!("20 simultaneous guesses: {answered} answered 535, {locked} locked out");
    assert_eq!(answered + locked, 20, "{replies:?}");
    // Ten were checked; the tenth failure locked its own answer too.
    assert_eq!(
        answered, 9,
        "{answered} guesses were answered although the lockout comes after 10"
    );
    assert_eq!(count(&proxy, LOCKED_LOG), 1);
    proxy.assert_no_secret(&secrets());
}

/// A device with a stale password retrying it 20 times: a repeat adds no guessing power
/// and counts once, so the address stays open and the right password still works; nine
/// other wrong passwords make ten distinct failures, and lock it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_wrong_password_counts_once() {
    let (_ca, _smtp, builder) = lockout_after("stale device CA", 10);
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    for n in 1..=20 {
        let (got, latency) = guess(addr, "St4le-Pa55".to_owned()).await;
        assert!(
            matches!(&got, Got::Reply(r) if r.starts_with("535 ")),
            "attempt {n}: {got:?}"
        );
        // Always the first failure's delay: one distinct failure.
        assert!(
            latency >= Duration::from_millis(225) && latency < Duration::from_millis(2250),
            "attempt {n} took {latency:?}"
        );
    }
    assert_eq!(count(&proxy, LOCKED_LOG), 0);
    let got = auth_reply(addr, None, USER, PASSWORD).await;
    assert!(got.starts_with("235 "), "{got}");

    let tasks: Vec<_> = (1..=9)
        .map(|n| tokio::spawn(guess(addr, format!("wrong-{n}"))))
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("guess task").0);
    }
    let locked = replies
        .iter()
        .filter(|g| matches!(g, Got::Reply(r) if r.starts_with(TOO_MANY)))
        .count();
    let rejected = replies
        .iter()
        .filter(|g| matches!(g, Got::Reply(r) if r.starts_with("535 ")))
        .count();
    assert_eq!((rejected, locked), (8, 1), "{replies:?}");
    let got = auth_reply(addr, None, USER, PASSWORD).await;
    assert!(got.starts_with(TOO_MANY), "{got}");
    assert_eq!(count(&proxy, LOCKED_LOG), 1);
    proxy.assert_no_secret(&[DEFAULT_CODE, PASSWORD, "St4le-Pa55"]);
}

/// Someone sharing the victim's address guesses at the victim's password between the
/// victim's own logins (checked by argon2 first, then from the cache): the victim's
/// successes forgive nothing, so the guesses still add up to a lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_victims_logins_between_guesses_do_not_reset_the_count() {
    let (_ca, _smtp, builder) = lockout_after("victim CA", 3);
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    let (ok, no) = ("235 ", "535 ");
    #[rustfmt::skip]
    let steps: &[(&str, &str)] = &[
        ("guess-1", no), (PASSWORD, ok), ("guess-2", no), (PASSWORD, ok), (PASSWORD, ok),
        ("guess-3", TOO_MANY), (PASSWORD, TOO_MANY),
    ];
    for (n, (password, want)) in steps.iter().enumerate() {
        let got = auth_reply(addr, None, USER, password).await;
        assert!(got.starts_with(want), "step {}: {got}", n + 1);
    }
    assert_eq!(count(&proxy, LOCKED_LOG), 1);
    // The victim can still log in from elsewhere.
    let got = auth_reply(addr, Some(OTHER_IP), USER, PASSWORD).await;
    assert!(got.starts_with(ok), "{got}");
    proxy.assert_no_secret(&secrets());
}

/// One AUTH PLAIN on a fresh connection from `source`: the reply's first line.
async fn auth_reply(addr: SocketAddr, source: Option<IpAddr>, user: &str, pw: &str) -> String {
    let (_c, got) = smtp_login(addr, source, user, pw).await;
    match got {
        Got::Reply(r) | Got::Closed(r) => r,
    }
}

/// Someone who knows printer's password logs in with it between guesses at scanner's,
/// and has the proxy reloaded: the guesses still add up to a lockout, which the reloads
/// do not lift. The success cache, users and hashes do follow each reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_logins_and_reloads_do_not_reset_the_count() {
    const SCANNER_PASSWORD: &str = "Sc4nner-Pa55";
    const NEW_PASSWORD: &str = "N3w-Pr1nter-Pa55";
    let (_ca, _smtp, builder) = lockout_after("reload lockout CA", 3);
    let base = builder.build();
    let scanner = crate::cli::user_toml("scanner", SCANNER_PASSWORD, "main");
    let with_scanner = format!("{base}{scanner}");
    let proxy = Reloadable::start(&builder, &with_scanner).await;
    let addr = proxy.proxy.smtp_addr();
    let ok = "235 ";
    let no = "535 ";
    let steps: &[(&str, &str, &str, bool)] = &[
        // (user, password, reply, reload before this step)
        ("scanner", "guess-1", no, false),
        (USER, PASSWORD, ok, false),
        ("scanner", "guess-2", no, false),
        (USER, PASSWORD, ok, true),
        // The third failure from this address: locked although two came before a reload
        // and a successful login came between each.
        ("scanner", "guess-3", TOO_MANY, false),
        (USER, PASSWORD, TOO_MANY, true),
        ("scanner", SCANNER_PASSWORD, TOO_MANY, false),
    ];
    for (n, (user, password, want, reload)) in steps.iter().enumerate() {
        if *reload {
            proxy.reload(&with_scanner).await;
        }
        let got = auth_reply(addr, None, user, password).await;
        assert!(got.starts_with(want), "step {}: {user}: {got}", n + 1);
    }
    assert_eq!(
        count(&proxy.proxy, LOCKED_LOG),
        1,
        "the lockout is logged once"
    );

    // From another address: scanner logs in (and is cached); then a reload removes
    // scanner and changes printer's password, which must bite at once.
    let got = auth_reply(addr, Some(OTHER_IP), "scanner", SCANNER_PASSWORD).await;
    assert!(got.starts_with(ok), "{got}");
    let old_hash = &builder.users()[0].password_hash;
    let changed = base.replace(
        old_hash.as_str(),
        &crate::support::config::argon2_hash(NEW_PASSWORD),
    );
    assert_ne!(changed, base);
    proxy.reload(&changed).await;
    for (user, password, want) in [
        ("scanner", SCANNER_PASSWORD, no),
        (USER, PASSWORD, no),
        (USER, NEW_PASSWORD, ok),
    ] {
        let got = auth_reply(addr, Some(OTHER_IP), user, password).await;
        assert!(
            got.starts_with(want),
            "{user}/{password} after the reload: {got}"
        );
    }
    // The first address is still locked out, new password or not.
    let got = auth_reply(addr, None, USER, NEW_PASSWORD).await;
    assert!(got.starts_with(TOO_MANY), "{got}");
    proxy.proxy.assert_no_secret_for(
        &[DEFAULT_CODE, PASSWORD, SCANNER_PASSWORD, NEW_PASSWORD],
        &["scanner"],
    );
}
