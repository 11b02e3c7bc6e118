//! Old TLS on the local side never reaches the upstream side: an upstream that speaks
//! only TLS 1.0 (Python's `ssl` server, proven to work by `openssl s_client -tls1`) is
//! refused, also with `[tls] min_version = "1.0"` in a legacy-tls build.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::*;
use crate::support::ca::UPSTREAM_NAMES;
use crate::support::config::pem;
use crate::support::proxy::Proxy;
use crate::support::tools::{python, require, run};

/// A TLS 1.0-only implicit-TLS SMTP server: prints its port, then one line per
/// connection, `HANDSHAKE <version>` or `REFUSED <why>`.
const TLS10_SERVER: &str = r#"
import socket, ssl, sys
cert, key = sys.argv[1:3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1
ctx.set_ciphers("DEFAULT@SECLEVEL=0")
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    conn.settimeout(20)
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        print("HANDSHAKE", tls.version(), flush=True)
        tls.sendall(b"220 tls10.test ESMTP\r\n")
        tls.recv(1024)
        tls.close()
    except Exception as e:
        print("REFUSED", type(e).__name__, e, flush=True)
        conn.close()
"#;

const PY_LOGIN: &str = r#"
import smtplib, sys
port, user, password = sys.argv[1:4]
s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
try:
    print("AUTH", s.login(user, password)[0])
except smtplib.SMTPException as e:
    print("AUTH-FAILED", e)
"#;

#[tokio::test]
async fn a_tls_1_0_only_upstream_is_still_refused() {
    let openssl = require("openssl", "openssl");
    let ca = TestCa::new("tls10 upstream CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, key) = ca.leaf(UPSTREAM_NAMES);
    let (cert_path, key_path) = (dir.path().join("up.pem"), dir.path().join("up-key.pem"));
    let certs: String = chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
    std::fs::write(&cert_path, certs).expect("cert");
    std::fs::write(&key_path, pem("PRIVATE KEY", key.secret_der())).expect("key");
    /// Ends the fake upstream with the test.
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Kill(
        Command::new("python3")
            .arg("-c")
            .arg(TLS10_SERVER)
            .arg(&cert_path)
            .arg(&key_path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    // Its lines, read on a thread (the test's runtime has no process support).
    let (tx, rx) = mpsc::channel();
    let stdout = server.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(WAIT).expect("a fake upstream line in time");
    let port: u16 = next().parse().expect("port");

    // The fake really is a TLS 1.0 server: a TLS 1.0 client gets through.
    let args: Vec<String> = [
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-tls1",
        "-cipher",
        "DEFAULT@SECLEVEL=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(openssl, args, Some(b"QUIT\n".to_vec()), WAIT).await;
    assert_eq!(
        next(),
        "HANDSHAKE TLSv1",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The proxy, even one that accepts TLS 1.0 from its own clients, does not.
    let min = if qqmail_proxy::LEGACY_TLS {
        "1.0"
    } else {
        "1.2"
    };
    let builder = ConfigBuilder::new(&ca)
        .account(Account::new("main").smtp(format!("tls://127.0.0.1:{port}")))
        .user(USER, PASSWORD, "main")
        .smtp("optional")
        .tls_line(&format!("min_version = \"{min}\""));
    let proxy = Proxy::start_built(&builder, &[]).await;
    let args = vec![
        proxy.smtp_addr().port().to_string(),
        USER.to_string(),
        PASSWORD.to_string(),
    ];
    let out = python(PY_LOGIN, &args, WAIT).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("AUTH-FAILED"), "{stdout}");
    let seen = next();
    assert!(seen.starts_with("REFUSED"), "{seen}");
    proxy.assert_no_secret(&secrets());
}
