//! Config validation tests: tables of TOML (and `QQMAIL_*` variables) → the error text,
//! which must name the key and the fix; the environment layer; and `config/example.toml`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::{Config, ConfigError, RewriteSender};
use crate::providers::Security;

mod admin;
mod env_layer;
mod local_tls;
mod queue;
mod recipients;
mod sent;

/// A 16-character code, as QQ issues them.
const CODE: &str = "abcdefghijklmnop";

/// The variable file-based tests name in `auth_code_env`. Not `QQMAIL_AUTH_CODE`: that
/// one is also an account override variable (see `env_layer`).
const CODE_VAR: &str = "MAIN_CODE";

/// One account reading its code from [`CODE_VAR`].
const ACCOUNT: &str = r#"
[[account]]
id = "main"
email = "12345@qq.com"
auth_code_env = "MAIN_CODE"
"#;

/// A minimal SMTP listener.
const SMTP: &str = "\n[smtp]\nlisten = [\"127.0.0.1:2525\"]\n";

/// A valid argon2id PHC string (cheap parameters: only its shape is checked here).
fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::password_hash::{PasswordHasher, SaltString};
        use argon2::{Algorithm, Argon2, Params, Version};
        let params = Params::new(8, 1, 1, None).expect("params");
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"Pr1nter-Pa55", &salt)
            .expect("hash")
            .to_string()
    })
}

/// A `[[user]]` table for `name` → `account` (no `account` key when `None`).
fn user(name: &str, account: Option<&str>) -> String {
    let account = account.map_or(String::new(), |a| format!("account = \"{a}\"\n"));
    format!(
        "\n[[user]]\nname = \"{name}\"\npassword_hash = \"{}\"\n{account}",
        hash()
    )
}

fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A temp dir for config and code files; `{dir}` in TOML text stands for its path.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file readable by its owner only (as code files should be).
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write fixture");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600");
        }
        path
    }

    fn expand(&self, toml: &str) -> String {
        toml.replace("{dir}", &self.dir.path().display().to_string())
    }

    /// Writes `toml` and loads it with `env` plus [`CODE_VAR`] set to [`CODE`].
    fn load(&self, toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let path = self.write("config.toml", &self.expand(toml));
        let mut map = env_map(&[(CODE_VAR, CODE)]);
        map.extend(env_map(env));
        Config::load(Some(&path), &map)
    }

    fn ok(&self, toml: &str, env: &[(&str, &str)]) -> Config {
        match self.load(toml, env) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got: {e}\n{toml}"),
        }
    }
}

