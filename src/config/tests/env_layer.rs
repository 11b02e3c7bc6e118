//! The `QQMAIL_*` layer: the zero-config start from the environment alone, and
//! variables that override or extend a config file.

use super::*;

/// The two variables of the README's one-command start.
const ZERO: &[(&str, &str)] = &[("QQMAIL_EMAIL", "12345@qq.com"), ("QQMAIL_AUTH_CODE", CODE)];

fn from_env(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut env = env_map(ZERO);
    env.extend(env_map(extra));
    Config::load(None, &env)
}

fn listens(c: &Config) -> [Option<Vec<String>>; 3] {
    let show = |l: &super::super::Listener| l.listen.iter().map(ToString::to_string).collect();
    [
        c.smtp.as_ref().map(|s| show(&s.listener)),
        c.imap.as_ref().map(show),
        c.pop3.as_ref().map(show),
    ]
}

fn some(addr: &str) -> Option<Vec<String>> {
    Some(vec![addr.to_string()])
}

#[test]
fn zero_config_gives_three_loopback_listeners_for_qq() {
    let c = from_env(&[]).expect("zero-config");
    assert_eq!(
        listens(&c),
        [
            some("127.0.0.1:2525"),
            some("127.0.0.1:1143"),
            some("127.0.0.1:1110")
        ]
    );
    assert_eq!(c.accounts.len(), 1);
    let a = &c.accounts[0];
    assert_eq!((a.id.as_str(), a.email.as_str()), ("main", "12345@qq.com"));
    assert!(a.provider.names.contains(&"qq"));
    assert_eq!(a.code.expose(), CODE.as_bytes());
    assert_eq!(
        a.smtp.as_ref().map(ToString::to_string).as_deref(),
        Some("smtp.qq.com:465")
    );
    assert!(
        c.users.is_empty(),
        "users are generated at start, not configured"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// A table row: what is wrong, the variables, what the error text must contain.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn zero_config_mistakes() {
    let cases: &[Case] = &[
        (
            "no QQMAIL_EMAIL and no file",
            &[("QQMAIL_AUTH_CODE", CODE)],
            &["QQMAIL_EMAIL", "--config", "QQMAIL_AUTH_CODE="],
        ),
        (
            "no code at all",
            &[("QQMAIL_EMAIL", "12345@qq.com")],
            &["auth_code_env", "QQMAIL_AUTH_CODE is not set"],
        ),
        (
            "both code variables",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_AUTH_CODE_FILE", "/nonexistent"),
            ],
            &["QQMAIL_AUTH_CODE", "only one of", "QQMAIL_AUTH_CODE_FILE"],
        ),
        (
            "unknown provider",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_PROVIDER", "hotmail"),
            ],
            &["provider", "\"hotmail\"", "exmail"],
        ),
        (
            "every listener disabled",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_SMTP_LISTEN", ""),
                ("QQMAIL_IMAP_LISTEN", ""),
                ("QQMAIL_POP3_LISTEN", " "),
            ],
            &["no listener configured"],
        ),
        (
            "bad user entry",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_USERS", "alice"),
            ],
            &["QQMAIL_USERS", "\"alice\"", "name:hash", "hash-password"],
        ),
        (
            "both user variables",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_USERS", "a:$x"),
                ("QQMAIL_USERS_FILE", "/nonexistent"),
            ],
            &["QQMAIL_USERS", "only one of", "QQMAIL_USERS_FILE"],
        ),
        (
            "unreadable users file",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_USERS_FILE", "/nonexistent/users"),
            ],
            &["QQMAIL_USERS_FILE", "cannot read /nonexistent/users"],
        ),
        (
            "bad rewrite mode",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_REWRITE_SENDER", "sometimes"),
            ],
            &["rewrite_sender", "\"sometimes\"", "\"header\""],
        ),
        (
            "catch-all from the environment",
            &[
                ("QQMAIL_EMAIL", "12345@qq.com"),
                ("QQMAIL_AUTH_CODE", CODE),
                ("QQMAIL_ALLOW_UNAUTHENTICATED", "0.0.0.0/0"),
            ],
            &["allow_unauthenticated", "open relay"],
        ),
    ];
    for (what, env, needles) in cases {
        assert_error(what, Config::load(None, &env_map(env)), needles);
    }
}

