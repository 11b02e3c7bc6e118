//! Real clients through the proxy: lettre (plaintext and STARTTLS), Python `smtplib` (AUTH
//! LOGIN and PLAIN, with and without `starttls()`), curl (`smtp://`, with and without
//! `--ssl-reqd`) and swaks (`--auth LOGIN`, plaintext and `-tls`). Each checks that the fake
//! saw the account's address with the exact code, the rewritten MAIL FROM and the DATA
//! bytes exactly as the client put them on the wire.

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::*;
use crate::support::tools::{python, require, run};

/// A lettre transport to the proxy; with `starttls`, STARTTLS is required and only `ca`
/// (which signed the proxy's local certificate) is trusted.
fn lettre_to(
    gw: &Gateway,
    starttls: bool,
    mechanism: Mechanism,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let tls = if starttls {
        let root = Certificate::from_pem(gw.ca.pem().as_bytes()).expect("CA PEM");
        let params = TlsParameters::builder("localhost".to_owned())
            .certificate_store(CertificateStore::None)
            .add_root_certificate(root)
            .build_rustls()
            .expect("TLS parameters");
        Tls::Required(params)
    } else {
        Tls::None
    };
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(gw.port())
        .tls(tls)
        .credentials(Credentials::new(USER.into(), PASSWORD.into()))
        .authentication(vec![mechanism])
        .timeout(Some(WAIT))
        .build()
}

#[tokio::test]
async fn lettre_plaintext_and_starttls() {
    let gw = Gateway::start().await;
    let cases = [
        (false, Mechanism::Plain),
        (false, Mechanism::Login),
        (true, Mechanism::Plain),
        (true, Mechanism::Login),
    ];
    for (i, (starttls, mechanism)) in cases.into_iter().enumerate() {
        let message = lettre::Message::builder()
            .from(format!("Scanner <{SENDER}>").parse().expect("from"))
            .to(RCPT.parse().expect("to"))
            .subject(format!("lettre {i}"))
            .body("page 1\r\n.leading dot\r\n.\r\nend\r\n".to_owned())
            .expect("message");
        // lettre always ends DATA with CRLF . CRLF, so the whole stuffed message is recorded.
        let wire = dot_stuff(&message.formatted());
        lettre_to(&gw, starttls, mechanism)
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("lettre starttls={starttls} {mechanism:?}: {e}"));
        let got = gw.fake.wait_messages(i + 1, WAIT).await;
        assert_relayed(&got[i], &[RCPT], &wire);
    }
    gw.assert_upstream_auth(cases.len());
    assert!(gw.fake.auth_attempts().iter().all(|a| a.tls));
    gw.assert_no_secret(&[]);
}

/// Forces the mechanism (`smtplib.login` would pick one itself) and prints the outcome.
const SMTPLIB: &str = r#"
import smtplib, ssl, sys
port, user, password, mech, tls, cafile, path = sys.argv[1:8]
s = smtplib.SMTP("127.0.0.1", int(port), timeout=10)
s.set_debuglevel(1)
s.ehlo("python.test")
if tls == "starttls":
    s.starttls(context=ssl.create_default_context(cafile=cafile))
    s.ehlo("python.test")
s.user, s.password = user, password
if mech == "LOGIN":
    code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
else:
    code, _ = s.auth("PLAIN", s.auth_plain)
print("AUTH", code)
refused = s.sendmail(sys.argv[8], [sys.argv[9]], open(path, "rb").read())
print("REFUSED", refused)
s.quit()
"#;

