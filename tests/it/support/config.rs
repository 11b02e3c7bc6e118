//! A builder for the proxy's TOML config, with the key names of the project's contract:
//! top-level `state_dir`, `[[account]]`, `[[user]]`, `[smtp]`, `[imap]`, `[pop3]`, `[tls]`,
//! `[limits]`. Files it refers to (code files, local cert, state) live in its own tempdir.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::ca::TestCa;
use super::smtp::{FakeSmtp, DEFAULT_CODE, DEFAULT_USER};

/// The env var carrying the default account's authorization code.
pub const DEFAULT_CODE_ENV: &str = "QQMAIL_AUTH_CODE";

/// Where an account's authorization code comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeSource {
    /// `auth_code_env = "VAR"`; [`ConfigBuilder::env`] yields `VAR=code` for the child.
    Env(String),
    /// `auth_code_file = "<dir>/<id>.code"`, written by the builder as `code` + `\n`.
    File,
}

/// The `ca_file` of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaFile {
    /// The builder's test CA (the default).
    TestCa,
    /// This path.
    Path(PathBuf),
    /// No `ca_file` key (the proxy then trusts the public roots).
    Omit,
}

/// One `[[account]]`; builder-style setters.
#[derive(Clone, Debug)]
pub struct Account {
    /// `id`.
    pub id: String,
    /// `email`.
    pub email: String,
    /// `provider` (omitted when `None`).
    pub provider: Option<String>,
    /// The authorization code's value (delivered through `code_source`).
    pub code: String,
    /// How the code reaches the proxy.
    pub code_source: CodeSource,
    /// `smtp_server` (omitted when `None`).
    pub smtp_server: Option<String>,
    /// `imap_server` (omitted when `None`).
    pub imap_server: Option<String>,
    /// `pop3_server` (omitted when `None`).
    pub pop3_server: Option<String>,
    /// `ca_file`.
    pub ca_file: CaFile,
    /// Raw TOML lines appended to this table.
    pub extra: Vec<String>,
}

impl Account {
    /// `id` with defaults: email `12345@qq.com`, provider `qq`, code `abcdefghijklmnop`
    /// via env `QQMAIL_AUTH_CODE`, the builder's CA, no servers.
    pub fn new(id: &str) -> Account {
        Account {
            id: id.to_owned(),
            email: DEFAULT_USER.to_owned(),
            provider: Some("qq".to_owned()),
            code: DEFAULT_CODE.to_owned(),
            code_source: CodeSource::Env(DEFAULT_CODE_ENV.to_owned()),
            smtp_server: None,
            imap_server: None,
            pop3_server: None,
            ca_file: CaFile::TestCa,
            extra: Vec::new(),
        }
    }

    /// Sets `email`.
    pub fn email(mut self, email: &str) -> Self {
        self.email = email.to_owned();
        self
    }

    /// Sets or removes `provider`.
    pub fn provider(mut self, provider: Option<&str>) -> Self {
        self.provider = provider.map(str::to_owned);
        self
    }

    /// Sets the code's value.
    pub fn code(mut self, code: &str) -> Self {
        self.code = code.to_owned();
        self
    }

    /// Delivers the code through env var `var`.
    pub fn code_env(mut self, var: &str) -> Self {
        self.code_source = CodeSource::Env(var.to_owned());
        self
    }

    /// Delivers the code through a file the builder writes.
    pub fn code_file(mut self) -> Self {
        self.code_source = CodeSource::File;
        self
    }

    /// Sets `smtp_server` (`host:port`, `tls://host:port` or `starttls://host:port`).
    pub fn smtp(mut self, server: impl Into<String>) -> Self {
        self.smtp_server = Some(server.into());
        self
    }

    /// Points `smtp_server` at a fake, in the form matching its TLS mode.
    pub fn smtp_fake(self, fake: &FakeSmtp) -> Self {
        self.smtp(fake.config_server())
    }

    /// Sets `imap_server`.
    pub fn imap(mut self, server: impl Into<String>) -> Self {
        self.imap_server = Some(server.into());
        self
    }

    /// Sets `pop3_server`.
    pub fn pop3(mut self, server: impl Into<String>) -> Self {
        self.pop3_server = Some(server.into());
        self
    }

