//! `[admin] password_hash` (issue 14): required off loopback, named with its fix when
//! missing or malformed, and settable from `QQMAIL_ADMIN_PASSWORD_HASH` or its `_FILE`.

use super::*;

#[test]
fn admin_listener_off_loopback_needs_a_password_hash() {
    let f = Fixture::new();
    let hash_line = format!("password_hash = \"{}\"\n", hash());
    let cases: [(&str, String, Option<&[&str]>); 8] = [
        // (listen, extra lines in [admin], None = accepted | Some(needles of the error))
        ("127.0.0.1:9925", String::new(), None),
        ("[::1]:9925", String::new(), None),
        ("127.0.0.2:9925", String::new(), None),
        ("127.0.0.1:9925", hash_line.clone(), None),
        ("0.0.0.0:9925", hash_line.clone(), None),
        (
            "0.0.0.0:9925",
            String::new(),
            Some(&[
                "[admin] password_hash",
                "not a loopback address",
                "QQMAIL_ADMIN_PASSWORD_HASH",
                "hash-password",
                "127.0.0.1:9925",
            ]),
        ),
        (
            "[::]:9925",
            String::new(),
            Some(&["[admin] password_hash", "hash-password"]),
        ),
        (
            "127.0.0.1:9925",
            "password_hash = \"secret\"\n".to_string(),
            Some(&["[admin] password_hash", "hash-password"]),
        ),
    ];
    for (listen, extra, want) in cases {
        let toml = format!("{ACCOUNT}{SMTP}\n[admin]\nlisten = \"{listen}\"\n{extra}");
        match want {
            None => {
                let c = f.ok(&toml, &[]);
                assert_eq!(
                    c.admin_password_hash.is_some(),
                    !extra.is_empty(),
                    "{listen}"
                );
            }
            Some(needles) => assert_error(listen, f.load(&toml, &[]), needles),
        }
    }
}

#[test]
fn admin_password_hash_from_the_environment() {
    let f = Fixture::new();
    let file = f.write("admin-hash", &format!("{}\n", hash()));
    let file = file.display().to_string();
    let toml = format!("{ACCOUNT}{SMTP}\n[admin]\nlisten = \"0.0.0.0:9925\"\n");
    for env in [
        [("QQMAIL_ADMIN_PASSWORD_HASH", hash())],
        [("QQMAIL_ADMIN_PASSWORD_HASH_FILE", file.as_str())],
    ] {
        let c = f.ok(&toml, &env);
        assert_eq!(c.admin_password_hash.as_deref(), Some(hash()), "{env:?}");
    }
    let both = [
        ("QQMAIL_ADMIN_PASSWORD_HASH", hash()),
        ("QQMAIL_ADMIN_PASSWORD_HASH_FILE", file.as_str()),
    ];
    assert_error("both", f.load(&toml, &both), &["set only one of"]);
    let missing = [("QQMAIL_ADMIN_PASSWORD_HASH_FILE", "/nonexistent/hash")];
    assert_error(
        "missing file",
        f.load(&toml, &missing),
        &["QQMAIL_ADMIN_PASSWORD_HASH_FILE", "cannot read"],
    );
}
