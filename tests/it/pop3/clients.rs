//! Real POP3 clients through the proxy: Python poplib (plain and STLS), curl (plain and
//! `--ssl-reqd`), AUTH PLAIN from a raw client, a 20 MB RETR, and multi-line responses
//! relayed byte for byte.

use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{big_message, qq_opts, secrets, start, Raw, PASSWORD, USER, WAIT};
use crate::support::ca::TestCa;
use crate::support::config::ConfigBuilder;
use crate::support::pop3::{dot_stuff, FakePop3};
use crate::support::proxy::Proxy;
use crate::support::smtp::{DEFAULT_CODE, DEFAULT_USER};
use crate::support::tools::{python, require, run};
use crate::support::upstream::LoginMethod;

/// A message whose body has lines that must be dot-stuffed on the wire (RFC 1939 §3).
const DOTTY: &[u8] =
    b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nnot.start\r\n. \r\n\xb7\xfe gbk\r\nend\r\n";
/// A second, plain message.
const SECOND: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";

/// poplib session: `host port user pass mode [cafile]`; mode `plain` or `stls`. Prints
/// `key=value` lines; the RETR lines (unstuffed by poplib) are joined with CRLF, in hex.
const POPLIB: &str = r#"
import poplib, ssl, sys
host, port, user, pw, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
p = poplib.POP3(host, port, timeout=10)
print("welcome=" + p.getwelcome().decode("latin-1"))
if mode == "stls":
    ctx = ssl.create_default_context(cafile=sys.argv[6])
    print("stls=" + p.stls(context=ctx).decode("latin-1"))
    print("tls=" + p.sock.version())
print("user=" + p.user(user).decode("latin-1"))
print("pass=" + p.pass_(pw).decode("latin-1"))
count, size = p.stat()
print("stat=%d %d" % (count, size))
resp, listing, _ = p.list()
print("list=" + ",".join(l.decode("latin-1") for l in listing))
resp, lines, octets = p.retr(1)
print("retr=" + b"\r\n".join(lines).hex())
print("quit=" + p.quit().decode("latin-1"))
"#;

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    out.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in poplib output:\n{out}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn poplib(proxy: &Proxy, mode: &str, cafile: Option<&TestCa>) -> String {
    let mut args = vec![
        "127.0.0.1".to_string(),
        proxy.pop3_addr().port().to_string(),
        USER.to_string(),
        PASSWORD.to_string(),
        mode.to_string(),
    ];
    if let Some(ca) = cafile {
        args.push(ca.pem_path().display().to_string());
    }
    let out = python(POPLIB, &args, WAIT * 2).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "poplib failed: {}\nstdout:\n{stdout}\nstderr:\n{}\nproxy log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        proxy.logs()
    );
    stdout
}

/// Checks one poplib session's output against the fake's single message [`DOTTY`].
fn assert_poplib_session(out: &str) {
    assert!(field(out, "welcome").starts_with("+OK"), "{out}");
    assert!(field(out, "user").starts_with("+OK"), "{out}");
    assert_eq!(field(out, "pass"), "+OK Logged in");
    assert_eq!(field(out, "stat"), format!("1 {}", DOTTY.len()));
    assert_eq!(field(out, "list"), format!("1 {}", DOTTY.len()));
    // poplib joins the unstuffed lines; the original ends in CRLF, which the join drops.
    let want = DOTTY.strip_suffix(b"\r\n").expect("CRLF-terminated");
    assert_eq!(field(out, "retr"), hex(want), "message changed in transit");
    assert!(field(out, "quit").starts_with("+OK"), "{out}");
}

#[tokio::test]
async fn poplib_user_pass_stat_list_retr_quit() {
    let ca = TestCa::new("pop3 poplib CA");
    let (fake, _b, proxy) = start(&ca, qq_opts(&ca).message(DOTTY)).await;
    let out = poplib(&proxy, "plain", None).await;
    assert_poplib_session(&out);
    let logins = fake.logins();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].user, DEFAULT_USER);
    assert_eq!(
        logins[0].password, DEFAULT_CODE,
        "the stored code was injected"
    );
    assert!(logins[0].over_tls && logins[0].accepted, "{logins:?}");
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn poplib_stls_trusts_the_local_certificate_and_tls_is_required() {
    let ca = TestCa::new("pop3 stls CA");
    let fake = FakePop3::start(qq_opts(&ca).message(DOTTY)).await;
    let b: ConfigBuilder = super::builder(&ca, super::server_of(&fake))
        .pop3("required")
        .local_cert_from(&ca);
    let proxy = Proxy::start_built(&b, &[]).await;

    // Before STLS a required listener takes no credentials (RFC 2595 §2.3).
    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    assert_eq!(
        raw.cmd(&format!("USER {USER}")).await,
        "-ERR Use STLS first\r\n"
    );
    assert_eq!(raw.cmd("QUIT").await, "+OK qqmail-proxy signing off\r\n");

    let out = poplib(&proxy, "stls", Some(&ca)).await;
    assert!(field(&out, "stls").starts_with("+OK"), "{out}");
    assert!(field(&out, "tls").starts_with("TLSv1."), "{out}");
    assert_poplib_session(&out);
    assert_eq!(fake.logins().len(), 1);
    proxy.assert_no_secret(&secrets());
}

async fn curl(proxy: &Proxy, extra: &[String], path: &str) -> Vec<u8> {
    let curl = require("curl", "curl");
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "10".into(),
        "-u".into(),
        format!("{USER}:{PASSWORD}"),
    ];
    args.extend(extra.iter().cloned());
    args.push(format!(
        "pop3://127.0.0.1:{}/{path}",
        proxy.pop3_addr().port()
    ));
    let out = run(curl, args, None, WAIT * 2).await;
    assert!(
        out.status.success(),
        "curl failed ({}): {}\nproxy log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        proxy.logs()
    );
    out.stdout
}

