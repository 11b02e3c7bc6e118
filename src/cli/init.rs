//! `qqmail-proxy init`: writes a commented config for one account with a generated local
//! password (printed once; only its hash is written).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::describe::quote;
use crate::auth::{generate_password, hash_password};
use crate::config::{CodeNeed, Config, ProcessEnv};
use crate::providers;
use crate::tls::local::write_file;

/// Writes the config file.
pub fn init(email: &str, provider: &str, user: &str, output: &Path, force: bool) -> Result<()> {
    if providers::find(provider).is_none() {
        bail!(
            "unknown provider {provider:?}; known providers: {}",
            providers::known_names()
        );
    }
    if output.exists() && !force {
        bail!("{} exists; use --force to overwrite it", output.display());
    }
    let (email_q, provider_q, user_q) = (quote(email), quote(provider), quote(user));
    let password = generate_password();
    let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let text = format!(
        r#"# qqmail-proxy configuration, written by `qqmail-proxy init`.
# Full reference: config/example.toml and the README.

[[account]]
id = "main"
email = {email_q}
provider = {provider_q}
# The authorization code (授权码) is read from this environment variable:
auth_code_env = "QQMAIL_AUTH_CODE"
# or from a file (trailing newline trimmed):
# auth_code_file = "/run/secrets/qq_auth_code"

[[user]]
name = {user_q}
password_hash = "{hash}"
account = "main"

[smtp]
listen = ["127.0.0.1:2525"]
starttls = "optional"
rewrite_sender = "envelope"
# Printers allowed to send without a password (their own addresses only):
# allow_unauthenticated = ["192.168.1.50/32"]

[imap]
listen = ["127.0.0.1:1143"]
starttls = "optional"

[pop3]
listen = ["127.0.0.1:1110"]
starttls = "optional"
"#
    );
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written beside the target and checked as `check-config` would check it before it
    // takes the target's name: a config `init` wrote always starts.
    let draft = output.with_extension("toml.draft");
    let _ = std::fs::remove_file(&draft);
    write_file(&draft, text.as_bytes(), 0o640, "config")?;
    if let Err(e) = Config::load_for(Some(&draft), &ProcessEnv, CodeNeed::Optional) {
        let _ = std::fs::remove_file(&draft);
        bail!("nothing written: {e}");
    }
    std::fs::rename(&draft, output)
        .with_context(|| format!("renaming {} to {}", draft.display(), output.display()))?;
    println!("Wrote {}.", output.display());
    println!("Local login for your printer or mail client (shown only this once):");
    println!("  user:     {user}");
    println!("  password: {}", String::from_utf8_lossy(password.expose()));
    println!(
        "Start with: QQMAIL_AUTH_CODE=<your 16-character code> qqmail-proxy serve --config {}",
        output.display()
    );
    Ok(())
}
