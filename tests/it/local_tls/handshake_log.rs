//! A failed local handshake is logged as one plain line naming the client and why: only
//! old TLS offered (and the `[tls] min_version` that takes it, or in a build without the
//! legacy-tls feature how to get one), no cipher suite in common, the certificate
//! rejected. On a tls:// listener and after STARTTLS.

use super::*;
use crate::support::proxy::Proxy;
use crate::support::tools::{require, run};

async fn s_client(args: &[&str]) -> String {
    let openssl = require("openssl", "openssl");
    let mut all = vec!["s_client".to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = run(openssl, all, None, WAIT).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn failed_handshakes_say_why_in_one_line() {
    let (ca, _smtp, builder) = generated_cert_setup();
    let builder = builder.listen("smtp", &["tls://127.0.0.1:0", "127.0.0.1:0"]);
    let proxy = Proxy::start_built(&builder, &[]).await;
    let ready = proxy.readiness().addrs("smtp");
    let (tls, plain) = (ready[0].to_string(), ready[1].to_string());
    let upstream_ca = ca.pem_path().display().to_string();
    let old = ["-cipher", "DEFAULT@SECLEVEL=0"];
    // What this build tells a TLS 1.0/1.1 device (JSON-escaped, as in the log).
    let advice = |v: &str| {
        if qqmail_proxy::LEGACY_TLS {
            format!("set [tls] min_version = \\\"{v}\\\" to accept this device")
        } else {
            format!(
                "this build accepts TLS 1.2 and 1.3 only: [tls] min_version = \\\"{v}\\\" needs"
            )
        }
    };
    let tls10 = format!("client 127.0.0.1 offered only TLS 1.0; {}", advice("1.0"));
    let tls11 = format!("client 127.0.0.1 offered only TLS 1.1; {}", advice("1.1"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [&["-connect", &tls, "-tls1"][..], &old[..]].concat(),
            &tls10,
        ),
        (
            [&["-connect", &tls, "-tls1_1"][..], &old[..]].concat(),
            &tls11,
        ),
        (
            [
                &["-connect", &plain, "-starttls", "smtp", "-tls1"][..],
                &old[..],
            ]
            .concat(),
            &tls10,
        ),
        (
            vec!["-connect", &tls, "-tls1_2", "-cipher", "AES128-SHA"],
            "client 127.0.0.1 offered no cipher suite in common",
        ),
        (
            vec![
                "-connect",
                &tls,
                "-CAfile",
                &upstream_ca,
                "-verify_return_error",
            ],
            "client 127.0.0.1 rejected the certificate (not trusted)",
        ),
    ];
    for (args, needle) in cases {
        let mark = proxy.log_mark();
        let out = s_client(&args).await;
        let line = proxy.wait_for_log_since(mark, needle, WAIT).await;
        assert!(line.contains("\"level\":\"WARN\""), "{line}\n{out}");
    }
    proxy.assert_no_secret(&secrets());
}
