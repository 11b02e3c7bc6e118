//! `tls://` listeners (implicit TLS, as SMTPS 465, IMAPS 993, POP3S 995): Python's
//! SMTP_SSL, IMAP4_SSL and POP3_SSL and curl's smtps://, imaps://, pop3s:// log in with
//! only the exported CA trusted; STARTTLS/STLS is neither advertised nor accepted there;
//! the session line says `tls=implicit`.

use std::net::SocketAddr;

use crate::support::ca::UPSTREAM_NAMES;
use crate::support::imap::{FakeImap, ImapOpts};
use crate::support::pop3::{FakePop3, Pop3Opts};
use crate::support::proxy::Proxy;
use crate::support::smtp::DEFAULT_USER as SMTP_USER;
use crate::support::tools::{python, require, run};
use crate::support::upstream::TlsMode;

use super::*;

/// Each protocol on `tls://127.0.0.1:0` (announced first) and a plain `127.0.0.1:0`,
/// STARTTLS optional on the plain ones, certificate generated.
async fn start() -> (Proxy, [SocketAddr; 3], impl Drop, ConfigBuilder, PathBuf) {
    start_with(&[]).await
}

/// [`start`], with these lines added to `[tls]`.
pub(super) async fn start_with(
    tls_lines: &[&str],
) -> (Proxy, [SocketAddr; 3], impl Drop, ConfigBuilder, PathBuf) {
    let ca = TestCa::new("implicit upstream CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    // The IMAP and POP3 fakes expect the SMTP fake's user, the account's address.
    let tls = TlsMode::Implicit(ca.server_config(UPSTREAM_NAMES));
    let imap = FakeImap::start(ImapOpts::default().tls(tls.clone()).user(SMTP_USER)).await;
    let pop3 = FakePop3::start(Pop3Opts::default().tls(tls).user(SMTP_USER)).await;
    let account = Account::new("main")
        .smtp_fake(&smtp)
        .imap(format!("127.0.0.1:{}", imap.addr().port()))
        .pop3(format!("127.0.0.1:{}", pop3.addr().port()));
    let mut builder = ConfigBuilder::new(&ca)
        .account(account)
        .user(USER, PASSWORD, "main")
        .smtp("optional")
        .imap("optional")
        .pop3("optional");
    for section in ["smtp", "imap", "pop3"] {
        builder = builder.listen(section, &["tls://127.0.0.1:0", "127.0.0.1:0"]);
    }
    for line in tls_lines {
        builder = builder.tls_line(line);
    }
    let proxy = Proxy::start_built(&builder, &[]).await;
    let ready = proxy.readiness();
    let tls = ["smtp", "imap", "pop3"].map(|p| ready.addrs(p)[0]);
    let cafile = export_ca(&builder, builder.dir(), "exported-ca.pem");
    // The fakes must outlive the proxy's sessions.
    struct Keep<A, B, C, D>(A, B, C, D);
    impl<A, B, C, D> Drop for Keep<A, B, C, D> {
        fn drop(&mut self) {}
    }
    (proxy, tls, Keep(ca, smtp, imap, pop3), builder, cafile)
}

/// Logs in over implicit TLS with each library, verifying against the exported CA, and
/// tries STARTTLS/STLS there.
const PY_IMPLICIT: &str = r#"
import imaplib, poplib, smtplib, ssl, sys
smtp_port, imap_port, pop3_port, cafile, user, password = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)

s = smtplib.SMTP_SSL("127.0.0.1", int(smtp_port), context=ctx, timeout=20)
code, ehlo = s.ehlo("python.test")
print("SMTP-EHLO-STARTTLS", b"STARTTLS" in ehlo.upper())
print("SMTP-STARTTLS", s.docmd("STARTTLS")[0])
print("SMTP-AUTH", s.login(user, password)[0])
s.quit()

i = imaplib.IMAP4_SSL("127.0.0.1", int(imap_port), ssl_context=ctx, timeout=20)
print("IMAP-CAPA-STARTTLS", "STARTTLS" in i.capabilities)
try:
    typ, _ = i._simple_command("STARTTLS")
    print("IMAP-STARTTLS", typ)
