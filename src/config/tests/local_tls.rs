//! Local TLS keys (issue 13): `tls://` and `auto://` listen addresses, in the file and in the
//! `QQMAIL_*_LISTEN` variables, and `[tls] key_type`.

use super::*;
use crate::config::{KeyType, ListenMode};

fn listen_modes(c: &Config) -> Vec<(String, ListenMode)> {
    [
        c.smtp.as_ref().map(|s| &s.listener),
        c.imap.as_ref(),
        c.pop3.as_ref(),
    ]
    .into_iter()
    .flatten()
    .flat_map(|l| l.listen.iter().map(|a| (a.addr.to_string(), a.mode)))
    .collect()
}

#[test]
fn listen_address_forms() {
    let f = Fixture::new();
    let cases: &[(&str, Option<(&str, ListenMode)>)] = &[
        (
            "127.0.0.1:2525",
            Some(("127.0.0.1:2525", ListenMode::Plain)),
        ),
        (
            "tls://0.0.0.0:4650",
            Some(("0.0.0.0:4650", ListenMode::Tls)),
        ),
        (" tls://[::1]:9930 ", Some(("[::1]:9930", ListenMode::Tls))),
        (
            "auto://0.0.0.0:1995",
            Some(("0.0.0.0:1995", ListenMode::Auto)),
        ),
        ("ssl://127.0.0.1:465", None),
        ("tls://localhost:465", None),
        ("tls://", None),
        ("starttls://127.0.0.1:587", None),
    ];
    for (text, expected) in cases {
        let toml = format!("{ACCOUNT}\n[smtp]\nlisten = [{text:?}]\n");
        match expected {
            Some((addr, mode)) => {
                let c = f.ok(&toml, &[]);
                assert_eq!(listen_modes(&c), [(addr.to_string(), *mode)], "{text}");
            }
            None => assert_error(
                text,
                f.load(&toml, &[]),
                &["[smtp] listen", "tls://IP:port"],
            ),
        }
    }
}

#[test]
fn tls_listen_addresses_from_the_environment() {
    let f = Fixture::new();
    let toml = format!("{ACCOUNT}{SMTP}\n[imap]\n[pop3]\n");
    let c = f.ok(
        &toml,
        &[
            ("QQMAIL_SMTP_LISTEN", "127.0.0.1:2525,tls://127.0.0.1:4650"),
            ("QQMAIL_IMAP_LISTEN", "tls://127.0.0.1:9930"),
            ("QQMAIL_POP3_LISTEN", "127.0.0.1:1110, tls://127.0.0.1:9950"),
        ],
    );
    let modes: Vec<String> = listen_modes(&c)
        .iter()
        .map(|(a, m)| format!("{}{a}", if *m == ListenMode::Tls { "tls://" } else { "" }))
        .collect();
    assert_eq!(
        modes,
        [
            "127.0.0.1:2525",
            "tls://127.0.0.1:4650",
            "tls://127.0.0.1:9930",
            "127.0.0.1:1110",
            "tls://127.0.0.1:9950"
        ]
    );
    // A tls:// listener needs the certificate even with STARTTLS off everywhere.
    let imap = c.imap.as_ref().expect("imap");
    assert!(imap.needs_certificate() && !imap.has_plain());
}

#[test]
fn plaintext_warning_ignores_tls_listeners() {
    let f = Fixture::new();
    let toml = format!(
        "{ACCOUNT}\n[smtp]\nlisten = [\"127.0.0.1:2525\", \"tls://0.0.0.0:4650\"]\nstarttls = \"off\"\n"
    );
    let c = f.ok(&toml, &[]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn key_type() {
    let f = Fixture::new();
    let cases: &[(&str, Option<KeyType>)] = &[
        ("", Some(KeyType::Rsa)),
        ("key_type = \"rsa\"", Some(KeyType::Rsa)),
        ("key_type = \"ecdsa\"", Some(KeyType::Ecdsa)),
        ("key_type = \"RSA4096\"", None),
    ];
    for (line, expected) in cases {
        let toml = format!("{ACCOUNT}{SMTP}\n[tls]\n{line}\n");
        match expected {
            Some(k) => {
                let c = f.ok(&toml, &[]);
                assert_eq!(c.tls.key_type, *k, "{line}");
                assert_eq!(c.tls.ca_cert_file, c.state_dir.join("local-ca.pem"));
                assert_eq!(c.tls.ca_key_file, c.state_dir.join("local-ca-key.pem"));
            }
            None => assert_error(line, f.load(&toml, &[]), &["[tls] key_type", "\"rsa\""]),
        }
    }
}
