//! Default values that depend on where the proxy runs (`QQMAIL_DEFAULTS`): on a machine
//! (`local`, the default) the gateways listen on loopback and state lives in `certs`; in
//! the container image (`container`, set by the Dockerfile) they listen on all of the
//! container's addresses and state lives in the volume. These are defaults only: a config
//! file wins over them, and explicit `QQMAIL_*` variables win over the file. This module
//! also records where each listener's addresses came from, for the start-up log.

use std::path::PathBuf;

use super::env::Env;
use super::raw::{RawConfig, RawListener, RawSmtp};
use super::{invalid, ConfigError};

/// The defaults in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// `local` or `container`, for messages.
    pub name: &'static str,
    /// SMTP, IMAP and POP3 listen addresses.
    pub listen: [&'static str; 3],
    /// `state_dir` when nothing sets it (`None`: `certs`, beside the config file).
    pub state_dir: Option<&'static str>,
}

/// A machine: loopback only.
pub const LOCAL: Defaults = Defaults {
    name: "local",
    listen: [
        super::DEFAULT_SMTP_LISTEN,
        super::DEFAULT_IMAP_LISTEN,
        super::DEFAULT_POP3_LISTEN,
    ],
    state_dir: None,
};

/// The container image: every address of the container (published with `-p`), state in
/// the image's volume.
pub const CONTAINER: Defaults = Defaults {
    name: "container",
    listen: ["0.0.0.0:2525", "0.0.0.0:1143", "0.0.0.0:1110"],
    state_dir: Some("/var/lib/qqmail-proxy"),
};

/// The three gateways: section name and listen variable.
const GATEWAYS: [(&str, &str); 3] = [
    ("smtp", "QQMAIL_SMTP_LISTEN"),
    ("imap", "QQMAIL_IMAP_LISTEN"),
    ("pop3", "QQMAIL_POP3_LISTEN"),
];

impl Defaults {
    /// The defaults `QQMAIL_DEFAULTS` selects.
    pub fn from_env(env: &dyn Env) -> Result<Defaults, ConfigError> {
        match env.var("QQMAIL_DEFAULTS").as_deref().map(str::trim) {
            None | Some("") | Some("local") => Ok(LOCAL),
            Some("container") => Ok(CONTAINER),
            Some(other) => Err(invalid(
                "QQMAIL_DEFAULTS",
                format!("{other:?} is not \"local\" or \"container\""),
            )),
        }
    }

    /// Fills what a config file left unset: `state_dir`, and `listen` of the sections it
    /// has. Without a file, the three sections with their default addresses.
    pub fn fill(&self, raw: &mut RawConfig, file_given: bool) {
        if raw.state_dir.is_none() {
            raw.state_dir = self.state_dir.map(PathBuf::from);
        }
        let [smtp, imap, pop3] = self.listen;
        let listen = |addr: &str| Some(vec![addr.to_string()]);
        if !file_given {
            raw.smtp = Some(RawSmtp::default());
            raw.imap = Some(RawListener::default());
            raw.pop3 = Some(RawListener::default());
        }
        if let Some(s) = raw.smtp.as_mut().filter(|s| s.listen.is_none()) {
            s.listen = listen(smtp);
        }
        for (section, addr) in [(&mut raw.imap, imap), (&mut raw.pop3, pop3)] {
            if let Some(l) = section.as_mut().filter(|l| l.listen.is_none()) {
                l.listen = listen(addr);
            }
        }
    }

    /// Where each gateway's addresses come from, one line each, e.g. `smtp listen from
    /// QQMAIL_SMTP_LISTEN`: computed before [`Defaults::fill`] and the environment.
    pub fn origins(&self, raw: &RawConfig, env: &dyn Env, file_given: bool) -> Vec<String> {
        let written = [
            raw.smtp.as_ref().map(|s| s.listen.is_some()),
            raw.imap.as_ref().map(|l| l.listen.is_some()),
            raw.pop3.as_ref().map(|l| l.listen.is_some()),
        ];
        GATEWAYS
            .iter()
            .zip(written)
            .map(|((name, var), written)| {
                let from = match (env.var(var), written) {
                    (Some(v), _) if v.trim().is_empty() => format!("off by {var}"),
                    (Some(_), _) => format!("from {var}"),
                    (None, Some(true)) => "from the config file".to_string(),
                    (None, Some(false)) => format!("from the {} defaults", self.name),
                    (None, None) if file_given => "off (no section in the config file)".into(),
                    (None, None) => format!("from the {} defaults", self.name),
                };
                format!("{name} listen {from}")
            })
            .collect()
    }
}