/// Asserts that `result` is an error whose text contains every one of `needles`.
fn assert_error(what: &str, result: Result<Config, ConfigError>, needles: &[&str]) {
    let text = match result {
        Ok(_) => panic!("{what}: accepted, but should be an error"),
        Err(e) => e.to_string(),
    };
    for needle in needles {
        assert!(
            text.contains(needle),
            "{what}: error text lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn every_mistake_names_the_key_and_the_fix() {
    let f = Fixture::new();
    let account_with = |extra: &str| format!("{ACCOUNT}{extra}\n{SMTP}");
    let bare_account = |lines: &str| format!("\n[[account]]\nid = \"main\"\n{lines}\n{SMTP}");
    let smtp_with = |extra: &str| format!("{ACCOUNT}{SMTP}{extra}\n");
    let limits = |extra: &str| format!("{ACCOUNT}{SMTP}\n[limits]\n{extra}\n");
    let two_accounts = format!(
        "{ACCOUNT}\n[[account]]\nid = \"work\"\nemail = \"me@corp.example\"\nprovider = \"exmail\"\n\
         auth_code_env = \"MAIN_CODE\"\n{SMTP}"
    );
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown key in [[account]]",
            account_with("emial = \"x@qq.com\""),
            vec!["unknown field `emial`", "expected one of", "`email`"],
        ),
        (
            "unknown key in [smtp]",
            smtp_with("listen_on = [\"127.0.0.1:25\"]"),
            vec!["unknown field `listen_on`", "`listen`"],
        ),
        (
            "unknown section",
            format!("{ACCOUNT}{SMTP}\n[webmail]\nport = 1\n"),
            vec!["unknown field `webmail`"],
        ),
        (
            "missing email",
            bare_account("auth_code_env = \"MAIN_CODE\""),
            vec!["[[account]] \"main\" email", "missing", "12345@qq.com"],
        ),
        (
            "bad email",
            bare_account("email = \"12345\"\nauth_code_env = \"MAIN_CODE\""),
            vec!["[[account]] \"main\" email", "\"12345\"", "not a mail address"],
        ),
        (
            "unknown provider",
            account_with("provider = \"qqq\""),
            vec!["[[account]] \"main\" provider", "unknown provider \"qqq\"", "exmail", "163"],
        ),
        (
            "both auth_code_env and auth_code_file",
            account_with("auth_code_file = \"{dir}/code\""),
            vec!["auth_code_env", "auth_code_file", "not both"],
        ),
        (
            "neither auth_code_env nor auth_code_file",
            bare_account("email = \"12345@qq.com\""),
            vec!["[[account]] \"main\" auth_code_env", "missing", "auth_code_file"],
        ),
        (
            "auth_code_env names an unset variable",
            bare_account("email = \"12345@qq.com\"\nauth_code_env = \"NOT_SET_CODE\""),
            vec!["auth_code_env", "NOT_SET_CODE is not set", "授权码"],
        ),
        (
            "unreadable auth_code_file",
            bare_account("email = \"12345@qq.com\"\nauth_code_file = \"{dir}/missing.code\""),
            vec!["auth_code_file", "cannot read", "missing.code"],
        ),
        (
            "user names an unknown account",
            format!("{ACCOUNT}{}{SMTP}", user("printer", Some("other"))),
            vec!["[[user]] #1 account", "\"other\" not found", "known account ids: main"],
        ),
        (
            "user without account among several",
            format!("{two_accounts}{}", user("printer", None)),
            vec!["[[user]] #1 account", "several [[account]]"],
        ),
        (
            "duplicate user",
            format!(
                "{ACCOUNT}{}{}{SMTP}",
                user("printer", None),
                user("printer", Some("main"))
            ),
            vec!["[[user]] #2 name", "duplicate user \"printer\""],
        ),
        (
            "duplicate account id",
            format!("{ACCOUNT}{ACCOUNT}{SMTP}"),
            vec!["[[account]] #2 id", "duplicate account id \"main\""],
        ),
        (
            "hash is PHC but not argon2",
            format!(
                "{ACCOUNT}\n[[user]]\nname = \"p\"\npassword_hash = \
                 \"$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E\"\n{SMTP}"
            ),
            vec!["[[user]] #1 password_hash", "neither argon2 nor bcrypt", "qqmail-proxy hash-password"],
        ),
        (
            "hash is not PHC",
            format!("{ACCOUNT}\n[[user]]\nname = \"p\"\npassword_hash = \"Pr1nter-Pa55\"\n{SMTP}"),
            vec!["[[user]] #1 password_hash", "not a PHC password hash", "hash-password"],
        ),
        (
            "missing password_hash",
            format!("{ACCOUNT}\n[[user]]\nname = \"p\"\n{SMTP}"),
            vec!["[[user]] #1 password_hash", "missing", "hash-password"],
        ),
        (
            "bad CIDR",
            smtp_with("allow_unauthenticated = [\"192.168.1.300/24\"]"),
            vec!["[smtp] allow_unauthenticated", "\"192.168.1.300/24\"", "192.168.1.0/24"],
        ),
        (
            "catch-all IPv4 without consent",
            smtp_with("allow_unauthenticated = [\"0.0.0.0/0\"]"),
            vec!["[smtp] allow_unauthenticated", "open relay", "i_know_this_is_an_open_relay = true"],
        ),
        (
            "catch-all IPv6 with consent false",
            smtp_with("allow_unauthenticated = [\"::/0\"]\ni_know_this_is_an_open_relay = false"),
            vec!["[smtp] allow_unauthenticated", "open relay"],
        ),
        (
            "bad listen address",
            format!("{ACCOUNT}\n[imap]\nlisten = [\"localhost:1143\"]\n"),
            vec!["[imap] listen", "\"localhost:1143\" is not a listen address", "127.0.0.1:2525"],
        ),
        (
            "bad duration unit",
            limits("pre_auth_timeout = \"5 parsecs\""),
            vec!["pre_auth_timeout", "invalid duration unit", "use ms, s, m, h or d"],
        ),
        (
            "duration that is no number",
            limits("idle_timeout = \"soon\""),
            vec!["idle_timeout", "invalid duration", "\"30s\""],
        ),
        (
            "zero duration",
            limits("upstream_timeout = \"0s\""),
            vec!["[limits] upstream_timeout", "longer than 0"],
        ),
        (
            "user_throttle_failures of 0",
            limits("user_throttle_failures = 0"),
            vec!["[limits] user_throttle_failures", "at least 1", "the default, 20"],
        ),
        (
            "user_throttle_interval of 0",
            limits("user_throttle_interval = \"0s\""),
            vec!["[limits] user_throttle_interval", "longer than 0"],
        ),
        (
            "max_password_checks_per_second of 0",
            limits("max_password_checks_per_second = 0"),
            vec!["[limits] max_password_checks_per_second", "at least 1", "the default, 10"],
        ),
        (
            "max_line_length below 512",
            limits("max_line_length = 511"),
            vec!["[limits] max_line_length", "at least 512"],
        ),
        (
            "wrong value type",
            limits("max_sessions = \"many\""),
            vec!["max_sessions", "invalid type"],
        ),
        (
            "no listener",
            ACCOUNT.to_string(),
            vec!["no listener configured", "[smtp], [imap], [pop3]"],
        ),
        (
            "no account",
            SMTP.to_string(),
            vec!["[[account]]", "no account configured", "QQMAIL_EMAIL"],
        ),
        (
            "custom provider without servers",
            account_with("provider = \"custom\""),
            vec!["[[account]] \"main\" provider", "\"custom\"", "smtp_server"],
        ),
        (
            "server with an unknown scheme",
            account_with("smtp_server = \"smtp://smtp.qq.com:25\""),
            vec!["[[account]] \"main\" smtp_server", "unknown scheme \"smtp\"", "starttls://"],
        ),
        (
            "server without a port",
            account_with("imap_server = \"imap.qq.com\""),
            vec!["[[account]] \"main\" imap_server", "expected host:port"],
        ),
        (
            "bad rewrite_sender",
            smtp_with("rewrite_sender = \"always\""),
            vec!["[smtp] rewrite_sender", "\"always\"", "\"envelope\""],
        ),
        (
            "add_missing_headers not a boolean",
            smtp_with("add_missing_headers = \"yes\""),
            vec!["add_missing_headers", "expected a boolean"],
        ),
        (
            "bad starttls mode",
            smtp_with("starttls = \"maybe\""),
            vec!["starttls", "unknown variant `maybe`", "`optional`"],
        ),
        (
            "missing ca_file",
            account_with("ca_file = \"{dir}/nope.pem\""),
            vec!["[[account]] \"main\" ca_file", "nope.pem", "does not exist"],
        ),
        (
            "bad log_format",
            format!("log_format = \"xml\"\n{ACCOUNT}{SMTP}"),
            vec!["log_format", "\"xml\"", "\"json\""],
        ),
        (
            "not TOML at all",
            "[[account]\nid = ".to_string(),
            vec!["config file", "config.toml", "TOML parse error"],
        ),
    ];
    for (what, toml, needles) in cases {
        assert_error(what, f.load(&toml, &[]), &needles);
    }
}

