//! TLS 1.0 and 1.1 on the local side (`[tls] min_version`, the `legacy-tls` feature):
//! `openssl s_client -tls1`/`-tls1_1` and Python's `ssl` limited to TLS 1.0 log in over
//! SMTP STARTTLS, IMAP STARTTLS, POP3 STLS, `tls://` and `auto://` listeners with
//! `min_version = "1.0"`, and are refused at the default with the handshake log line;
//! the start log names the listeners that accept old TLS.

use std::net::SocketAddr;

use base64::Engine as _;

use super::implicit::start_with;
use super::*;
use crate::support::proxy::Proxy;
use crate::support::tools::{python, require, run};

/// One endpoint of the proxy and how to reach it with s_client.
struct Endpoint {
    name: &'static str,
    addr: SocketAddr,
    /// `-starttls smtp|imap|pop3`, or none for implicit TLS.
    starttls: Option<&'static str>,
    protocol: &'static str,
}

/// SMTP, IMAP and POP3 over STARTTLS/STLS and over `tls://`.
fn endpoints(proxy: &Proxy) -> Vec<Endpoint> {
    let ready = proxy.readiness();
    let mut out = Vec::new();
    for (protocol, starttls) in [("smtp", "smtp"), ("imap", "imap"), ("pop3", "pop3")] {
        let addrs = ready.addrs(protocol);
        out.push(Endpoint {
            name: protocol,
            addr: addrs[0],
            starttls: None,
            protocol,
        });
        out.push(Endpoint {
            name: starttls,
            addr: addrs[1],
            starttls: Some(starttls),
            protocol,
        });
    }
    out
}

/// What the client types after the handshake (s_client `-crlf` turns `\n` into CRLF),
/// and the reply that proves the login.
fn login_script(protocol: &str) -> (String, &'static str) {
    match protocol {
        "smtp" => {
            let plain =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
            (
                format!("EHLO printer.test\nAUTH PLAIN {plain}\nQUIT\n"),
                "\n235 ",
            )
        }
        "imap" => (
            format!("a1 LOGIN {USER} {PASSWORD}\na2 LOGOUT\n"),
            "\na1 OK",
        ),
        _ => (format!("USER {USER}\nPASS {PASSWORD}\nQUIT\n"), "\n+OK"),
    }
}

/// `openssl s_client` at one protocol version and cipher string, typing `input`.
async fn s_client(e: &Endpoint, version: &str, cipher: &str, input: Option<String>) -> String {
    let openssl = require("openssl", "openssl");
    let mut args: Vec<String> = vec![
        "s_client".into(),
        "-connect".into(),
        e.addr.to_string(),
        version.into(),
        "-cipher".into(),
        cipher.into(),
        "-crlf".into(),
        // Wait for the server's reply to QUIT/LOGOUT instead of closing at the end of
        // stdin.
        "-ign_eof".into(),
    ];
    if let Some(p) = e.starttls {
        args.extend(["-starttls".into(), p.into()]);
    }
    let out = run(openssl, args, input.map(String::into_bytes), WAIT).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The protocol version and suite of the session, from s_client's "SSL-Session:" block
/// (its "New, TLSv1.0, Cipher is …" line names the suite's version, not the session's).
fn negotiated(out: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim_start_matches([' ', ':']).trim().to_string())
    };
    Some((field("Protocol  :")?, field("Cipher    :")?))
}

#[tokio::test]
async fn s_client_tls1_and_tls1_1_log_in_everywhere_with_min_version_1_0() {
    let (proxy, _tls, _keep, _builder, _ca) = start_with(&["min_version = \"1.0\""]).await;
    // One line at start names every listener that accepts old TLS.
    let start = proxy.wait_for_log("old TLS accepted", WAIT).await;
    for needle in [
        "min_version = \\\"1.0\\\"",
        "smtp tls://127.0.0.1:",
        "imap tls://127.0.0.1:",
        "pop3 tls://127.0.0.1:",
        "(STARTTLS)",
    ] {
        assert!(start.contains(needle), "{needle} in {start}");
    }
    // (client version, cipher string, the version and suite the session must get):
    // TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA by the server's preference, and
    // TLS_RSA_WITH_AES_128_CBC_SHA for a client that offers nothing else.
    let clients = [
        (
            "-tls1",
            "DEFAULT@SECLEVEL=0",
            "TLSv1",
            "ECDHE-RSA-AES128-SHA",
        ),
        (
            "-tls1_1",
            "DEFAULT@SECLEVEL=0",
            "TLSv1.1",
            "ECDHE-RSA-AES128-SHA",
        ),
        ("-tls1", "AES128-SHA@SECLEVEL=0", "TLSv1", "AES128-SHA"),
    ];
    for e in endpoints(&proxy) {
        for (version, cipher, want_version, want_suite) in clients {
            let (input, proof) = login_script(e.protocol);
            let out = s_client(&e, version, cipher, Some(input)).await;
            let what = format!("{} {version} {cipher}", e.name);
            assert_eq!(
                negotiated(&out),
                Some((want_version.to_string(), want_suite.to_string())),
                "{what}:\n{out}"
            );
            assert!(out.contains(proof), "{what}: no {proof:?} in\n{out}");
        }
    }
    assert!(!proxy.logs().contains("offered only"), "{}", proxy.logs());
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn s_client_tls1_and_tls1_1_are_refused_at_the_default_with_the_log_line() {
    let (proxy, _tls, _keep, _builder, _ca) = start_with(&[]).await;
    assert!(
        !proxy.logs().contains("old TLS accepted"),
        "{}",
        proxy.logs()
    );
    for e in endpoints(&proxy) {
        for (version, name) in [("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")] {
            let mark = proxy.log_mark();
            let (input, proof) = login_script(e.protocol);
            let out = s_client(&e, version, "DEFAULT@SECLEVEL=0", Some(input)).await;
            assert!(
                negotiated(&out).is_none() || out.contains("Cipher is (NONE)"),
                "{out}"
            );
            assert!(
                !out.contains(proof),
                "{} {version} logged in:\n{out}",
                e.name
            );
            let v = &name[4..];
            let line = proxy
                .wait_for_log_since(
                    mark,
                    &format!(
                        "client 127.0.0.1 offered only {name}; set [tls] min_version = \\\"{v}\\\" \
                         to accept this device"
                    ),
                    WAIT,
                )
                .await;
            assert!(line.contains("\"level\":\"WARN\""), "{line}");
        }
    }
}

/// Python's `ssl` (the system OpenSSL, a second TLS stack) limited to TLS 1.0, verifying
/// the exported CA: SMTP STARTTLS, SMTP_SSL, IMAP STARTTLS and POP3 STLS.
const PY_TLS10: &str = r#"
import imaplib, poplib, smtplib, ssl, sys
smtp_tls, smtp_plain, imap_plain, pop3_plain, cafile, user, password = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=cafile)
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1
ctx.set_ciphers("DEFAULT@SECLEVEL=0")

