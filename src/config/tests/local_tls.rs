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

/// `[tls] min_version` in the file and `QQMAIL_TLS_MIN_VERSION`, as this build loads them
/// (an old version only with the legacy-tls feature).
#[test]
fn min_version_in_the_file_and_the_environment() {
    use crate::config::MinVersion;
    let f = Fixture::new();
    let old_ok = |v| crate::LEGACY_TLS.then_some(v);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<MinVersion>);
    let cases: &[Case] = &[
        ("", &[], Some(MinVersion::Tls12)),
        ("min_version = \"1.2\"", &[], Some(MinVersion::Tls12)),
        ("min_version = \"1.1\"", &[], old_ok(MinVersion::Tls11)),
        ("min_version = \"1.0\"", &[], old_ok(MinVersion::Tls10)),
        (
            "min_version = \"1.2\"",
            &[("QQMAIL_TLS_MIN_VERSION", "1.0")],
            old_ok(MinVersion::Tls10),
        ),
        (
            "",
            &[("QQMAIL_TLS_MIN_VERSION", "1.2")],
            Some(MinVersion::Tls12),
        ),
        ("min_version = \"TLSv1\"", &[], None),
        ("min_version = \"1.3\"", &[], None),
    ];
    for (line, env, expected) in cases {
        let toml = format!("{ACCOUNT}{SMTP}\n[tls]\n{line}\n");
        match expected {
            Some(v) => assert_eq!(f.ok(&toml, env).tls.min_version, *v, "{line} {env:?}"),
            None => assert_error(
                line,
                f.load(&toml, env),
                &["[tls] min_version (QQMAIL_TLS_MIN_VERSION)"],
            ),
        }
    }
}

/// Both builds' answers, whichever this one is: without the feature an old version is a
/// start-up error that names the key and says how to get a build that accepts it.
#[test]
fn min_version_with_and_without_the_feature() {
    use crate::config::local_tls::min_version;
    use crate::config::MinVersion;
    type Case<'a> = (Option<&'a str>, bool, Result<MinVersion, &'a [&'a str]>);
    let cases: &[Case] = &[
        (None, false, Ok(MinVersion::Tls12)),
        (Some("1.2"), false, Ok(MinVersion::Tls12)),
        (Some("1.0"), true, Ok(MinVersion::Tls10)),
        (Some(" 1.1 "), true, Ok(MinVersion::Tls11)),
        (
            Some("1.0"),
            false,
            Err(&[
                "[tls] min_version (QQMAIL_TLS_MIN_VERSION)",
                "\"1.0\" needs the legacy-tls feature",
                "cargo build --release --features legacy-tls",
                "Docker image",
            ]),
        ),
        (
            Some("1.1"),
            false,
            Err(&["\"1.1\" needs the legacy-tls feature"]),
        ),
        (
            Some("SSLv3"),
            true,
            Err(&["is not a TLS version", "\"1.0\""]),
        ),
    ];
    for (value, built, expected) in cases {
        match (min_version(*value, *built), expected) {
            (Ok(v), Ok(e)) => assert_eq!(v, *e, "{value:?} {built}"),
            (Err(err), Err(needles)) => {
                let text = err.to_string();
                assert!(!text.contains("  "), "broken line continuation: {text}");
                for n in *needles {
                    assert!(text.contains(n), "{value:?} {built}: {text}");
                }
            }
            (got, _) => panic!("{value:?} {built}: got {got:?}, expected {expected:?}"),
        }
    }
}