#[tokio::test]
async fn python_smtplib_login_and_plain_with_and_without_starttls() {
    let gw = Gateway::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("LOGIN", "plain"),
        ("LOGIN", "starttls"),
        ("PLAIN", "plain"),
        ("PLAIN", "starttls"),
    ];
    for (i, (mech, tls)) in cases.into_iter().enumerate() {
        let text = sample_message(&format!("smtplib {mech} {tls}"));
        let path = dir.path().join(format!("msg{i}.eml"));
        std::fs::write(&path, &text).expect("write message");
        let args: Vec<String> = [
            gw.port().to_string(),
            USER.into(),
            PASSWORD.into(),
            mech.into(),
            tls.into(),
            gw.ca.pem_path().display().to_string(),
            path.display().to_string(),
            SENDER.into(),
            RCPT.into(),
        ]
        .into();
        let out = python(SMTPLIB, &args, WAIT).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "smtplib {mech} {tls}:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("AUTH 235\nREFUSED {}"), "{stdout}");
        assert!(
            stderr.contains(&format!("send: 'AUTH {mech}")),
            "mechanism {mech} used: {stderr}"
        );
        assert_eq!(
            stderr.contains("send: 'STARTTLS"),
            tls == "starttls",
            "{stderr}"
        );
        let got = gw.fake.wait_messages(i + 1, WAIT).await;
        assert_relayed(&got[i], &[RCPT], &recorded_form(&text));
    }
    gw.assert_upstream_auth(cases.len());
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn curl_with_and_without_ssl_reqd() {
    let curl = require("curl", "curl");
    let gw = Gateway::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, ssl_reqd) in [false, true].into_iter().enumerate() {
        let text = sample_message(&format!("curl ssl_reqd={ssl_reqd}"));
        let path = dir.path().join(format!("msg{i}.eml"));
        std::fs::write(&path, &text).expect("write message");
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "-v".into(),
            "--max-time".into(),
            "10".into(),
            format!("smtp://127.0.0.1:{}", gw.port()),
            "--mail-from".into(),
            SENDER.into(),
            "--mail-rcpt".into(),
            RCPT.into(),
            "--upload-file".into(),
            path.display().to_string(),
            "--user".into(),
            format!("{USER}:{PASSWORD}"),
        ];
        if ssl_reqd {
            args.extend([
                "--ssl-reqd".into(),
                "--cacert".into(),
                gw.ca.pem_path().display().to_string(),
            ]);
        }
        let out = run(curl.clone(), args, None, WAIT).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "curl ssl_reqd={ssl_reqd}: {stderr}");
        assert_eq!(stderr.contains("> STARTTLS"), ssl_reqd, "{stderr}");
        let got = gw.fake.wait_messages(i + 1, WAIT).await;
        // curl stuffs dots and ends with `.CRLF` when the file ends in CRLF.
        assert_relayed(&got[i], &[RCPT], &recorded_form(&text));
    }
    gw.assert_upstream_auth(2);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn swaks_auth_login_plaintext_and_tls() {
    let swaks = require("swaks", "swaks");
    let gw = Gateway::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, tls) in [false, true].into_iter().enumerate() {
        let text = sample_message(&format!("swaks tls={tls}"));
        let path = dir.path().join(format!("msg{i}.eml"));
        std::fs::write(&path, &text).expect("write message");
        let mut args: Vec<String> = vec![
            "--server".into(),
            "127.0.0.1".into(),
            "--port".into(),
            gw.port().to_string(),
            "--timeout".into(),
            "10".into(),
            "--auth".into(),
            "LOGIN".into(),
            "--auth-user".into(),
            USER.into(),
            "--auth-password".into(),
            PASSWORD.into(),
            "--from".into(),
            SENDER.into(),
            "--to".into(),
            RCPT.into(),
            "--data".into(),
            format!("@{}", path.display()),
        ];
        if tls {
            args.extend([
                "-tls".into(),
                "--tls-verify".into(),
                "--tls-ca-path".into(),
                gw.ca.pem_path().display().to_string(),
            ]);
        }
        let out = run(swaks.clone(), args, None, WAIT).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "swaks tls={tls}: {stdout}");
        assert!(stdout.contains("> AUTH LOGIN"), "{stdout}");
        assert_eq!(stdout.contains("-> STARTTLS"), tls, "{stdout}");
        let got = gw.fake.wait_messages(i + 1, WAIT).await;
        // swaks ends DATA with its own CRLF . CRLF, so the message's last CRLF is recorded.
        assert_relayed(&got[i], &[RCPT], &dot_stuff(&text));
    }
    gw.assert_upstream_auth(2);
    gw.assert_no_secret(&[]);
}

#[tokio::test]
async fn a_dozen_concurrent_sessions() {
    let gw = Gateway::start().await;
    let sessions = (0..12).map(|i| {
        let gw = &gw;
        async move {
            let mut c = gw.logged_in().await;
            let text = sample_message(&format!("concurrent {i}"));
            let r = c.send_message(&[RCPT], &dot_stuff(&text)).await;
            assert!(r.starts_with("250 "), "session {i}: {r}");
            assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
            recorded_form(&text)
        }
    });
    let mut sent = futures_util::future::join_all(sessions).await;
    let mut got: Vec<Vec<u8>> = gw
        .fake
        .wait_messages(12, WAIT)
        .await
        .into_iter()
        .map(|m| m.data)
        .collect();
    sent.sort();
    got.sort();
    assert!(sent == got, "every message arrived intact");
    gw.assert_upstream_auth(12);
    gw.assert_no_secret(&[]);
}
