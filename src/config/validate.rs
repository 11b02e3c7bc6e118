//! Validation: raw TOML values (after environment overrides) into typed settings, with
//! a message for every mistake that names the key and says how to fix it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::local_tls::{parse_listen_addr, validate_tls};
use super::queue::validate_queue;
use super::raw::{self, RawAccount, RawConfig, RawListener, RawSmtp};
use super::{
    invalid, Account, Config, ConfigError, Delivery, Env, Limits, ListenMode, Listener, LogFormat,
    RewriteSender, SmtpSettings, User, DEFAULT_IMAP_LISTEN, DEFAULT_POP3_LISTEN,
    DEFAULT_SMTP_LISTEN,
};
use crate::proto::StartTlsMode;
use crate::providers::{self, ServerAddr};
use crate::secrets::Secret;

/// Looks an account id up (`None`: the only account), for error messages naming `key`.
type FindAccount<'a> = dyn Fn(String, &Option<String>) -> Result<usize, ConfigError> + 'a;

/// Whether the command being run needs the authorization codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeNeed {
    /// `serve`, `check`, `send-test`: a missing code is an error.
    Required,
    /// Commands that never log in upstream: a missing code is a warning.
    Optional,
    /// Commands that read only this machine's own state (`ca export`, `queue`,
    /// `healthcheck`): neither a code nor an account is needed, so they work in a shell
    /// without `QQMAIL_EMAIL` (a missing code is not even a warning there).
    LocalOnly,
}

pub(super) fn validate(
    raw: RawConfig,
    env: &dyn Env,
    need: CodeNeed,
) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    if raw.account.is_empty() && need != CodeNeed::LocalOnly {
        return Err(invalid(
            "[[account]]",
            "no account configured: add an [[account]] with email, provider and auth_code_env \
             (see config/example.toml), or set QQMAIL_EMAIL and QQMAIL_AUTH_CODE",
        ));
    }
    let mut accounts: Vec<Arc<Account>> = Vec::new();
    for (i, a) in raw.account.iter().enumerate() {
        let acc = validate_account(i, a, env, need, &mut warnings)?;
        if accounts.iter().any(|x| x.id == acc.id) {
            return Err(invalid(
                format!("[[account]] #{} id", i + 1),
                format!(
                    "duplicate account id {:?}: give each account its own id",
                    acc.id
                ),
            ));
        }
        accounts.push(Arc::new(acc));
    }
    let find_account = |key: String, id: &Option<String>| -> Result<usize, ConfigError> {
        match id {
            Some(id) => accounts.iter().position(|a| &a.id == id).ok_or_else(|| {
                let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
                invalid(
                    key,
                    format!(
                        "account {id:?} not found; known account ids: {}",
                        ids.join(", ")
                    ),
                )
            }),
            None if accounts.len() == 1 => Ok(0),
            None => Err(invalid(
                key,
                "missing: with several [[account]] entries, name the account id",
            )),
        }
    };
    let mut users = Vec::new();
    for (i, u) in raw.user.iter().enumerate() {
        let place = u
            .origin
            .clone()
            .unwrap_or_else(|| format!("[[user]] #{}", i + 1));
        let key = |k: &str| format!("{place} {k}");
        let name = u
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| invalid(key("name"), "missing: the login name legacy clients use"))?;
        if name.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid(
                key("name"),
                "must not contain spaces or control characters",
            ));
        }
        let hash = u.password_hash.clone().ok_or_else(|| {
            invalid(
                key("password_hash"),
                "missing: create one with `qqmail-proxy hash-password` (reads the password on stdin)",
            )
        })?;
        check_hash(&hash).map_err(|m| invalid(key("password_hash"), m))?;
        let account = find_account(key("account"), &u.account)?;
        if users.iter().any(|x: &User| x.name == name) {
            return Err(invalid(key("name"), format!("duplicate user {name:?}")));
        }
        let delivery = match &u.delivery {
            Some(d) => Some(Delivery::parse(&key("delivery"), d)?),
            None => None,
        };
        users.push(User {
            name,
            password_hash: hash,
            account,
            delivery,
        });
    }
    let limits = validate_limits(&raw.limits)?;
    let smtp = match &raw.smtp {
        Some(s) => Some(validate_smtp(s, &find_account, &mut warnings)?),
        None => None,
    };
    let imap = match &raw.imap {
        Some(l) => Some(validate_listener("[imap]", l, DEFAULT_IMAP_LISTEN)?),
        None => None,
    };
    let pop3 = match &raw.pop3 {
        Some(l) => Some(validate_listener("[pop3]", l, DEFAULT_POP3_LISTEN)?),
        None => None,
    };
    for (section, l) in [
        ("[smtp]", smtp.as_ref().map(|s| &s.listener)),
        ("[imap]", imap.as_ref()),
        ("[pop3]", pop3.as_ref()),
    ] {
        if let Some(l) = l {
            let plain_off_loopback = l
                .listen
                .iter()
                .any(|a| a.mode != ListenMode::Tls && !a.addr.ip().is_loopback());
            if l.starttls == StartTlsMode::Off && plain_off_loopback {
                warnings.push(format!(
                    "{section} listens on a non-loopback address with starttls = \"off\": \
                     local passwords cross the network in the clear"
                ));
            }
        }
    }
    if smtp.is_none() && imap.is_none() && pop3.is_none() {
        return Err(invalid(
            "[smtp] / [imap] / [pop3]",
            "no listener configured: add at least one of the sections [smtp], [imap], [pop3]",
        ));
    }
    let state_dir = raw
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("certs"));
    let tls = validate_tls(&raw.tls, &state_dir)?;
    let admin = match raw.admin.as_ref().and_then(|a| a.listen.as_deref()) {
        Some(a) => Some(parse_listen("[admin] listen", a)?),
        None => None,
    };
    let admin_password_hash = super::admin::validate_password(raw.admin.as_ref(), admin)?;
    let log_format = match &raw.log_format {
        Some(f) => Some(LogFormat::parse(f).ok_or_else(|| {
            invalid(
                "log_format",
                format!("{f:?} is not a log format: use \"text\" or \"json\""),
            )
        })?),
        None => None,
    };
    let queue = validate_queue(&raw.queue, &state_dir)?;
    Ok(Config {
        state_dir,
        hostname: raw.hostname.clone().unwrap_or_else(|| "localhost".into()),
        log_format,
        accounts,
        users,
        smtp,
        imap,
        pop3,
        tls,
        limits,
        admin,
        admin_password_hash,
        queue,
        warnings,
        file: None,
        listen_origins: Vec::new(),
    })
}

