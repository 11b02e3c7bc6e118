//! The SMTP gateway against an independent SMTP implementation: mailin-embedded (a
//! blocking server with STARTTLS) stands in for a `starttls://` upstream such as iCloud's
//! smtp.mail.me.com:587. The proxy must upgrade before sending the code, log in, and
//! hand the message over intact.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mailin_embedded::{response, AuthMechanism, Handler, Response, Server, SslConfig};

use crate::support::ca::{TestCa, UPSTREAM_NAMES};
use crate::support::config::{pem, Account, ConfigBuilder};
use crate::support::proxy::Proxy;

const CODE: &str = "mailinpeercode16";
const EMAIL: &str = "tester@icloud.example";

#[derive(Default, Debug)]
struct Seen {
    auth: Vec<(String, String)>,
    from: Vec<String>,
    data: Vec<u8>,
    ended: usize,
}

#[derive(Clone)]
struct Recorder(Arc<Mutex<Seen>>, Arc<tokio::sync::Notify>);

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.0.lock().unwrap().from.push(from.to_string());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.0.lock().unwrap().ended += 1;
        self.1.notify_one();
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.0
            .lock()
            .unwrap()
            .auth
            .push((user.to_string(), password.to_string()));
        if user == EMAIL && password == CODE {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

#[tokio::test]
async fn starttls_upstream_with_mailin_embedded() {
    let ca = TestCa::new("mailin peer CA");
    let (chain, key) = ca.leaf(UPSTREAM_NAMES);
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("cert.pem");
    let key_path = certs.path().join("key.pem");
    std::fs::write(&cert_path, pem("CERTIFICATE", chain[0].as_ref())).unwrap();
    std::fs::write(&key_path, pem("PRIVATE KEY", key.secret_der())).unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(tokio::sync::Notify::new());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // mailin-embedded builds its rustls config with the process-default provider; the
    // test build links two (ring, and aws-lc-rs through mailin's own rustls features).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server = Server::new(Recorder(seen.clone(), done.clone()));
    server
        .with_name("mailin.test")
        .with_ssl(SslConfig::SelfSigned {
            cert_path: cert_path.display().to_string(),
            key_path: key_path.display().to_string(),
        })
        .unwrap()
        .with_auth(AuthMechanism::Plain)
        .with_tcp_listener(listener);
    // serve() runs for ever on its own thread pool; the thread ends with the test binary.
    std::thread::spawn(move || {
        let _ = server.serve();
    });

    let builder = ConfigBuilder::new(&ca)
        .account(
            Account::new("main")
                .email(EMAIL)
                .code(CODE)
                .provider(Some("custom"))
                .smtp(format!("starttls://127.0.0.1:{port}")),
        )
        .user("printer", "Pr1nter-Pa55", "main")
        .smtp("off");
    let proxy = Proxy::start_built(&builder, &[]).await;

    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(proxy.smtp_addr().port())
        .credentials(Credentials::new("printer".into(), "Pr1nter-Pa55".into()))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let message = lettre::Message::builder()
        .from("scanner@printer.local".parse().unwrap())
        .to("friend@example.com".parse().unwrap())
        .subject("via mailin")
        .body("first line\nsecond line\n".to_string())
        .unwrap();
    let notified = done.notified();
    mailer
        .send(message)
        .await
        .expect("send through the proxy to mailin");
    tokio::time::timeout(Duration::from_secs(10), notified)
        .await
        .expect("mailin saw the end of the message");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.auth, vec![(EMAIL.to_string(), CODE.to_string())]);
    assert_eq!(
        seen.from,
        vec![EMAIL.to_string()],
        "envelope sender rewritten"
    );
    let body = String::from_utf8_lossy(&seen.data);
    assert!(body.contains("Subject: via mailin"), "{body}");
    assert!(body.contains("second line"), "{body}");
    assert_eq!(seen.ended, 1);
    proxy.assert_no_secret(&[CODE, "Pr1nter-Pa55"]);
}