    /// Sets `ca_file`.
    pub fn ca_file(mut self, ca_file: CaFile) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Appends a raw TOML line to this account's table.
    pub fn line(mut self, raw: &str) -> Self {
        self.extra.push(raw.to_owned());
        self
    }
}

/// One `[[user]]`.
#[derive(Clone, Debug)]
pub struct User {
    /// `name`.
    pub name: String,
    /// The clear password (for the test's clients; never written to the config).
    pub password: String,
    /// `password_hash`.
    pub password_hash: String,
    /// `account`.
    pub account: String,
}

/// A protocol section (`[smtp]`, `[imap]`, `[pop3]`).
#[derive(Clone, Debug)]
struct Section {
    listen: Vec<String>,
    starttls: String,
    lines: Vec<String>,
}

/// Builds the proxy's config. Keep the builder alive while the proxy runs: its tempdir
/// holds the code files, the local certificate and the state dir.
pub struct ConfigBuilder {
    dir: tempfile::TempDir,
    ca_pem: PathBuf,
    accounts: Vec<Account>,
    users: Vec<User>,
    sections: Vec<(&'static str, Section)>,
    tls: Option<(PathBuf, PathBuf)>,
    tls_lines: Vec<String>,
    limits: Vec<(String, String)>,
    state_dir: Option<PathBuf>,
    top: Vec<String>,
    extra: Vec<String>,
}

impl ConfigBuilder {
    /// An empty config whose accounts trust `ca`, with `[tls]` files and `state_dir` in
    /// a fresh tempdir.
    pub fn new(ca: &TestCa) -> ConfigBuilder {
        let dir = tempfile::tempdir().expect("config tempdir");
        let tls = Some((
            dir.path().join("local-cert.pem"),
            dir.path().join("local-key.pem"),
        ));
        let state_dir = Some(dir.path().join("state"));
        ConfigBuilder {
            dir,
            ca_pem: ca.pem_path().to_owned(),
            accounts: Vec::new(),
            users: Vec::new(),
            sections: Vec::new(),
            tls,
            tls_lines: Vec::new(),
            limits: Vec::new(),
            state_dir,
            top: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The builder's tempdir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds an `[[account]]`, writing its code file if it uses one.
    pub fn account(mut self, account: Account) -> Self {
        if account.code_source == CodeSource::File {
            let path = self.code_file_path(&account.id);
            std::fs::write(&path, format!("{}\n", account.code)).expect("write code file");
            // Whatever the umask: a code file others can write is refused at start.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod code file");
            }
        }
        self.accounts.push(account);
        self
    }

    /// Path of the code file written for account `id`.
    pub fn code_file_path(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.code"))
    }

    /// Adds a `[[user]]` whose hash is computed here with cheap argon2id parameters.
    pub fn user(mut self, name: &str, password: &str, account: &str) -> Self {
        self.users.push(User {
            name: name.to_owned(),
            password: password.to_owned(),
            password_hash: argon2_hash(password),
            account: account.to_owned(),
        });
        self
    }

    /// Adds a `[[user]]` with a given (possibly invalid) `password_hash`.
    pub fn user_with_hash(mut self, name: &str, hash: &str, account: &str) -> Self {
        self.users.push(User {
            name: name.to_owned(),
            password: String::new(),
            password_hash: hash.to_owned(),
            account: account.to_owned(),
        });
        self
    }

    /// The users added so far.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The accounts added so far.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    fn section(&mut self, name: &'static str) -> &mut Section {
        let at = match self.sections.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                let section = Section {
                    listen: vec!["127.0.0.1:0".to_owned()],
                    starttls: "optional".to_owned(),
                    lines: Vec::new(),
                };
                self.sections.push((name, section));
                self.sections.len() - 1
            }
        };
        &mut self.sections[at].1
    }

    /// Enables `[smtp]` on 127.0.0.1:0 with `starttls` = `off | optional | required`.
    pub fn smtp(mut self, starttls: &str) -> Self {
        self.section("smtp").starttls = starttls.to_owned();
        self
    }

    /// Enables `[imap]`.
    pub fn imap(mut self, starttls: &str) -> Self {
        self.section("imap").starttls = starttls.to_owned();
        self
    }

    /// Enables `[pop3]`.
    pub fn pop3(mut self, starttls: &str) -> Self {
        self.section("pop3").starttls = starttls.to_owned();
        self
    }

    /// Replaces a section's `listen` list (enabling it).
    pub fn listen(mut self, section: &'static str, addrs: &[&str]) -> Self {
        self.section(section).listen = addrs.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Appends a raw TOML line to a section (enabling it).
    pub fn section_line(mut self, section: &'static str, raw: &str) -> Self {
        self.section(section).lines.push(raw.to_owned());
        self
    }

    /// `[smtp] add_missing_headers` (the builder writes `false` unless told: see `build`);
    /// `None` leaves the key out, for the default.
    pub fn add_missing_headers(self, on: Option<bool>) -> Self {
        let line = match on {
            Some(on) => format!("add_missing_headers = {on}"),
            // A comment that names the key, so that `build` does not add it.
            None => "# add_missing_headers: the default".to_owned(),
        };
        self.section_line("smtp", &line)
    }

    /// `[smtp] rewrite_sender = off | envelope | header`.
    pub fn rewrite_sender(self, mode: &str) -> Self {
        let line = format!("rewrite_sender = {}", toml_str(mode));
        self.section_line("smtp", &line)
    }

    /// `[smtp] allow_unauthenticated = [cidrs]` and `unauthenticated_account = account`.
    pub fn allow_unauthenticated(self, cidrs: &[&str], account: &str) -> Self {
        let list: Vec<String> = cidrs.iter().map(|c| toml_str(c)).collect();
        let line = format!("allow_unauthenticated = [{}]", list.join(", "));
        let account = format!("unauthenticated_account = {}", toml_str(account));
        self.section_line("smtp", &line)
            .section_line("smtp", &account)
    }

    /// Writes a leaf from `ca` for 127.0.0.1/localhost into the `[tls]` files, so clients
    /// of the proxy can trust `ca` instead of a certificate the proxy generates.
    pub fn local_cert_from(self, ca: &TestCa) -> Self {
        let (chain, key) = ca.leaf(super::ca::UPSTREAM_NAMES);
        let (cert_path, key_path) = self.tls.clone().expect("[tls] disabled");
        let certs: String = chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
        std::fs::write(cert_path, certs).expect("write local cert");
        std::fs::write(key_path, pem("PRIVATE KEY", key.secret_der())).expect("write key");
        self
    }

    /// Adds a raw line to `[tls]` (e.g. `key_type = "ecdsa"`).
    pub fn tls_line(mut self, raw: &str) -> Self {
        self.tls_lines.push(raw.to_owned());
        self
    }

    /// The `[tls]` certificate and key paths.
    pub fn tls_paths(&self) -> (PathBuf, PathBuf) {
        self.tls.clone().expect("[tls] disabled")
    }

    /// Leaves out `[tls]`.
    pub fn no_tls(mut self) -> Self {
        self.tls = None;
        self
    }

    /// `[limits] key = value`, `raw_value` being TOML (`"2s"` quoted, `4096` bare).
    pub fn limit(mut self, key: &str, raw_value: &str) -> Self {
        self.limits.push((key.to_owned(), raw_value.to_owned()));
        self
    }

    /// Sets or removes the top-level `state_dir`.
    pub fn state_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.state_dir = dir;
        self
    }

    /// A raw top-level line, written before any table.
    pub fn top_line(mut self, raw: &str) -> Self {
        self.top.push(raw.to_owned());
        self
    }

    /// Raw TOML lines appended at the very end (start them with a table header).
    pub fn extra(mut self, raw: &str) -> Self {
        self.extra.push(raw.to_owned());
        self
    }

    /// `(VAR, code)` for every account whose code travels by env var, for the child.
    pub fn env(&self) -> Vec<(String, String)> {
        self.accounts
            .iter()
            .filter_map(|a| match &a.code_source {
                CodeSource::Env(var) => Some((var.clone(), a.code.clone())),
                CodeSource::File => None,
            })
            .collect()
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut out = String::new();
        if let Some(state) = &self.state_dir {
            line(&mut out, format!("state_dir = {}", toml_path(state)));
        }
        for raw in &self.top {
            line(&mut out, raw.clone());
        }
        for a in &self.accounts {
            line(&mut out, "\n[[account]]".to_owned());
            line(&mut out, format!("id = {}", toml_str(&a.id)));
            line(&mut out, format!("email = {}", toml_str(&a.email)));
            if let Some(p) = &a.provider {
                line(&mut out, format!("provider = {}", toml_str(p)));
            }
            match &a.code_source {
                CodeSource::Env(var) => {
                    line(&mut out, format!("auth_code_env = {}", toml_str(var)))
                }
                CodeSource::File => {
                    let path = self.code_file_path(&a.id);
                    line(&mut out, format!("auth_code_file = {}", toml_path(&path)));
                }
            }
            let servers = [
                ("smtp_server", &a.smtp_server),
                ("imap_server", &a.imap_server),
                ("pop3_server", &a.pop3_server),
            ];
            for (key, value) in servers {
                if let Some(v) = value {
                    line(&mut out, format!("{key} = {}", toml_str(v)));
                }
            }
            match &a.ca_file {
                CaFile::TestCa => line(&mut out, format!("ca_file = {}", toml_path(&self.ca_pem))),
                CaFile::Path(p) => line(&mut out, format!("ca_file = {}", toml_path(p))),
                CaFile::Omit => {}
            }
            a.extra.iter().for_each(|raw| line(&mut out, raw.clone()));
        }
        for u in &self.users {
            line(&mut out, "\n[[user]]".to_owned());
            line(&mut out, format!("name = {}", toml_str(&u.name)));
            line(
                &mut out,
                format!("password_hash = {}", toml_str(&u.password_hash)),
            );
            line(&mut out, format!("account = {}", toml_str(&u.account)));
        }
        for (name, s) in &self.sections {
            line(&mut out, format!("\n[{name}]"));
            let listen: Vec<String> = s.listen.iter().map(|l| toml_str(l)).collect();
            line(&mut out, format!("listen = [{}]", listen.join(", ")));
            line(&mut out, format!("starttls = {}", toml_str(&s.starttls)));
            s.lines.iter().for_each(|raw| line(&mut out, raw.clone()));
            let says = |key: &str| {
                s.lines
                    .iter()
                    .any(|l| l.trim_start_matches("# ").starts_with(key))
            };
            if *name == "smtp" && !says("add_missing_headers") {
                // The relay tests compare delivered bytes with what the client sent: they
                // run with the header additions off unless they ask (`add_missing_headers`).
                line(&mut out, "add_missing_headers = false".to_owned());
            }
        }
        if let Some((cert, key)) = &self.tls {
            line(&mut out, "\n[tls]".to_owned());
            line(&mut out, format!("cert_file = {}", toml_path(cert)));
            line(&mut out, format!("key_file = {}", toml_path(key)));
            self.tls_lines
                .iter()
                .for_each(|raw| line(&mut out, raw.clone()));
        }
        if !self.limits.is_empty() {
            line(&mut out, "\n[limits]".to_owned());
            for (k, v) in &self.limits {
                line(&mut out, format!("{k} = {v}"));
            }
        }
        for raw in &self.extra {
            line(&mut out, raw.clone());
        }
        out
    }
}

fn line(out: &mut String, text: String) {
    let _ = writeln!(out, "{text}");
}

/// A TOML basic string (TOML 1.0 §String): escapes quotes, backslashes and controls.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// An argon2id PHC string for `password` with deliberately cheap parameters
/// (m = 8 KiB, t = 1, p = 1): the tests hash and verify many times.
pub fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::SaltString;
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let params = Params::new(8, 1, 1, None).expect("argon2 params");
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hash")
        .to_string()
}

/// PEM armour (RFC 7468 §2) for DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// An `[admin]` section listening on `listen` (a non-loopback address): off loopback the
/// status page needs a login (issue 14), so it carries the hash of `password` — without
/// one the proxy refuses to start. `/healthz` and `/metrics` stay open either way.
pub fn admin_off_loopback(listen: &str, password: &str) -> String {
    format!(
        "\n[admin]\nlisten = {}\npassword_hash = {}\n",
        toml_str(listen),
        toml_str(&argon2_hash(password))
    )
}