fn validate_account(
    i: usize,
    a: &RawAccount,
    env: &dyn Env,
    need: CodeNeed,
    warnings: &mut Vec<String>,
) -> Result<Account, ConfigError> {
    let id = a.id.clone().unwrap_or_else(|| {
        if i == 0 {
            "main".into()
        } else {
            format!("account{}", i + 1)
        }
    });
    let key = |k: &str| format!("[[account]] {id:?} {k}");
    let email = a
        .email
        .clone()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            invalid(
                key("email"),
                "missing: the mailbox address, e.g. \"12345@qq.com\"",
            )
        })?;
    if !valid_address(&email) {
        return Err(invalid(
            key("email"),
            format!("{email:?} is not a mail address like \"12345@qq.com\""),
        ));
    }
    let provider_name = a.provider.clone().unwrap_or_else(|| "qq".into());
    let provider = providers::find(&provider_name).ok_or_else(|| {
        invalid(
            key("provider"),
            format!(
                "unknown provider {provider_name:?}; known providers: {}",
                providers::known_names()
            ),
        )
    })?;
    let server = |k: &str, over: &Option<String>, preset: Option<ServerAddr>| match over {
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => ServerAddr::parse(s)
            .map(Some)
            .map_err(|e| invalid(key(k), e.to_string())),
        None => Ok(preset),
    };
    let smtp = server(
        "smtp_server",
        &a.smtp_server,
        provider.smtp.map(|p| p.addr()),
    )?;
    let imap = server(
        "imap_server",
        &a.imap_server,
        provider.imap.map(|p| p.addr()),
    )?;
    let pop3 = server(
        "pop3_server",
        &a.pop3_server,
        provider.pop3.map(|p| p.addr()),
    )?;
    if smtp.is_none() && imap.is_none() && pop3.is_none() {
        return Err(invalid(
            key("provider"),
            "provider \"custom\" needs at least one of smtp_server, imap_server, pop3_server",
        ));
    }
    let (code, code_source) = match read_code(a, env, provider, &key, warnings) {
        Ok(found) => found,
        // Commands that never log in (check-config, reset-password, ...) still work
        // without the code: they say it is unset instead of refusing to run.
        Err(e) if need != CodeNeed::Required => {
            warnings.push(format!(
                "{e} (only `serve`, `check` and `send-test` need it)"
            ));
            (Secret::new(Vec::new()), "unset".to_string())
        }
        Err(e) => return Err(e),
    };
    if provider.names.contains(&"qq") && code.len() != 16 {
        warnings.push(format!(
            "account {id:?}: QQ authorization codes are 16 characters, the one from {code_source} \
             has {}; use the code from QQ Mail → Settings → Account, not the QQ password",
            code.len()
        ));
    }
    if let Some(ca) = &a.ca_file {
        if !ca.is_file() {
            return Err(invalid(
                key("ca_file"),
                format!("{} does not exist or is not a file", ca.display()),
            ));
        }
    }
    let save_sent =
        super::sent::validate(a.save_sent.as_deref(), imap.is_some(), &key("save_sent"))?;
    Ok(Account {
        save_sent,
        id,
        email,
        provider,
        smtp,
        imap,
        pop3,
        ca_file: a.ca_file.clone(),
        code,
        code_source,
    })
}