#[test]
fn code_file_trailing_newline_is_trimmed() {
    let f = Fixture::new();
    for (name, content) in [
        ("lf", "abcdefghijklmnop\n"),
        ("crlf", "abcdefghijklmnop\r\n"),
    ] {
        let path = f.write(name, content);
        let toml = format!(
            "[[account]]\nemail = \"12345@qq.com\"\nauth_code_file = \"{}\"\n{SMTP}",
            path.display()
        );
        let c = f.ok(&toml, &[]);
        let a = &c.accounts[0];
        assert_eq!(a.code.expose(), CODE.as_bytes(), "{name}");
        assert!(a.code_source.contains(&path.display().to_string()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
    // A code file other users can read is worth a warning that names the key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = f.write("shared", "abcdefghijklmnop\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let toml = format!(
            "[[account]]\nemail = \"12345@qq.com\"\nauth_code_file = \"{}\"\n{SMTP}",
            path.display()
        );
        let c = f.ok(&toml, &[]);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("auth_code_file") && w.contains("chmod 600")),
            "{:?}",
            c.warnings
        );
        // One others can write is refused, as a state file is (`crate::trust`).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).expect("chmod");
        let fix = format!("`chmod go-w {}`", path.display());
        assert_error(
            "code file writable by others",
            f.load(&toml, &[]),
            &["auth_code_file", "writable by others", &fix],
        );
    }
    // An empty file is an error, not an empty code sent upstream.
    let path = f.write("empty", "\n");
    let toml = format!(
        "[[account]]\nemail = \"12345@qq.com\"\nauth_code_file = \"{}\"\n{SMTP}",
        path.display()
    );
    assert_error(
        "empty code file",
        f.load(&toml, &[]),
        &["auth_code", "is empty"],
    );
}

