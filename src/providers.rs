//! Provider presets: which upstream servers `provider = "..."` means, and their quirks.
//!
//! Hosts and ports are the providers' published client settings (sources in the README's
//! "Providers" section). A server is written `host:port` or `tls://host:port` (implicit
//! TLS, the default) or `starttls://host:port` (plaintext greeting, then a mandatory
//! STARTTLS upgrade before any credential is sent).

use std::fmt;

use thiserror::Error;

/// How the proxy secures its connection to an upstream server. There is no plaintext mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (SMTPS 465, IMAPS 993, POP3S 995).
    Implicit,
    /// Plaintext greeting, then STARTTLS/STLS, required before any credential.
    StartTls,
}

/// An upstream server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP literal (without brackets); also the name the certificate must carry.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Implicit TLS or STARTTLS.
    pub security: Security,
}

/// Why a server string did not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServerAddrError {
    /// Not `host:port`.
    #[error("expected host:port, tls://host:port or starttls://host:port, got {0:?}")]
    Shape(String),
    /// Unknown scheme.
    #[error("unknown scheme {0:?}: use tls:// (implicit TLS) or starttls://; plaintext upstreams are not supported")]
    Scheme(String),
    /// Port not a number in 1..=65535.
    #[error("invalid port in {0:?}")]
    Port(String),
}

impl ServerAddr {
    /// Parses `host:port`, `tls://host:port`, `starttls://host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<ServerAddr, ServerAddrError> {
        let s = s.trim();
        let (security, rest) = match s.split_once("://") {
            None => (Security::Implicit, s),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "tls" | "ssl" | "imaps" | "smtps" | "pop3s" => (Security::Implicit, rest),
                "starttls" => (Security::StartTls, rest),
                _ => return Err(ServerAddrError::Scheme(scheme.to_string())),
            },
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6
                .split_once("]:")
                .ok_or_else(|| ServerAddrError::Shape(s.to_string()))?;
            (h, p)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| ServerAddrError::Shape(s.to_string()))?
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(ServerAddrError::Shape(s.to_string()));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| ServerAddrError::Port(s.to_string()))?;
        Ok(ServerAddr {
            host: host.to_string(),
            port,
            security,
        })
    }

    const fn preset(host: &'static str, port: u16, security: Security) -> PresetServer {
        PresetServer {
            host,
            port,
            security,
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::Implicit => "",
            Security::StartTls => "starttls://",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}{}:{}", self.host, self.port)
        }
    }
}

/// A preset server, in static form.
#[derive(Clone, Copy, Debug)]
pub struct PresetServer {
    /// Host name.
    pub host: &'static str,
    /// Port.
    pub port: u16,
    /// Implicit TLS or STARTTLS.
    pub security: Security,
}

impl PresetServer {
    /// The owned address.
    pub fn addr(&self) -> ServerAddr {
        ServerAddr {
            host: self.host.to_string(),
            port: self.port,
            security: self.security,
        }
    }
}

/// One provider preset.
#[derive(Debug)]
pub struct Provider {
    /// The `provider = "..."` names that select it.
    pub names: &'static [&'static str],
    /// What the table calls it.
    pub label: &'static str,
    /// Upstream SMTP submission server.
    pub smtp: Option<PresetServer>,
    /// Upstream IMAP server.
    pub imap: Option<PresetServer>,
    /// Upstream POP3 server.
    pub pop3: Option<PresetServer>,
    /// NetEase: IMAP `SELECT` fails with "Unsafe Login" unless the client sent `ID` first,
    /// so the proxy sends one right after logging in.
    pub imap_id_after_login: bool,
    /// The SMTP message size limit the provider advertises, used until the upstream's
    /// own EHLO has been seen.
    pub smtp_size: Option<u64>,
    /// What the user types as the code, for messages and docs.
    pub secret_name: &'static str,
    /// The Sent folder's name (UTF-8, as the provider's web mail shows it), used by
    /// `save_sent` when the server marks no folder `\Sent` (RFC 6154, or XLIST).
    pub sent_folder: &'static str,
}

use Security::{Implicit, StartTls};