fn valid_address(email: &str) -> bool {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !email
                    .contains(|c: char| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
        }
        None => false,
    }
}

/// Checks that a PHC string is an argon2 hash the proxy can verify.
pub fn check_hash(hash: &str) -> Result<(), String> {
    if crate::auth::is_bcrypt(hash) {
        return hash
            .parse::<bcrypt::HashParts>()
            .map(|_| ())
            .map_err(|e| format!("not a valid bcrypt hash ({e}); create one with `qqmail-proxy hash-password` or `htpasswd -nB`"));
    }
    let parsed = argon2::PasswordHash::new(hash).map_err(|e| {
        format!("not a PHC password hash ({e}); create one with `qqmail-proxy hash-password`")
    })?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(format!(
            "algorithm {other:?} is neither argon2 nor bcrypt; create one with `qqmail-proxy hash-password`"
        )),
    }
}

fn parse_listen(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim().parse::<SocketAddr>().map_err(|_| {
        invalid(
            key,
            format!(
                "{s:?} is not an address: write IP:port, e.g. \"127.0.0.1:2525\", \
                 \"0.0.0.0:2525\" or \"[::1]:2525\""
            ),
        )
    })
}

fn validate_listener(
    section: &str,
    l: &RawListener,
    default: &str,
) -> Result<Listener, ConfigError> {
    let listen = match &l.listen {
        Some(v) => v
            .iter()
            .map(|s| parse_listen_addr(&format!("{section} listen"), s))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![parse_listen_addr(&format!("{section} listen"), default)?],
    };
    Ok(Listener {
        listen,
        starttls: l.starttls.unwrap_or_default(),
    })
}