#[tokio::test]
async fn curl_pop3_with_and_without_ssl_reqd() {
    let ca = TestCa::new("pop3 curl CA");
    let fake = FakePop3::start(qq_opts(&ca).message(DOTTY)).await;
    let b = super::builder(&ca, super::server_of(&fake)).local_cert_from(&ca);
    let proxy = Proxy::start_built(&b, &[]).await;

    let listing = curl(&proxy, &[], "").await;
    assert_eq!(listing, format!("1 {}\r\n", DOTTY.len()).as_bytes());
    assert_eq!(curl(&proxy, &[], "1").await, DOTTY, "curl RETR");

    let tls = [
        "--ssl-reqd".to_string(),
        "--cacert".to_string(),
        ca.pem_path().display().to_string(),
    ];
    assert_eq!(curl(&proxy, &tls, "1").await, DOTTY, "curl RETR over STLS");
    assert_eq!(fake.logins().len(), 3, "{:?}", fake.logins());
    assert!(fake.logins().iter().all(|l| l.password == DEFAULT_CODE));
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn auth_plain_with_and_without_initial_response() {
    let ca = TestCa::new("pop3 auth plain CA");
    let (fake, _b, proxy) = start(&ca, qq_opts(&ca).message(DOTTY)).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let blob = b64.encode(format!("\0{USER}\0{PASSWORD}"));

    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    assert_eq!(
        raw.cmd(&format!("AUTH PLAIN {blob}")).await,
        "+OK Logged in\r\n"
    );
    assert_eq!(raw.cmd("STAT").await, format!("+OK 1 {}\r\n", DOTTY.len()));
    assert_eq!(raw.cmd("QUIT").await, "+OK Bye\r\n");

    let (mut raw, _) = Raw::connect(proxy.pop3_addr()).await;
    assert_eq!(raw.cmd("AUTH PLAIN").await, "+ \r\n");
    assert_eq!(raw.cmd(&blob).await, "+OK Logged in\r\n");
    assert_eq!(raw.cmd("STAT").await, format!("+OK 1 {}\r\n", DOTTY.len()));
    assert_eq!(raw.cmd("QUIT").await, "+OK Bye\r\n");

    // The proxy logs in upstream with USER/PASS whatever the client used.
    let logins = fake.wait_logins(2, WAIT).await;
    assert!(
        logins
            .iter()
            .all(|l| l.method == LoginMethod::Pop3UserPass && l.accepted),
        "{logins:?}"
    );
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn retr_of_20_mb_is_byte_identical() {
    let ca = TestCa::new("pop3 big CA");
    let message = big_message(20 * 1024 * 1024);
    let (_fake, _b, proxy) = start(&ca, qq_opts(&ca).message(message.clone())).await;
    let mut raw = Raw::login(proxy.pop3_addr()).await;
    assert_eq!(
        raw.cmd("RETR 1").await,
        format!("+OK {} octets\r\n", message.len())
    );
    let got = raw.multi(Duration::from_secs(60)).await;
    let mut want = dot_stuff(&message);
    want.extend_from_slice(b".\r\n");
    assert_eq!(got.len(), want.len(), "length differs");
    assert_eq!(
        hex(&Sha256::digest(&got)),
        hex(&Sha256::digest(&want)),
        "RETR payload differs"
    );
    assert_eq!(raw.cmd("QUIT").await, "+OK Bye\r\n");
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn multi_line_responses_pass_untouched() {
    let ca = TestCa::new("pop3 multiline CA");
    let (_fake, _b, proxy) = start(&ca, qq_opts(&ca).message(DOTTY).message(SECOND)).await;
    let mut raw = Raw::login(proxy.pop3_addr()).await;
    // After login, CAPA is the upstream's list, not the proxy's login-phase one.
    assert!(raw.cmd("CAPA").await.starts_with("+OK"));
    let capa = raw.multi(WAIT).await;
    assert_eq!(
        capa,
        b"TOP\r\nUSER\r\nPIPELINING\r\nUIDL\r\nSASL PLAIN\r\n.\r\n"
    );
    // Pipelined (RFC 2449 §6.6): every answer arrives, in order.
    raw.send(b"LIST\r\nRETR 1\r\nTOP 1 2\r\nUIDL 2\r\n").await;
    let total = DOTTY.len() + SECOND.len();
    assert_eq!(
        raw.line().await,
        format!("+OK 2 messages ({total} octets)\r\n")
    );
    assert_eq!(
        raw.multi(WAIT).await,
        format!("1 {}\r\n2 {}\r\n.\r\n", DOTTY.len(), SECOND.len()).as_bytes()
    );
    assert_eq!(raw.line().await, format!("+OK {} octets\r\n", DOTTY.len()));
    let mut want = dot_stuff(DOTTY);
    want.extend_from_slice(b".\r\n");
    assert_eq!(
        raw.multi(WAIT).await,
        want,
        "dot-stuffing must be relayed as is"
    );
    assert!(raw.line().await.starts_with("+OK"));
    assert_eq!(
        raw.multi(WAIT).await,
        &b"Subject: dots\r\n\r\n..hidden\r\n...two\r\n.\r\n"[..]
    );
    assert!(raw.line().await.starts_with("+OK 2 ZC"));
    assert_eq!(raw.cmd("QUIT").await, "+OK Bye\r\n");
    proxy.assert_no_secret(&secrets());
}