#[test]
fn users_from_the_environment() {
    let h = hash();
    let c = from_env(&[("QQMAIL_USERS", &format!("alice:{h}\n bob:{h}:main"))]).expect("users");
    let names: Vec<&str> = c.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(c
        .users
        .iter()
        .all(|u| u.account == 0 && u.password_hash == h));

    let f = Fixture::new();
    let file = f.write(
        "users",
        &format!("# printers\nscanner:{h}\n\n  copier:{h}:main\n"),
    );
    let file = file.display().to_string();
    let c = from_env(&[("QQMAIL_USERS_FILE", &file)]).expect("users file");
    let names: Vec<&str> = c.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["scanner", "copier"]);

    // An entry naming an account that does not exist is reported by where it is.
    assert_error(
        "user for an unknown account",
        from_env(&[("QQMAIL_USERS", &format!("alice:{h}:work"))]),
        &[
            "QQMAIL_USERS line 1 (user \"alice\") account",
            "\"work\" not found",
        ],
    );
}

/// Issue 19 item 10: an htpasswd file from `htpasswd -B` (bcrypt, `$2y$`) or
/// smtprelay (`$2a$`/`$2b$`) works unchanged; a bad line is named by file and line.
#[test]
fn users_file_takes_bcrypt_and_names_its_lines() {
    let argon = hash();
    let bcrypt = |v| {
        bcrypt::hash_with_result("pw", 4)
            .expect("bcrypt")
            .format_for_version(v)
    };
    let y = bcrypt(bcrypt::Version::TwoY);
    let b = bcrypt(bcrypt::Version::TwoB);
    let f = Fixture::new();
    let file = f.write(
        "users",
        &format!(
            "scanner:{y}
copier:{b}
app:{argon}
"
        ),
    );
    let file = file.display().to_string();
    let c = from_env(&[("QQMAIL_USERS_FILE", &file)]).expect("bcrypt users file");
    let names: Vec<&str> = c.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["scanner", "copier", "app"]);

    let bad = f.write(
        "bad",
        &format!(
            "scanner:{y}
# note
copier:$2y$05$short
"
        ),
    );
    let bad = bad.display().to_string();
    assert_error(
        "a bad bcrypt line",
        from_env(&[("QQMAIL_USERS_FILE", &bad)]),
        &[
            &format!("QQMAIL_USERS_FILE {bad} line 3"),
            "copier",
            "bcrypt",
        ],
    );
    let bad = f.write(
        "bad2",
        "ok-line-missing-hash
",
    );
    let bad = bad.display().to_string();
    assert_error(
        "an entry without a hash",
        from_env(&[("QQMAIL_USERS_FILE", &bad)]),
        &[&format!("QQMAIL_USERS_FILE {bad} line 1"), "name:hash"],
    );
}

#[test]
fn listener_and_relay_variables() {
    let c = from_env(&[
        ("QQMAIL_SMTP_LISTEN", "127.0.0.1:2600, [::1]:2600"),
        ("QQMAIL_IMAP_LISTEN", ""),
        ("QQMAIL_POP3_LISTEN", "127.0.0.1:0"),
        ("QQMAIL_ALLOW_UNAUTHENTICATED", "192.168.1.50, 10.0.0.0/8"),
        ("QQMAIL_REWRITE_SENDER", "header"),
        ("QQMAIL_STATE_DIR", "/var/lib/qqmail-proxy"),
        ("QQMAIL_LOG_FORMAT", "json"),
        ("QQMAIL_ADMIN_LISTEN", "127.0.0.1:9925"),
    ])
    .expect("variables");
    assert_eq!(
        listens(&c),
        [
            Some(vec!["127.0.0.1:2600".to_string(), "[::1]:2600".to_string()]),
            None,
            some("127.0.0.1:0"),
        ]
    );
    let smtp = c.smtp.as_ref().expect("smtp");
    let nets: Vec<String> = smtp
        .allow_unauthenticated
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["192.168.1.50/32", "10.0.0.0/8"]);
    assert_eq!(smtp.unauthenticated_account, Some(0));
    assert_eq!(smtp.rewrite_sender, RewriteSender::Header);
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/qqmail-proxy"));
    assert_eq!(c.log_format, Some(super::super::LogFormat::Json));
    assert_eq!(
        c.admin.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9925")
    );
}