fn validate_smtp(
    s: &RawSmtp,
    find_account: &FindAccount<'_>,
    warnings: &mut Vec<String>,
) -> Result<SmtpSettings, ConfigError> {
    let listener = validate_listener(
        "[smtp]",
        &RawListener {
            listen: s.listen.clone(),
            starttls: s.starttls,
        },
        DEFAULT_SMTP_LISTEN,
    )?;
    let rewrite_sender = match &s.rewrite_sender {
        Some(r) => RewriteSender::parse(r).ok_or_else(|| {
            invalid(
                "[smtp] rewrite_sender",
                format!("{r:?} is not one of \"off\", \"envelope\", \"header\""),
            )
        })?,
        None => RewriteSender::Envelope,
    };
    let mut allow = Vec::new();
    for c in s.allow_unauthenticated.iter().flatten() {
        let net = parse_cidr(c).ok_or_else(|| {
            invalid(
                "[smtp] allow_unauthenticated",
                format!("{c:?} is not an address or CIDR, e.g. \"192.168.1.50/32\" or \"192.168.1.0/24\""),
            )
        })?;
        if net.prefix_len() == 0 && s.i_know_this_is_an_open_relay != Some(true) {
            return Err(invalid(
                "[smtp] allow_unauthenticated",
                format!(
                    "{c:?} lets every address send as your account (an open relay); list the \
                     printer's own address instead, or set i_know_this_is_an_open_relay = true"
                ),
            ));
        }
        allow.push(net);
    }
    if allow.iter().any(|n| n.prefix_len() == 0) {
        warnings.push(
            "[smtp] allow_unauthenticated contains a catch-all: this is an open relay".into(),
        );
    }
    let unauthenticated_recipients =
        super::recipients::validate(s.unauthenticated_recipients.as_ref())?;
    let limited = !unauthenticated_recipients.is_empty();
    super::recipients::network_warnings(&allow, limited, warnings);
    let unauthenticated_account = if allow.is_empty() {
        None
    } else {
        Some(
            find_account(
                "[smtp] unauthenticated_account".into(),
                &s.unauthenticated_account,
            )
            .or_else(|e| match &s.unauthenticated_account {
                None => Ok(0),
                Some(_) => Err(e),
            })?,
        )
    };
    let delivery = match &s.delivery {
        Some(d) => Delivery::parse("[smtp] delivery", d)?,
        None => Delivery::Relay,
    };
    Ok(SmtpSettings {
        listener,
        rewrite_sender,
        allow_unauthenticated: allow,
        unauthenticated_account,
        unauthenticated_recipients,
        delivery,
        add_missing_headers: s.add_missing_headers.unwrap_or(true),
    })
}

/// Parses `10.0.0.0/8`, `192.168.1.50` (a host) or an IPv6 form.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn validate_limits(l: &raw::RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let positive = |key: &str, v: Option<usize>, def: usize| -> Result<usize, ConfigError> {
        match v {
            Some(0) => Err(invalid(format!("[limits] {key}"), "must be greater than 0")),
            Some(n) => Ok(n),
            None => Ok(def),
        }
    };
    let max_line_length = positive("max_line_length", l.max_line_length, d.max_line_length)?;
    if max_line_length < 512 {
        return Err(invalid(
            "[limits] max_line_length",
            "must be at least 512 (RFC 5321 §4.5.3.1.4)",
        ));
    }
    let nonzero =
        |key: &str, v: Option<Duration>, def: Duration| -> Result<Duration, ConfigError> {
            match v {
                Some(x) if x.is_zero() => {
                    Err(invalid(format!("[limits] {key}"), "must be longer than 0"))
                }
                Some(x) => Ok(x),
                None => Ok(def),
            }
        };
    // The per-user budget and the check ceiling cannot be switched off: 0 would mean
    // "refuse every login", which is never what an operator means.
    let at_least_one = |key: &str, v: Option<u32>, def: u32| -> Result<u32, ConfigError> {
        match v {
            Some(0) => Err(invalid(
                format!("[limits] {key}"),
                format!("must be at least 1 (remove the key for the default, {def})"),
            )),
            Some(n) => Ok(n),
            None => Ok(def),
        }
    };
    Ok(Limits {
        max_line_length,
        max_literal_size: positive("max_literal_size", l.max_literal_size, d.max_literal_size)?,
        pre_auth_timeout: nonzero("pre_auth_timeout", l.pre_auth_timeout, d.pre_auth_timeout)?,
        idle_timeout: nonzero("idle_timeout", l.idle_timeout, d.idle_timeout)?,
        command_timeout: nonzero("command_timeout", l.command_timeout, d.command_timeout)?,
        upstream_timeout: nonzero("upstream_timeout", l.upstream_timeout, d.upstream_timeout)?,
        upstream_data_timeout: nonzero(
            "upstream_data_timeout",
            l.upstream_data_timeout,
            d.upstream_data_timeout,
        )?,
        max_sessions: positive("max_sessions", l.max_sessions, d.max_sessions)?,
        max_sessions_per_ip: positive(
            "max_sessions_per_ip",
            l.max_sessions_per_ip,
            d.max_sessions_per_ip,
        )?,
        max_auth_failures: l.max_auth_failures.unwrap_or(d.max_auth_failures).max(1),
        lockout_failures: l.lockout_failures.unwrap_or(d.lockout_failures).max(1),
        lockout_duration: l.lockout_duration.unwrap_or(d.lockout_duration),
        auth_cache_ttl: l.auth_cache_ttl.unwrap_or(d.auth_cache_ttl),
        user_throttle_failures: at_least_one(
            "user_throttle_failures",
            l.user_throttle_failures,
            d.user_throttle_failures,
        )?,
        user_throttle_interval: nonzero(
            "user_throttle_interval",
            l.user_throttle_interval,
            d.user_throttle_interval,
        )?,
        max_password_checks_per_second: at_least_one(
            "max_password_checks_per_second",
            l.max_password_checks_per_second,
            d.max_password_checks_per_second,
        )?,
        shutdown_grace: l.shutdown_grace.unwrap_or(d.shutdown_grace),
        warm_upstream_ttl: l.warm_upstream_ttl.unwrap_or(d.warm_upstream_ttl),
    })
}

