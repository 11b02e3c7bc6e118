//! The `qqmail-proxy` command: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = qqmail_proxy::cli::Cli::parse();
    match qqmail_proxy::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qqmail-proxy: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