#[test]
fn variables_override_a_single_account_file() {
    let f = Fixture::new();
    let toml = format!(
        "{ACCOUNT}smtp_server = \"smtp.example.com:465\"\nimap_server = \"imap.example.com:993\"\n\
         \n[imap]\nlisten = [\"127.0.0.1:1143\"]\n"
    );
    let code_file = f.write("code", "ponmlkjihgfedcba\n");
    let code_file = code_file.display().to_string();
    let c = f.ok(
        &toml,
        &[
            ("QQMAIL_SMTP_SERVER", "starttls://relay.example.com:587"),
            ("QQMAIL_EMAIL", "other@qq.com"),
            ("QQMAIL_AUTH_CODE_FILE", &code_file),
        ],
    );
    let a = &c.accounts[0];
    assert_eq!(a.email, "other@qq.com");
    assert_eq!(a.code.expose(), b"ponmlkjihgfedcba");
    assert_eq!(
        a.smtp.as_ref().map(ToString::to_string).as_deref(),
        Some("starttls://relay.example.com:587")
    );
    assert_eq!(
        a.imap.as_ref().map(ToString::to_string).as_deref(),
        Some("imap.example.com:993"),
        "keys without a variable keep the file's value"
    );
    // With a file, listeners come from the file only: no default SMTP/POP3 listener.
    assert_eq!(listens(&c), [None, some("127.0.0.1:1143"), None]);
}

#[test]
fn account_variables_with_several_accounts_are_an_error() {
    let f = Fixture::new();
    let toml = format!(
        "{ACCOUNT}\n[[account]]\nid = \"work\"\nemail = \"me@corp.example\"\n\
         provider = \"exmail\"\nauth_code_env = \"WORK_CODE\"\n{SMTP}"
    );
    assert_error(
        "QQMAIL_SMTP_SERVER with two accounts",
        f.load(
            &toml,
            &[
                ("WORK_CODE", CODE),
                ("QQMAIL_SMTP_SERVER", "smtp.example.com:465"),
            ],
        ),
        &[
            "QQMAIL_SMTP_SERVER",
            "single account",
            "several [[account]]",
        ],
    );
    // Without account variables the same file is fine.
    let c = f.ok(&toml, &[("WORK_CODE", CODE)]);
    assert_eq!(c.accounts.len(), 2);
}

#[test]
fn the_code_variable_a_multi_account_file_names_is_not_an_override() {
    // `auth_code_env = "QQMAIL_AUTH_CODE"` is what `init` and the docs write. Setting that
    // variable is how such a file gets its code, so with two accounts it must not count
    // as a single-account override.
    let f = Fixture::new();
    let toml = format!(
        "\n[[account]]\nid = \"main\"\nemail = \"12345@qq.com\"\nauth_code_env = \"QQMAIL_AUTH_CODE\"\n\
         \n[[account]]\nid = \"work\"\nemail = \"me@corp.example\"\nprovider = \"exmail\"\n\
         auth_code_env = \"WORK_CODE\"\n{SMTP}"
    );
    let c = f.ok(
        &toml,
        &[
            ("QQMAIL_AUTH_CODE", CODE),
            ("WORK_CODE", "ponmlkjihgfedcba"),
        ],
    );
    assert_eq!(c.accounts[0].code.expose(), CODE.as_bytes());
    assert_eq!(c.accounts[1].code.expose(), b"ponmlkjihgfedcba");
}

