//! Guessing from many IPv6 addresses (issue 16, item 2). On the proxy's own /64 each
//! address is a host of its own for the per-host lockout, and one LAN machine can give
//! itself thousands: the per-user budget must bound the guesses whatever the address.
//! The test makes a network namespace with the proxy's address and one client address
//! per guess, runs the real binary inside it (`ip netns exec`) against a recording fake
//! upstream, and guesses once from each address, the right password among the guesses.

use tokio::net::TcpSocket;

use super::netns::Netns;
use super::*;
use crate::support::proxy::{Launch, Proxy};
use crate::support::smtp::SmtpOptions;

/// Addresses, one guess each.
const GUESSES: u16 = 120;
/// The guesser's list holds the right password at this position: found, were every
/// guess checked.
const RIGHT_AT: u16 = 90;
/// The per-user budget in this test (the default is 20).
const BUDGET: u64 = 10;
/// Guesses in flight at once.
const PARALLEL: usize = 12;

/// One AUTH PLAIN over `socket` from `source`: the reply's first line.
async fn login(socket: TcpSocket, addr: SocketAddr, source: IpAddr, password: String) -> String {
    let mut c = Client::connect_with(socket, addr, Some(source))
        .await
        .expect("connect inside the namespace");
    c.smtp_reply().await.text();
    c.cmd("EHLO guesser").await.text();
    match c
        .cmd(&format!("AUTH PLAIN {}", plain(USER, &password)))
        .await
    {
        Got::Reply(r) | Got::Closed(r) => r,
    }
}

/// `GET /metrics` from inside the namespace: the value of each counter named.
async fn counters(ns: &Netns, admin: SocketAddr, names: &[&str]) -> Vec<u64> {
    let socket = ns.sockets(1).pop().expect("socket");
    let mut tcp = socket.connect(admin).await.expect("connect to admin");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.expect("metrics");
    names
        .iter()
        .map(|name| {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_many_ipv6_addresses_are_bounded_per_user() {
    let ns = Netns::create(GUESSES + 2);
    let ca = TestCa::new("ipv6 guessing CA");
    // The fake QQ listens inside the namespace too: the proxy reaches it on 127.0.0.1.
    let listener = ns.enter(|| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    let smtp = FakeSmtp::start_on(listener, SmtpOptions::implicit(&ca));
    let proxy_ip = Netns::proxy_ip();
    let builder = smtp_builder(&ca, &smtp)
        .listen("smtp", &[&format!("[{proxy_ip}]:0")])
        .limit("user_throttle_failures", &BUDGET.to_string())
        .limit("user_throttle_interval", "\"1h\"")
        .extra(&crate::support::config::admin_off_loopback(
            &format!("[{proxy_ip}]:0"),
            "admin-pw",
        ));
    let mut words = ns.exec_prefix().to_vec();
    words.push(env!("CARGO_BIN_EXE_qqmail-proxy"));
    let proxy = Proxy::launch(Launch::from_builder(&builder).program("ip", &words)).await;
    let addr = proxy.smtp_addr();

    // The owner logs in from its usual address before the attack.
    let owner = Netns::client_ip(GUESSES);
    let mut sockets = ns.sockets(GUESSES as usize + 3);
    let got = login(
        sockets.pop().expect("socket"),
        addr,
        owner,
        PASSWORD.to_owned(),
    )
    .await;
    assert!(got.starts_with("235 "), "the owner, before: {got}");

    // One guess from each address, the right password at RIGHT_AT.
    let mut replies = Vec::new();
    let rest = sockets.split_off(GUESSES as usize);
    let mut guesses = (0..GUESSES)
        .zip(std::mem::replace(&mut sockets, rest))
        .peekable();
    while guesses.peek().is_some() {
        let batch: Vec<_> = guesses
            .by_ref()
            .take(PARALLEL)
            .map(|(n, socket)| {
                let password = match n {
                    RIGHT_AT => PASSWORD.to_owned(),
                    n => format!("guess-{n}"),
                };
                tokio::spawn(login(socket, addr, Netns::client_ip(n), password))
            })
            .collect();
        for task in batch {
            replies.push(task.await.expect("guess task"));
        }
    }
    let accepted = replies.iter().filter(|r| r.starts_with("235 ")).count();
    let refused = replies.iter().filter(|r| r.starts_with("535 ")).count();
    println!("{GUESSES} guesses from {GUESSES} addresses: {accepted} accepted, {refused} refused");
    assert_eq!(
        replies[usize::from(RIGHT_AT)].get(..4),
        Some("535 "),
        "guess {RIGHT_AT}, the right password from a fresh address, found it: every guess \
         was checked"
    );
    // Refused like wrong passwords (no reply tells a throttled login from a checked one).
    assert_eq!(
        (accepted, refused),
        (0, usize::from(GUESSES)),
        "{replies:?}"
    );

    let line = proxy.wait_for_log("is under attack", REPLY_WAIT).await;
    for words in [
        "local user",
        "printer",
        "addresses in the last",
        "throttled to one per 1h",
    ] {
        assert!(line.contains(words), "{words:?} missing from {line}");
    }
    // The owner's usual address still gets in during the attack.
    let got = login(
        sockets.pop().expect("socket"),
        addr,
        owner,
        PASSWORD.to_owned(),
    )
    .await;
    assert!(
        got.starts_with("235 "),
        "the owner, during the attack: {got}"
    );
    // The upstream saw the owner's two logins and nothing else.
    assert_eq!(smtp.auth_attempts().len(), 2, "upstream logins");

    let [checks, throttled, attacks] = counters(
        &ns,
        proxy.admin_addr(),
        &[
            "qqmail_proxy_password_checks_total",
            "qqmail_proxy_logins_throttled_total",
            "qqmail_proxy_users_attacked_total",
        ],
    )
    .await[..] else {
        unreachable!()
    };
    println!("password checks: {checks}, throttled: {throttled}, attacks: {attacks}");
    // The owner's first login, then at most the budget's worth of guesses.
    assert!(checks <= 1 + BUDGET, "{checks} password checks");
    assert_eq!(throttled + (checks - 1), u64::from(GUESSES));
    assert_eq!(attacks, 1);
    let logged = proxy
        .logs()
        .lines()
        .filter(|l| l.contains("is under attack"))
        .count();
    assert_eq!(logged, 1, "the attack is logged once");
    proxy.assert_no_secret(&secrets());
    drop(proxy);
    drop(ns);
}