except imaplib.IMAP4.error as e:
    print("IMAP-STARTTLS refused", e)
print("IMAP-LOGIN", i.login(user, password)[0])
i.logout()

p = poplib.POP3_SSL("127.0.0.1", int(pop3_port), context=ctx, timeout=20)
print("POP3-CAPA-STLS", "STLS" in p.capa())
try:
    print("POP3-STLS", p._shortcmd("STLS"))
except poplib.error_proto as e:
    print("POP3-STLS refused", e)
print("POP3-LOGIN", p.user(user)[:3], p.pass_(password)[:3])
p.quit()
"#;

#[tokio::test]
async fn python_ssl_clients_log_in_over_tls_listeners_without_starttls() {
    let (proxy, [smtp, imap, pop3], _keep, _builder, cafile) = start().await;
    let args: Vec<String> = vec![
        smtp.port().to_string(),
        imap.port().to_string(),
        pop3.port().to_string(),
        cafile.display().to_string(),
        USER.into(),
        PASSWORD.into(),
    ];
    let out = python(PY_IMPLICIT, &args, WAIT).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "SMTP-EHLO-STARTTLS False",
        "SMTP-AUTH 235",
        "IMAP-CAPA-STARTTLS False",
        "IMAP-STARTTLS refused",
        "IMAP-LOGIN OK",
        "POP3-CAPA-STLS False",
        "POP3-STLS refused",
        "POP3-LOGIN b'+OK' b'+OK'",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("SMTP-STARTTLS 220"), "{stdout}");
    // Sessions log their end after the client left: wait for the three lines.
    loop {
        let mark = proxy.log_mark();
        if proxy.logs().matches("session end").count() >= 3 {
            break;
        }
        proxy.wait_for_log_since(mark, "session end", WAIT).await;
    }
    let ends: Vec<_> = proxy
        .events()
        .into_iter()
        .filter(|e| e.message() == Some("session end"))
        .collect();
    assert!(ends.len() >= 3, "{}", proxy.logs());
    for e in &ends {
        assert_eq!(e.field("tls"), Some("implicit"), "{}", proxy.logs());
    }
    proxy.assert_no_secret(&secrets());
}

#[tokio::test]
async fn curl_smtps_imaps_pop3s_log_in_pinned_to_the_exported_ca() {
    let curl = require("curl", "curl");
    let (proxy, [smtp, imap, pop3], _keep, builder, cafile) = start().await;
    let message = builder.dir().join("message.eml");
    std::fs::write(
        &message,
        "From: <12345@qq.com>\r\nTo: <to@example.org>\r\nSubject: smtps\r\n\r\nhello\r\n",
    )
    .expect("message");
    let user = format!("{USER}:{PASSWORD}");
    let cafile = cafile.display().to_string();
    let cases: [(&str, Vec<String>); 3] = [
        (
            "smtps",
            vec![
                format!("smtps://127.0.0.1:{}", smtp.port()),
                "--mail-from".into(),
                "12345@qq.com".into(),
                "--mail-rcpt".into(),
                "to@example.org".into(),
                "--upload-file".into(),
                message.display().to_string(),
            ],
        ),
        ("imaps", vec![format!("imaps://127.0.0.1:{}/", imap.port())]),
        ("pop3s", vec![format!("pop3s://127.0.0.1:{}/", pop3.port())]),
    ];
    for (scheme, target) in cases {
        let mut args: Vec<String> = vec![
            "--silent".into(),
            "--show-error".into(),
            "--cacert".into(),
            cafile.clone(),
            "--user".into(),
            user.clone(),
            "--max-time".into(),
            "20".into(),
        ];
        args.extend(target);
        let out = run(curl.clone(), args, None, WAIT).await;
        assert!(
            out.status.success(),
            "curl {scheme}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    proxy.assert_no_secret(&secrets());
}
