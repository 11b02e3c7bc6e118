//! Reading a password for `hash-password`: from a pipe, the first line; on a terminal, a
//! prompt with echo off, asked twice (as `htpasswd` does), so the password is neither
//! shown on the screen nor left in the shell's history.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use rustix::termios::{self, LocalModes, OptionalActions};

use crate::secrets::Secret;

/// The longest password read (argon2 takes any length; a bound keeps a mistaken pipe of a
/// large file from being hashed).
const MAX_PASSWORD: u64 = 4096;

/// Reads the password to hash, from a terminal (prompting) or from standard input.
pub fn read_password() -> Result<Secret> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = prompt("Password: ")?;
        let again = prompt("Again: ")?;
        if first.expose() != again.expose() {
            bail!("the two passwords differ; nothing was hashed");
        }
        if first.is_empty() {
            bail!("the password is empty; nothing was hashed");
        }
        return Ok(first);
    }
    let mut raw = Vec::new();
    stdin
        .take(MAX_PASSWORD)
        .read_to_end(&mut raw)
        .context("reading the password from stdin")?;
    let password = first_line(Secret::new(raw));
    if password.is_empty() {
        bail!("no password on stdin: run `qqmail-proxy hash-password` on a terminal, or `echo -n 'the password' | qqmail-proxy hash-password`");
    }
    Ok(password)
}

/// The first line of `raw`, without its line ending.
fn first_line(raw: Secret) -> Secret {
    let bytes = raw.expose();
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..end];
    Secret::from_slice(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Shows `label` on stderr and reads one line from the terminal with echo off.
fn prompt(label: &str) -> Result<Secret> {
    let mut err = std::io::stderr();
    let line = {
        // Echo goes off before the prompt shows, so nothing typed after the prompt can
        // be echoed (and nothing typed ahead is discarded: TCSADRAIN, not TCSAFLUSH).
        let _echo_off = EchoOff::new()?;
        let _ = err.write_all(label.as_bytes());
        let _ = err.flush();
        let mut line = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_PASSWORD)
            .read_until(b'\n', &mut line)
            .context("reading the password from the terminal")?;
        Secret::new(line)
    };
    // The user's Enter was not echoed either.
    let _ = err.write_all(b"\n");
    Ok(first_line(line))
}

/// Terminal echo switched off on stdin until dropped (restored even on an error).
struct EchoOff {
    saved: termios::Termios,
}

impl EchoOff {
    fn new() -> Result<EchoOff> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // Keep echoing the newline so the terminal's line discipline behaves as usual.
        quiet.local_modes.insert(LocalModes::ECHONL);
        termios::tcsetattr(&stdin, OptionalActions::Drain, &quiet)
            .context("switching the terminal's echo off")?;
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Drain, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_without_its_ending() {
        for (input, expected) in [
            (&b"secret"[..], &b"secret"[..]),
            (b"secret\n", b"secret"),
            (b"secret\r\nmore\n", b"secret"),
            (b"\n", b""),
            (b"", b""),
        ] {
            assert_eq!(first_line(Secret::from_slice(input)).expose(), expected);
        }
    }
}
