//! `qqmail-proxy ca export [--format pem|der]`: prints the local CA certificate (never its
//! key) for a client's trust store: a Go app's container, Thunderbird, Windows.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::Config;

/// `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the local CA certificate on stdout, for clients to trust.
    Export {
        /// `pem` (Linux, Go, Python, curl, Thunderbird) or `der` (Windows' .cer import).
        #[arg(long, value_enum, default_value = "pem")]
        format: CaFormat,
    },
}

/// The encodings `ca export` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CaFormat {
    /// Base64 between `-----BEGIN CERTIFICATE-----` lines.
    Pem,
    /// The raw certificate bytes.
    Der,
}

/// Runs one `ca` subcommand.
pub fn run(config: &Config, cmd: CaCommand) -> Result<()> {
    let CaCommand::Export { format } = cmd;
    let pem = crate::tls::local::ca_pem(&config.tls)?;
    let bytes = match format {
        CaFormat::Pem => pem.into_bytes(),
        CaFormat::Der => CertificateDer::from_pem_slice(pem.as_bytes())
            .with_context(|| {
                format!(
                    "{}: no certificate in it; delete the local CA files to have new ones generated",
                    config.tls.ca_cert_file.display()
                )
            })?
            .as_ref()
            .to_vec(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).context("writing to stdout")?;
    out.flush().context("writing to stdout")
}