s = smtplib.SMTP("127.0.0.1", int(smtp_plain), timeout=20)
s.starttls(context=ctx)
print("SMTP-STARTTLS", s.sock.version(), s.login(user, password)[0])
s.quit()

s = smtplib.SMTP_SSL("127.0.0.1", int(smtp_tls), context=ctx, timeout=20)
print("SMTP-SSL", s.sock.version(), s.login(user, password)[0])
s.quit()

i = imaplib.IMAP4("127.0.0.1", int(imap_plain), timeout=20)
i.starttls(ssl_context=ctx)
print("IMAP-STARTTLS", i.sock.version(), i.login(user, password)[0])
i.logout()

p = poplib.POP3("127.0.0.1", int(pop3_plain), timeout=20)
p.stls(context=ctx)
print("POP3-STLS", p.sock.version(), p.user(user)[:3], p.pass_(password)[:3])
p.quit()
"#;

async fn python_tls10(proxy: &Proxy, cafile: &Path) -> (bool, String) {
    let ready = proxy.readiness();
    let args: Vec<String> = vec![
        ready.addrs("smtp")[0].port().to_string(),
        ready.addrs("smtp")[1].port().to_string(),
        ready.addrs("imap")[1].port().to_string(),
        ready.addrs("pop3")[1].port().to_string(),
        cafile.display().to_string(),
        USER.into(),
        PASSWORD.into(),
    ];
    let out = python(PY_TLS10, &args, WAIT).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn python_ssl_limited_to_tls_1_0_logs_in_with_min_version_1_0_only() {
    let (proxy, _tls, _keep, _builder, cafile) = start_with(&["min_version = \"1.0\""]).await;
    let (ok, out) = python_tls10(&proxy, &cafile).await;
    assert!(ok, "{out}");
    for expected in [
        "SMTP-STARTTLS TLSv1 235",
        "SMTP-SSL TLSv1 235",
        "IMAP-STARTTLS TLSv1 OK",
        "POP3-STLS TLSv1 b'+OK' b'+OK'",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    proxy.assert_no_secret(&secrets());

    let (proxy, _tls, _keep, _builder, cafile) = start_with(&[]).await;
    let (ok, out) = python_tls10(&proxy, &cafile).await;
    assert!(!ok, "TLS 1.0 accepted at the default:\n{out}");
    assert!(!out.contains("SMTP-STARTTLS TLSv1"), "{out}");
    proxy
        .wait_for_log("client 127.0.0.1 offered only TLS 1.0", WAIT)
        .await;
}

#[tokio::test]
async fn auto_listener_serves_tls_1_0_implicit_tls() {
    let (_ca, smtp, builder) = generated_cert_setup();
    let builder = builder
        .listen("smtp", &["auto://127.0.0.1:0"])
        .tls_line("min_version = \"1.0\"");
    let proxy = Proxy::start_built(&builder, &[]).await;
    let start = proxy.wait_for_log("old TLS accepted", WAIT).await;
    assert!(start.contains("smtp auto://127.0.0.1:"), "{start}");
    let e = Endpoint {
        name: "smtp auto://",
        addr: proxy.smtp_addr(),
        starttls: None,
        protocol: "smtp",
    };
    let (input, proof) = login_script("smtp");
    let out = s_client(&e, "-tls1", "DEFAULT@SECLEVEL=0", Some(input)).await;
    assert_eq!(
        negotiated(&out),
        Some(("TLSv1".into(), "ECDHE-RSA-AES128-SHA".into())),
        "{out}"
    );
    assert!(out.contains(proof), "{out}");
    let implicit = proxy.wait_for_log("\"tls\":\"implicit\"", WAIT).await;
    assert!(implicit.contains("session end"), "{implicit}");
    smtp.wait_auth_attempts(1, WAIT).await;
    proxy.assert_no_secret(&secrets());
}
