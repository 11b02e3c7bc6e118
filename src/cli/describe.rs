//! `check-config`'s output: the effective settings written as the config file's own
//! sections and keys (`key = value`, TOML syntax), so a user can compare them with what
//! they wrote and copy a line back; secrets masked, warnings last.

use std::fmt::Write;
use std::time::Duration;

use crate::config::{Config, Limits, RewriteSender};

/// The effective settings, secrets masked.
pub fn describe(c: &Config) -> String {
    let mut o = String::from("# configuration OK: the effective settings (defaults filled in)\n");
    line(
        &mut o,
        "state_dir",
        &quote(&c.state_dir.display().to_string()),
    );
    line(&mut o, "hostname", &quote(&c.hostname));
    accounts(&mut o, c);
    users(&mut o, c);
    listeners(&mut o, c);
    o.push_str("\n[tls]\n");
    line(
        &mut o,
        "cert_file",
        &quote(&c.tls.cert_file.display().to_string()),
    );
    line(
        &mut o,
        "key_file",
        &quote(&c.tls.key_file.display().to_string()),
    );
    line(&mut o, "names", &list(c.tls.names.iter()));
    line(&mut o, "key_type", &quote(c.tls.key_type.name()));
    let _ = writeln!(o, "# local CA: {}", c.tls.ca_cert_file.display());
    if let Some(hint) = crate::tls::local::legacy_hint(&c.tls) {
        let _ = writeln!(o, "# note: {hint}");
    }
    if c.uses_queue() {
        queue(&mut o, c);
    }
    limits(&mut o, &c.limits);
    if let Some(a) = c.admin {
        o.push_str("\n[admin]\n");
        line(&mut o, "listen", &quote(&a.to_string()));
        if c.admin_password_hash.is_some() {
            o.push_str("# password_hash is set (not shown)\n");
        }
    }
    if !c.warnings.is_empty() {
        o.push('\n');
    }
    for w in &c.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

fn accounts(o: &mut String, c: &Config) {
    for a in &c.accounts {
        o.push_str("\n[[account]]\n");
        line(o, "id", &quote(&a.id));
        line(o, "email", &quote(&a.email));
        line(o, "provider", &quote(a.provider.names[0]));
        for (key, server) in [
            ("smtp_server", &a.smtp),
            ("imap_server", &a.imap),
            ("pop3_server", &a.pop3),
        ] {
            line(
                o,
                key,
                &quote(&server.as_ref().map(ToString::to_string).unwrap_or_default()),
            );
        }
        let code = if a.code.is_empty() {
            "# authorization code: unset".to_string()
        } else {
            format!(
                "# authorization code: *** ({} characters, from {})",
                a.code.len(),
                a.code_source
            )
        };
        let _ = writeln!(o, "{code}");
        if let Some(ca) = &a.ca_file {
            line(o, "ca_file", &quote(&ca.display().to_string()));
        }
        if a.save_sent == crate::config::SaveSent::On {
            line(
                o,
                "save_sent",
                "\"on\"  # a copy of each accepted message in Sent",
            );
        }
    }
}

fn users(o: &mut String, c: &Config) {
    if c.users.is_empty() {
        let _ = writeln!(
            o,
            "\n# [[user]]: none configured; `serve` generates one per account (user = the \
             address), its hash kept in {}",
            crate::state::users_file(c).display()
        );
    }
    for u in &c.users {
        o.push_str("\n[[user]]\n");
        line(o, "name", &quote(&u.name));
        line(o, "password_hash", "\"***\"  # argon2");
        line(o, "account", &quote(&c.accounts[u.account].id));
        if let Some(d) = u.delivery {
            line(o, "delivery", &quote(d.name()));
        }
    }
}

fn listeners(o: &mut String, c: &Config) {
    if let Some(s) = &c.smtp {
        o.push_str("\n[smtp]\n");
        line(o, "listen", &list(s.listener.listen.iter()));
        line(o, "starttls", &quote(s.listener.starttls.name()));
        line(o, "delivery", &quote(s.delivery.name()));
        let rewrite = match s.rewrite_sender {
            RewriteSender::Off => "off",
            RewriteSender::Envelope => "envelope",
            RewriteSender::Header => "header",
        };
        line(o, "rewrite_sender", &quote(rewrite));
        line(
            o,
            "allow_unauthenticated",
            &list(s.allow_unauthenticated.iter()),
        );
        if let Some(i) = s.unauthenticated_account {
            line(o, "unauthenticated_account", &quote(&c.accounts[i].id));
            line(
                o,
                "unauthenticated_recipients",
                &list(s.unauthenticated_recipients.iter()),
            );
        }
    }
    for (name, l) in [("imap", &c.imap), ("pop3", &c.pop3)] {
        if let Some(l) = l {
            let _ = writeln!(o, "\n[{name}]");
            line(o, "listen", &list(l.listen.iter()));
            line(o, "starttls", &quote(l.starttls.name()));
        }
    }
}

fn queue(o: &mut String, c: &Config) {
    let q = &c.queue;
    o.push_str("\n[queue]\n");
    line(o, "dir", &quote(&q.dir.display().to_string()));
    line(o, "max_age", &quote(&duration(q.policy.max_age)));
    line(o, "max_size", &format!("{}  # bytes", q.max_size));
    line(o, "retry_min", &quote(&duration(q.policy.retry_min)));
    line(o, "retry_max", &quote(&duration(q.policy.retry_max)));
    let rate = q
        .rate
        .map(|r| format!("{}/{}", r.count, per(r.per)))
        .unwrap_or_default();
    line(o, "rate", &quote(&rate));
    line(o, "daily_limit", &q.daily_limit.to_string());
}

fn limits(o: &mut String, l: &Limits) {
    o.push_str("\n[limits]\n");
    let numbers = [
        ("max_line_length", l.max_line_length as u64),
        ("max_literal_size", l.max_literal_size as u64),
        ("max_sessions", l.max_sessions as u64),
        ("max_sessions_per_ip", l.max_sessions_per_ip as u64),
        ("max_auth_failures", u64::from(l.max_auth_failures)),
        ("lockout_failures", u64::from(l.lockout_failures)),
        (
            "user_throttle_failures",
            u64::from(l.user_throttle_failures),
        ),
        (
            "max_password_checks_per_second",
            u64::from(l.max_password_checks_per_second),
        ),
    ];
    for (key, n) in numbers {
        line(o, key, &n.to_string());
    }
    let durations = [
        ("pre_auth_timeout", l.pre_auth_timeout),
        ("idle_timeout", l.idle_timeout),
        ("command_timeout", l.command_timeout),
        ("upstream_timeout", l.upstream_timeout),
        ("upstream_data_timeout", l.upstream_data_timeout),
        ("lockout_duration", l.lockout_duration),
        ("auth_cache_ttl", l.auth_cache_ttl),
        ("user_throttle_interval", l.user_throttle_interval),
        ("shutdown_grace", l.shutdown_grace),
        ("warm_upstream_ttl", l.warm_upstream_ttl),
    ];
    for (key, d) in durations {
        line(o, key, &quote(&duration(d)));
    }
}

fn line(o: &mut String, key: &str, value: &str) {
    let _ = writeln!(o, "{key} = {value}");
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A TOML array of strings.
fn list<T: ToString>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| quote(&i.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// A duration in the config's own syntax ("250ms", "30s", "5m", "1h", "5d").
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    const UNITS: [(u128, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (unit, suffix) in UNITS {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("{}{suffix}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// The unit of a `rate` ("20/min").
fn per(d: Duration) -> String {
    match d.as_secs() {
        1 => "s".into(),
        60 => "min".into(),
        3600 => "h".into(),
        86_400 => "day".into(),
        _ => duration(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_the_configs_own_syntax() {
        for (d, text) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5 * 86_400), "5d"),
            (Duration::ZERO, "0ms"),
        ] {
            assert_eq!(duration(d), text);
        }
    }

    #[test]
    fn strings_are_toml_strings() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny"), r#""x\u000Ay""#);
    }
}
