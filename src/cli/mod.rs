//! The command line (clap): `serve`, `init`, `hash-password`, `reset-password`,
//! `check-config`, `check`, `send-test`, `providers`, `healthcheck`, `queue`, `ca`. The only place
//! where errors become `anyhow` and reach the user as text.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{CodeNeed, Config, LogFormat, ProcessEnv};

mod ca;
pub(crate) mod check;
mod describe;
mod init;
mod prompt;
pub(crate) mod queue;
mod serve;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "qqmail-proxy",
    version = crate::build_info::VERSION,
    about = "Lets printers, scanners and old mail apps use QQ Mail (and 163, Exmail, iCloud, Gmail) \
             through localhost: plain SMTP/IMAP/POP3 in, verified TLS with the authorization code out.",
    after_help = "Examples:\n  \
        QQMAIL_EMAIL=12345@qq.com QQMAIL_AUTH_CODE=abcdefghijklmnop qqmail-proxy serve\n  \
        qqmail-proxy init --email 12345@qq.com\n  \
        qqmail-proxy serve --config config/qqmail-proxy.toml\n  \
        echo -n 'printer password' | qqmail-proxy hash-password\n  \
        qqmail-proxy check --config config/qqmail-proxy.toml\n  \
        qqmail-proxy send-test --to someone@example.com\n  \
        qqmail-proxy queue list\n  \
        qqmail-proxy ca export > qqmail-proxy-ca.pem"
)]
pub struct Cli {
    /// Config file (TOML). Without one, QQMAIL_* environment variables configure a single account.
    #[arg(long, short, global = true, env = "QQMAIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format (overrides log_format / QQMAIL_LOG_FORMAT). RUST_LOG sets the level.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default way to start it).
    Serve,
    /// Write a commented config file with a generated local password.
    Init {
        /// The mailbox address, e.g. 12345@qq.com.
        #[arg(long)]
        email: String,
        /// Provider preset (see `qqmail-proxy providers`).
        #[arg(long, default_value = "qq")]
        provider: String,
        /// Local user name for clients.
        #[arg(long, default_value = "printer")]
        user: String,
        /// Where to write it.
        #[arg(long, default_value = "config/qqmail-proxy.toml")]
        output: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Read a password on stdin and print its argon2 hash (for [[user]].password_hash).
    HashPassword,
    /// Generate a new local password (when no [[user]] is configured).
    ResetPassword,
    /// Validate the configuration and print the effective settings (secrets masked).
    CheckConfig,
    /// Log in to every account's upstream servers with the stored code and report.
    Check,
    /// Send a short test message through an account's upstream SMTP server.
    SendTest {
        /// Recipient address.
        #[arg(long)]
        to: String,
        /// Account id (default: the first).
        #[arg(long)]
        account: Option<String>,
    },
    /// List the provider presets.
    Providers,
    /// Exit 0 when the running proxy answers (for container health checks).
    Healthcheck,
    /// The local certificate authority that signs the generated certificate.
    Ca {
        /// What to do.
        #[command(subcommand)]
        action: ca::CaCommand,
    },
    /// Inspect the store-and-forward queue, or ask the running server to retry or delete.
    Queue {
        /// What to do.
        #[command(subcommand)]
        action: queue::QueueCommand,
    },
}

fn load(path: Option<&Path>) -> Result<Config> {
    Ok(Config::load(path, &ProcessEnv)?)
}

/// [`load`] for a command that never logs in upstream: a missing code is only a warning
/// (printed to stderr), so `check-config`, `reset-password`, `healthcheck` and `queue`
/// work on a machine where the code is kept elsewhere.
fn load_without_code(path: Option<&Path>) -> Result<Config> {
    let config = Config::load_for(path, &ProcessEnv, CodeNeed::Optional)?;
    Ok(config)
}

/// [`load`] for a command that reads only this machine's state (`ca export`, `queue`,
/// `healthcheck`): it works in a shell that has neither `QQMAIL_EMAIL` nor the code.
fn load_local(path: Option<&Path>) -> Result<Config> {
    Ok(Config::load_for(path, &ProcessEnv, CodeNeed::LocalOnly)?)
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let log_format = cli.log_format.map(|f| match f {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
    let path = cli.config.as_deref();
    match cli.command {
        Command::Serve => serve::serve(path, log_format),
        Command::Init {
            email,
            provider,
            user,
            output,
            force,
        } => init::init(&email, &provider, &user, &output, force),
        Command::HashPassword => {
            let password = prompt::read_password()?;
            let hash = crate::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
            println!("{hash}");
            Ok(())
        }
        Command::ResetPassword => {
            let config = load_without_code(path)?;
            if !config.users.is_empty() {
                bail!(
                    "this configuration defines its own [[user]] entries: change a password with \
                     `qqmail-proxy hash-password` and put the hash in the config"
                );
            }
            let (_, generated) = crate::state::local_users(&config, true)?;
            crate::state::announce(&generated, &config);
            println!("Restart the proxy (or send it SIGHUP) to use the new password.");
            Ok(())
        }
        Command::CheckConfig => {
            let mut config = load_without_code(path)?;
            config
                .warnings
                .extend(crate::auth::published::warnings(&config.users));
            print!("{}", describe::describe(&config));
            Ok(())
        }
        Command::Check => check::check(&load(path)?),
        Command::SendTest { to, account } => {
            check::send_test(&load(path)?, &to, account.as_deref())
        }
        Command::Providers => {
            print!("{}", crate::providers::table());
            Ok(())
        }
        Command::Healthcheck => check::healthcheck(&load_local(path)?),
        Command::Queue { action } => queue::run(&load_local(path)?, action),
        Command::Ca { action } => ca::run(&load_local(path)?, action),
    }
}

/// Builds the tokio runtime used by the async commands.
fn tokio() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
