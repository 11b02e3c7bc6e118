//! `auto://` listeners: one port serves a client that opens with a TLS ClientHello
//! (implicit TLS, openssl s_client) and a plaintext client that greets and uses STARTTLS.

use super::ca::starttls_login;
use super::*;
use crate::support::proxy::Proxy;
use crate::support::tools::{require, run};

#[tokio::test]
async fn one_auto_listener_serves_implicit_tls_and_plaintext_starttls() {
    let openssl = require("openssl", "openssl");
    let (_ca, smtp, builder) = generated_cert_setup();
    let builder = builder.listen("smtp", &["auto://127.0.0.1:0"]);
    let proxy = Proxy::start_built(&builder, &[]).await;
    let addr = proxy.smtp_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let cafile = export_ca(&builder, dir.path(), "ca.pem");

    // Implicit TLS: the ClientHello comes first, the greeting arrives encrypted.
    let args: Vec<String> = [
        "s_client",
        "-connect",
        &addr.to_string(),
        "-CAfile",
        &cafile.display().to_string(),
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
        "-crlf",
        // Without it s_client may close at the end of its stdin before the greeting
        // arrives; with it, it waits for the proxy's 221 and close.
        "-ign_eof",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(openssl, args, Some(b"QUIT\n".to_vec()), WAIT).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("220 "), "the greeting over TLS: {text}");
    assert!(!text.contains("no peer certificate available"), "{text}");
    let implicit = proxy.wait_for_log("\"tls\":\"implicit\"", WAIT).await;
    assert!(implicit.contains("session end"), "{implicit}");

    // Plaintext on the same port: the greeting after the short wait, then STARTTLS.
    let out = starttls_login(addr.port(), &cafile, "localhost").await;
    assert!(out.contains("AUTH 235"), "{out}");
    let starttls = proxy.wait_for_log("\"tls\":\"starttls\"", WAIT).await;
    assert!(starttls.contains("session end"), "{starttls}");
    smtp.wait_auth_attempts(1, WAIT).await;
    proxy.assert_no_secret(&secrets());
}