/// Reads an account's authorization code from the variable or file its config names,
/// with the checks every code must pass; returns it and where it came from.
fn read_code(
    a: &RawAccount,
    env: &dyn Env,
    provider: &providers::Provider,
    key: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<(Secret, String), ConfigError> {
    let (code, code_source) = match (&a.auth_code_env, &a.auth_code_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                key("auth_code_env"),
                "set exactly one of auth_code_env and auth_code_file, not both",
            ))
        }
        (None, None) => return Err(invalid(
            key("auth_code_env"),
            "missing: set auth_code_env = \"QQMAIL_AUTH_CODE\" (an environment variable holding \
                 the authorization code) or auth_code_file = \"/path/to/file\"",
        )),
        (Some(var), None) => {
            let value = env.var(var).ok_or_else(|| {
                invalid(
                    key("auth_code_env"),
                    format!(
                        "environment variable {var} is not set: export it with the {} \
                         (QQ Mail: Settings → Account → POP3/IMAP/SMTP service → generate)",
                        provider.secret_name
                    ),
                )
            })?;
            (Secret::from(value), format!("environment variable {var}"))
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| {
                invalid(
                    key("auth_code_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let mut code = Secret::new(bytes);
            let trimmed = code.expose().trim_ascii_end().len();
            if trimmed != code.len() {
                code = Secret::from_slice(&code.expose()[..trimmed]);
            }
            // The state files' trust rule (`crate::trust`): a code file others can write
            // is refused. A foreign owner and read access for others are only warned
            // about: a container secret mount is owned by the host's user and must be
            // readable by the container's.
            match crate::trust::check(path, crate::trust::Kind::SharedFile) {
                Err(d @ crate::trust::Distrust::ForeignOwner { .. }) => {
                    warnings.push(format!("{}: {d}", key("auth_code_file")))
                }
                Err(d) => return Err(invalid(key("auth_code_file"), d.to_string())),
                Ok(()) => {}
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o044 != 0 {
                        warnings.push(format!(
                            "{}: {} is readable by other users; `chmod 600` it unless it is a \
                             container secret mount",
                            key("auth_code_file"),
                            path.display()
                        ));
                    }
                }
            }
            (code, format!("file {}", path.display()))
        }
    };
    if code.is_empty() {
        return Err(invalid(
            key("auth_code"),
            format!("the code from {code_source} is empty"),
        ));
    }
    if code.expose().iter().any(|b| b.is_ascii_control()) {
        return Err(invalid(
            key("auth_code"),
            format!("the code from {code_source} contains control characters"),
        ));
    }
    Ok((code, code_source))
}