/// Every preset, in the order `qqmail-proxy providers` prints them.
pub static PROVIDERS: &[Provider] = &[
    Provider {
        names: &["qq", "foxmail"],
        label: "QQ Mail / Foxmail",
        smtp: Some(ServerAddr::preset("smtp.qq.com", 465, Implicit)),
        imap: Some(ServerAddr::preset("imap.qq.com", 993, Implicit)),
        pop3: Some(ServerAddr::preset("pop.qq.com", 995, Implicit)),
        imap_id_after_login: false,
        smtp_size: Some(73_400_320),
        secret_name: "authorization code (授权码)",
        sent_folder: "Sent Messages",
    },
    Provider {
        names: &["exmail"],
        label: "Tencent Exmail (企业邮箱)",
        smtp: Some(ServerAddr::preset("smtp.exmail.qq.com", 465, Implicit)),
        imap: Some(ServerAddr::preset("imap.exmail.qq.com", 993, Implicit)),
        pop3: Some(ServerAddr::preset("pop.exmail.qq.com", 995, Implicit)),
        imap_id_after_login: false,
        smtp_size: None,
        secret_name: "client-specific password (客户端专用密码)",
        sent_folder: "Sent Messages",
    },
    Provider {
        names: &["163"],
        label: "NetEase 163",
        smtp: Some(ServerAddr::preset("smtp.163.com", 465, Implicit)),
        imap: Some(ServerAddr::preset("imap.163.com", 993, Implicit)),
        pop3: Some(ServerAddr::preset("pop.163.com", 995, Implicit)),
        imap_id_after_login: true,
        smtp_size: None,
        secret_name: "authorization code (授权码)",
        sent_folder: "已发送",
    },
    Provider {
        names: &["126"],
        label: "NetEase 126",
        smtp: Some(ServerAddr::preset("smtp.126.com", 465, Implicit)),
        imap: Some(ServerAddr::preset("imap.126.com", 993, Implicit)),
        pop3: Some(ServerAddr::preset("pop.126.com", 995, Implicit)),
        imap_id_after_login: true,
        smtp_size: None,
        secret_name: "authorization code (授权码)",
        sent_folder: "已发送",
    },
    Provider {
        names: &["yeah"],
        label: "NetEase yeah.net",
        smtp: Some(ServerAddr::preset("smtp.yeah.net", 465, Implicit)),
        imap: Some(ServerAddr::preset("imap.yeah.net", 993, Implicit)),
        pop3: Some(ServerAddr::preset("pop.yeah.net", 995, Implicit)),
        imap_id_after_login: true,
        smtp_size: None,
        secret_name: "authorization code (授权码)",
        sent_folder: "已发送",
    },
    Provider {
        names: &["icloud"],
        label: "iCloud Mail",
        smtp: Some(ServerAddr::preset("smtp.mail.me.com", 587, StartTls)),
        imap: Some(ServerAddr::preset("imap.mail.me.com", 993, Implicit)),
        pop3: None,
        imap_id_after_login: false,
        smtp_size: None,
        secret_name: "app-specific password",
        sent_folder: "Sent Messages",
    },
    Provider {
        names: &["gmail"],
        label: "Gmail",
        smtp: Some(ServerAddr::preset("smtp.gmail.com", 465, Implicit)),
        imap: Some(ServerAddr::preset("imap.gmail.com", 993, Implicit)),
        pop3: Some(ServerAddr::preset("pop.gmail.com", 995, Implicit)),
        imap_id_after_login: false,
        smtp_size: None,
        secret_name: "app password",
        sent_folder: "[Gmail]/Sent Mail",
    },
    Provider {
        names: &["custom"],
        label: "any other server (set smtp_server / imap_server / pop3_server)",
        smtp: None,
        imap: None,
        pop3: None,
        imap_id_after_login: false,
        smtp_size: None,
        secret_name: "password",
        sent_folder: "Sent",
    },
];

/// Looks a provider up by name, case-insensitively.
pub fn find(name: &str) -> Option<&'static Provider> {
    PROVIDERS
        .iter()
        .find(|p| p.names.iter().any(|n| n.eq_ignore_ascii_case(name.trim())))
}

