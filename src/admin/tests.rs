//! The admin endpoint's pure parts as tables: the request head, the `Host` rule, and
//! what a client off loopback may see.

use std::net::IpAddr;

use super::view::{healthz, metrics};
use super::*;

#[test]
fn host_rule() {
    let names = ["mail-gw.lan", "printer-relay"];
    let cases = [
        // (Host value, allowed)
        ("localhost", true),
        ("localhost:9925", true),
        ("LOCALHOST:9925", true),
        ("localhost.:9925", true),
        ("127.0.0.1", true),
        ("127.0.0.1:9925", true),
        ("192.168.1.10:9925", true),
        ("[::1]", true),
        ("[::1]:9925", true),
        ("[fe80::1]:80", true),
        ("mail-gw.lan:9925", true),
        ("Printer-Relay", true),
        // DNS rebinding: the attacker's name, whatever it points at.
        ("evil.example", false),
        ("evil.example:9925", false),
        ("localhost.evil.example", false),
        ("127.0.0.1.nip.io:9925", false),
        ("mail-gw.lan.evil.example", false),
        // Malformed.
        ("", false),
        (":9925", false),
        ("localhost:", false),
        ("localhost:99250", true),
        ("localhost:992500", false),
        ("localhost:99a", false),
        ("127.0.0.1:9925:1", false),
        ("::1", false),
        ("[::1", false),
        ("[::1]x", false),
        ("[evil.example]", false),
        ("localhost\u{0}", false),
    ];
    for (host, want) in cases {
        assert_eq!(host_allowed(host, &names), want, "{host:?}");
    }
}

#[test]
fn request_head_and_host_check() {
    let names = ["gw"];
    let cases = [
        // (request head, method, path, verdict)
        (
            "GET /healthz HTTP/1.1\r\nHost: localhost:9925\r\n\r\n",
            "GET",
            "/healthz",
            Ok(()),
        ),
        (
            "GET /metrics HTTP/1.1\r\nhOsT:\t127.0.0.1:9925 \r\nAccept: */*\r\n\r\n",
            "GET",
            "/metrics",
            Ok(()),
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: evil.example:9925\r\n\r\n",
            "GET",
            "/healthz",
            Err("421 Misdirected Request"),
        ),
        (
            "GET /healthz HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
            "GET",
            "/healthz",
            Err("400 Bad Request"),
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
            "GET",
            "/healthz",
            Err("400 Bad Request"),
        ),
        // HTTP/1.0 and a bare request line need no Host (not a browser).
        ("GET /healthz HTTP/1.0\r\n\r\n", "GET", "/healthz", Ok(())),
        ("GET /healthz\r\n\r\n", "GET", "/healthz", Ok(())),
        ("", "", "", Ok(())),
        // Only the head counts: a Host line in a body is not a header.
        (
            "GET / HTTP/1.1\r\nHost: gw\r\n\r\nHost: evil.example\r\n",
            "GET",
            "/",
            Ok(()),
        ),
        (
            "GET / HTTP/1.1\r\nX-Host: evil.example\r\nHost: gw:1\r\n\r\n",
            "GET",
            "/",
            Ok(()),
        ),
    ];
    for (text, method, path, verdict) in cases {
        let head = Head::parse(text);
        assert_eq!((head.method, head.path), (method, path), "{text:?}");
        assert_eq!(head.check_host(&names), verdict, "{text:?}");
    }
}

#[test]
fn view_by_peer() {
    let cases = [
        ("127.0.0.1", View::Full),
        ("127.0.0.2", View::Full),
        ("::1", View::Full),
        ("::ffff:127.0.0.1", View::Full),
        ("192.168.1.20", View::Redacted),
        ("::ffff:192.168.1.20", View::Redacted),
        ("fe80::1", View::Redacted),
        ("172.30.25.10", View::Redacted),
    ];
    for (ip, want) in cases {
        let ip: IpAddr = ip.parse().expect("ip");
        assert_eq!(View::of(ip), want, "{ip}");
    }
}

#[test]
fn healthz_names_upstreams_on_loopback_only() {
    let failing = vec!["smtp smtp.qq.com:465".to_string()];
    let cases = [
        (Vec::new(), View::Full, "ok\n"),
        (Vec::new(), View::Redacted, "ok\n"),
        (
            failing.clone(),
            View::Full,
            "ok (listeners up); last login failed for: smtp smtp.qq.com:465\n",
        ),
        (
            failing,
            View::Redacted,
            "degraded (listeners up; an upstream login failed: details on loopback only)\n",
        ),
    ];
    for (failing, view, want) in cases {
        assert_eq!(healthz(&failing, view), want, "{view:?}");
    }
}

#[test]
fn metrics_off_loopback_drop_addresses_and_hosts() {
    let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
        x_total{protocol=\"smtp\"} 1\n\
        x_total{protocol=\"smtp\",user=\"12345@qq.com\"} 2\n\
        x_total{server=\"smtp.qq.com:465\"} 3\n\
        plain_total 4\n";
    let hidden = vec!["smtp.qq.com".to_string(), String::new()];
    assert_eq!(metrics(text, &hidden, View::Full), text);
    let redacted = metrics(text, &hidden, View::Redacted);
    assert_eq!(
        redacted,
        "# HELP x_total Things.\n# TYPE x_total counter\n\
         x_total{protocol=\"smtp\"} 1\nplain_total 4\n"
    );
    // Today's counters keep every sample: their labels carry neither.
    let m = crate::metrics::Metrics::default();
    m.upstream_error(crate::proto::Protocol::Smtp, "smtp.qq.com:465", "login");
    let full = m.render();
    assert_eq!(metrics(&full, &hidden, View::Redacted), full);
}