#[test]
#[allow(clippy::type_complexity)] // a table: variables, provider, smtp, imap, pop3
fn server_and_provider_variables_from_the_environment_alone() {
    let cases: &[(
        &[(&str, &str)],
        &str,
        Option<&str>,
        Option<&str>,
        Option<&str>,
    )] = &[
        (
            &[("QQMAIL_PROVIDER", "163")],
            "163",
            Some("smtp.163.com:465"),
            Some("imap.163.com:993"),
            Some("pop.163.com:995"),
        ),
        (
            &[
                ("QQMAIL_IMAP_SERVER", "starttls://127.0.0.1:1430"),
                ("QQMAIL_POP3_SERVER", "tls://127.0.0.1:9950"),
            ],
            "qq",
            Some("smtp.qq.com:465"),
            Some("starttls://127.0.0.1:1430"),
            Some("127.0.0.1:9950"),
        ),
        (
            // An empty server variable turns that protocol off for the account.
            &[("QQMAIL_POP3_SERVER", "")],
            "qq",
            Some("smtp.qq.com:465"),
            Some("imap.qq.com:993"),
            None,
        ),
    ];
    for (vars, provider, smtp, imap, pop3) in cases {
        let c = from_env(vars).unwrap_or_else(|e| panic!("{vars:?}: {e}"));
        let a = &c.accounts[0];
        let show = |s: &Option<crate::providers::ServerAddr>| s.as_ref().map(ToString::to_string);
        assert_eq!(a.provider.names[0], *provider, "{vars:?}");
        assert_eq!(show(&a.smtp).as_deref(), *smtp, "{vars:?}");
        assert_eq!(show(&a.imap).as_deref(), *imap, "{vars:?}");
        assert_eq!(show(&a.pop3).as_deref(), *pop3, "{vars:?}");
    }
}

/// Issue 19 item 4: the container image's defaults (`QQMAIL_DEFAULTS=container`) are
/// defaults: a mounted config file wins over them, explicit variables win over the file.
#[test]
fn container_defaults_yield_to_a_config_file_and_variables() {
    let container = [("QQMAIL_DEFAULTS", "container")];
    // The environment alone: every gateway on the container's addresses, state in the
    // volume.
    let c = from_env(&container).expect("container defaults");
    let addrs = |l: &Option<crate::config::Listener>| {
        l.as_ref()
            .map(|l| l.listen.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    assert_eq!(
        addrs(&c.smtp.as_ref().map(|s| s.listener.clone())),
        Some(vec!["0.0.0.0:2525".to_string()])
    );
    assert_eq!(addrs(&c.imap), Some(vec!["0.0.0.0:1143".to_string()]));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/qqmail-proxy"));
    assert!(
        c.listen_origins[0].contains("container defaults"),
        "{:?}",
        c.listen_origins
    );

    // A mounted config with only SMTP on 2626: only that, whatever the image says.
    let f = Fixture::new();
    let c = f.ok(
        &format!("{ACCOUNT}\n[smtp]\nlisten = [\"0.0.0.0:2626\"]\n"),
        &container,
    );
    assert_eq!(
        addrs(&c.smtp.as_ref().map(|s| s.listener.clone())),
        Some(vec!["0.0.0.0:2626".to_string()])
    );
    assert!(c.imap.is_none() && c.pop3.is_none());
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/qqmail-proxy"));
    assert_eq!(
        c.listen_origins,
        [
            "smtp listen from the config file",
            "imap listen off (no section in the config file)",
            "pop3 listen off (no section in the config file)"
        ]
    );
    // A section without `listen` takes the container's address for it.
    let c = f.ok(&format!("{ACCOUNT}\n[imap]\n"), &container);
    assert_eq!(addrs(&c.imap), Some(vec!["0.0.0.0:1143".to_string()]));
    // An explicit variable still wins over the file.
    let c = f.ok(
        &format!("{ACCOUNT}\n[smtp]\nlisten = [\"0.0.0.0:2626\"]\n"),
        &[
            ("QQMAIL_DEFAULTS", "container"),
            ("QQMAIL_SMTP_LISTEN", "127.0.0.1:2700"),
        ],
    );
    assert_eq!(
        addrs(&c.smtp.as_ref().map(|s| s.listener.clone())),
        Some(vec!["127.0.0.1:2700".to_string()])
    );
    assert_eq!(c.listen_origins[0], "smtp listen from QQMAIL_SMTP_LISTEN");
    assert_error(
        "unknown defaults",
        from_env(&[("QQMAIL_DEFAULTS", "cloud")]),
        &["QQMAIL_DEFAULTS", "\"container\""],
    );
}