#[test]
fn catch_all_is_allowed_only_with_explicit_consent() {
    let f = Fixture::new();
    let toml = format!(
        "{ACCOUNT}{SMTP}allow_unauthenticated = [\"0.0.0.0/0\", \"192.168.1.50\"]\n\
         i_know_this_is_an_open_relay = true\n"
    );
    let c = f.ok(&toml, &[]);
    let smtp = c.smtp.as_ref().expect("smtp");
    let nets: Vec<String> = smtp
        .allow_unauthenticated
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["0.0.0.0/0", "192.168.1.50/32"]);
    assert_eq!(smtp.unauthenticated_account, Some(0));
    assert!(
        c.warnings.iter().any(|w| w.contains("open relay")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn server_forms_and_defaults() {
    let f = Fixture::new();
    let toml = format!(
        "[[account]]\nid = \"box\"\nemail = \"me@example.com\"\nprovider = \"custom\"\n\
         auth_code_env = \"MAIN_CODE\"\nsmtp_server = \"starttls://smtp.example.com:587\"\n\
         imap_server = \"tls://imap.example.com:993\"\npop3_server = \"[::1]:995\"\n{}\n\
         [pop3]\nstarttls = \"required\"\n",
        user("printer", None)
    );
    let c = f.ok(&toml, &[]);
    let a = &c.accounts[0];
    let show = |s: &Option<crate::providers::ServerAddr>| {
        let s = s.as_ref().expect("server");
        (s.host.clone(), s.port, s.security)
    };
    assert_eq!(
        show(&a.smtp),
        ("smtp.example.com".into(), 587, Security::StartTls)
    );
    assert_eq!(
        show(&a.imap),
        ("imap.example.com".into(), 993, Security::Implicit)
    );
    assert_eq!(show(&a.pop3), ("::1".into(), 995, Security::Implicit));
    // The user without `account` belongs to the only account.
    assert_eq!(c.users[0].account, 0);
    // The [pop3] section without `listen` gets the default address.
    let pop3 = c.pop3.as_ref().expect("pop3");
    assert_eq!(pop3.listen[0].to_string(), super::DEFAULT_POP3_LISTEN);
    assert_eq!(pop3.starttls, crate::proto::StartTlsMode::Required);
    assert!(c.smtp.is_none() && c.imap.is_none());
    assert_eq!(c.state_dir, std::path::absolute(f.path("certs")).unwrap());
    assert_eq!(c.hostname, "localhost");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // A provider preset fills in all three servers; an empty override removes one.
    let toml = format!("{ACCOUNT}provider = \"exmail\"\npop3_server = \"\"\n{SMTP}");
    let c = f.ok(&toml, &[]);
    let a = &c.accounts[0];
    assert_eq!(
        a.smtp.as_ref().map(ToString::to_string).as_deref(),
        Some("smtp.exmail.qq.com:465")
    );
    assert!(a.pop3.is_none());
    assert_eq!(
        c.smtp.as_ref().map(|s| s.rewrite_sender),
        Some(RewriteSender::Envelope)
    );
    assert_eq!(c.smtp.as_ref().map(|s| s.add_missing_headers), Some(true));
    let c = f.ok(
        &format!("{ACCOUNT}{SMTP}add_missing_headers = false\n"),
        &[],
    );
    assert_eq!(c.smtp.as_ref().map(|s| s.add_missing_headers), Some(false));
}

#[test]
fn short_qq_code_is_a_warning() {
    let f = Fixture::new();
    let c = f.ok(&format!("{ACCOUNT}{SMTP}"), &[(CODE_VAR, "my-qq-password")]);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("16 characters") && w.contains("not the QQ password")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn example_config_parses_and_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path} must exist (the README points to it): {e}"));
    let raw = super::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Give every account's code variable a value; anything else the file needs is the
    // file's own business.
    let mut env = HashMap::new();
    for a in &raw.account {
        if let Some(var) = &a.auth_code_env {
            env.insert(var.clone(), CODE.to_string());
        }
    }
    if let Err(e) = Config::load(Some(std::path::Path::new(path)), &env) {
        panic!("{path} does not validate: {e}");
    }
}

#[test]
fn relative_paths_in_the_file_are_relative_to_its_directory() {
    let f = Fixture::new();
    f.write("code", CODE);
    let toml = format!(
        "state_dir = \"state\"\n{}\n[queue]\ndir = \"spool\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
        ACCOUNT.replace("auth_code_env = \"MAIN_CODE\"", "auth_code_file = \"code\"")
    );
    let c = f.ok(&format!("{toml}{SMTP}"), &[]);
    let dir = std::path::absolute(f.dir.path()).unwrap();
    assert_eq!(c.state_dir, dir.join("state"));
    assert_eq!(c.queue.dir, dir.join("spool"));
    assert_eq!(c.tls.cert_file, dir.join("c.pem"));
    assert_eq!(c.tls.key_file, dir.join("k.pem"));
    // Absolute paths and defaults derived from state_dir stay as they are.
    let c = f.ok(
        &format!("state_dir = \"{{dir}}/abs\"\n{ACCOUNT}{SMTP}"),
        &[],
    );
    assert_eq!(c.state_dir, f.dir.path().join("abs"));
    assert_eq!(c.tls.cert_file, f.dir.path().join("abs/local-cert.pem"));
}

#[test]
fn paths_from_the_environment_keep_the_shells_meaning() {
    let f = Fixture::new();
    let c = f.ok(&format!("{ACCOUNT}{SMTP}"), &[("QQMAIL_STATE_DIR", "rel")]);
    assert_eq!(c.state_dir, std::path::PathBuf::from("rel"));
}