/// All accepted provider names, for error messages.
pub fn known_names() -> String {
    PROVIDERS
        .iter()
        .flat_map(|p| p.names.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table printed by `qqmail-proxy providers`.
pub fn table() -> String {
    let show = |s: &Option<PresetServer>| match s {
        Some(s) => s.addr().to_string(),
        None => "-".to_string(),
    };
    let mut rows = vec![["provider", "smtp", "imap", "pop3", "notes"].map(String::from)];
    for p in PROVIDERS {
        let note = if p.imap_id_after_login {
            "IMAP ID sent after login"
        } else {
            ""
        };
        rows.push([
            p.names.join(", "),
            show(&p.smtp),
            show(&p.imap),
            show(&p.pop3),
            note.to_string(),
        ]);
    }
    // Columns as wide as their widest cell (all ASCII), two spaces apart.
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_its_columns() {
        let table = table();
        let lines: Vec<&str> = table.lines().collect();
        // Every column starts where its heading does, on every line.
        let header = lines[0];
        for heading in ["smtp", "imap", "pop3"] {
            let col = header.find(heading).expect("heading");
            for line in &lines[1..] {
                assert_eq!(
                    &line[col - 2..col],
                    "  ",
                    "{heading} misaligned in {line:?}"
                );
                assert_ne!(&line[col..col + 1], " ", "{heading} misaligned in {line:?}");
            }
        }
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table: name, smtp, imap, pop3, ID quirk
    fn presets_resolve_to_documented_servers() {
        let s = |p: &Option<PresetServer>| p.map(|s| s.addr().to_string());
        let table: &[(&str, Option<&str>, Option<&str>, Option<&str>, bool)] = &[
            (
                "qq",
                Some("smtp.qq.com:465"),
                Some("imap.qq.com:993"),
                Some("pop.qq.com:995"),
                false,
            ),
            (
                "foxmail",
                Some("smtp.qq.com:465"),
                Some("imap.qq.com:993"),
                Some("pop.qq.com:995"),
                false,
            ),
            (
                "exmail",
                Some("smtp.exmail.qq.com:465"),
                Some("imap.exmail.qq.com:993"),
                Some("pop.exmail.qq.com:995"),
                false,
            ),
            (
                "163",
                Some("smtp.163.com:465"),
                Some("imap.163.com:993"),
                Some("pop.163.com:995"),
                true,
            ),
            (
                "126",
                Some("smtp.126.com:465"),
                Some("imap.126.com:993"),
                Some("pop.126.com:995"),
                true,
            ),
            (
                "yeah",
                Some("smtp.yeah.net:465"),
                Some("imap.yeah.net:993"),
                Some("pop.yeah.net:995"),
                true,
            ),
            (
                "icloud",
                Some("starttls://smtp.mail.me.com:587"),
                Some("imap.mail.me.com:993"),
                None,
                false,
            ),
            (
                "gmail",
                Some("smtp.gmail.com:465"),
                Some("imap.gmail.com:993"),
                Some("pop.gmail.com:995"),
                false,
            ),
            ("custom", None, None, None, false),
            (
                "QQ",
                Some("smtp.qq.com:465"),
                Some("imap.qq.com:993"),
                Some("pop.qq.com:995"),
                false,
            ),
        ];
        for (name, smtp, imap, pop3, id) in table {
            let p = find(name).unwrap_or_else(|| panic!("preset {name}"));
            assert_eq!(s(&p.smtp).as_deref(), *smtp, "{name} smtp");
            assert_eq!(s(&p.imap).as_deref(), *imap, "{name} imap");
            assert_eq!(s(&p.pop3).as_deref(), *pop3, "{name} pop3");
            assert_eq!(p.imap_id_after_login, *id, "{name} id");
        }
        assert!(find("qqq").is_none());
        assert!(known_names().contains("exmail"));
    }

    #[test]
    fn server_addr_forms() {
        let ok = |s: &str, host: &str, port: u16, sec: Security| {
            assert_eq!(
                ServerAddr::parse(s),
                Ok(ServerAddr {
                    host: host.into(),
                    port,
                    security: sec
                }),
                "{s}"
            )
        };
        ok("smtp.qq.com:465", "smtp.qq.com", 465, Implicit);
        ok("tls://smtp.qq.com:465", "smtp.qq.com", 465, Implicit);
        ok(
            "starttls://smtp.mail.me.com:587",
            "smtp.mail.me.com",
            587,
            StartTls,
        );
        ok("STARTTLS://h:1", "h", 1, StartTls);
        ok("[::1]:993", "::1", 993, Implicit);
        ok("127.0.0.1:1", "127.0.0.1", 1, Implicit);
        assert!(matches!(
            ServerAddr::parse("smtp.qq.com"),
            Err(ServerAddrError::Shape(_))
        ));
        assert!(matches!(
            ServerAddr::parse("smtp://h:25"),
            Err(ServerAddrError::Scheme(_))
        ));
        assert!(matches!(
            ServerAddr::parse("h:0"),
            Err(ServerAddrError::Port(_))
        ));
        assert!(matches!(
            ServerAddr::parse("h:99999"),
            Err(ServerAddrError::Port(_))
        ));
        assert!(matches!(
            ServerAddr::parse(":25"),
            Err(ServerAddrError::Shape(_))
        ));
        assert_eq!(
            ServerAddr::parse("[::1]:993").unwrap().to_string(),
            "[::1]:993"
        );
        assert_eq!(
            ServerAddr::parse("starttls://h:587").unwrap().to_string(),
            "starttls://h:587"
        );
    }
}
