//! IMAP source (RFC 3501 subset): CAPABILITY, ID, LOGIN (atoms, quoted strings, literals
//! with LITERAL+), AUTHENTICATE PLAIN (with SASL-IR or a continuation), SELECT/EXAMINE of a
//! one-message INBOX, FETCH/UID FETCH of that message as a literal, IDLE (RFC 2177) woken by
//! the control port's PUSH, NOOP and LOGOUT.

use std::sync::atomic::Ordering;

use anyhow::{bail, Result};

use super::{sasl_plain, Shared};
use crate::wire::Wire;

const CAPS: &str = "IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN ID IDLE";
/// Largest literal accepted in a command (a login name or password).
const MAX_LITERAL: u64 = 64 * 1024;

/// Where the session is (RFC 3501 §3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
}

/// `prefix`, the literal length and whether it is synchronising, when `line` (without
/// CRLF) ends in `{n}` or `{n+}` (RFC 3501 §4.3, RFC 7888).
fn literal_suffix(line: &[u8]) -> Option<(&[u8], u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let digits = &body[open + 1..];
    let (digits, sync) = match digits.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (digits, true),
    };
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((&body[..open], n, sync))
}

/// Splits a command line into words; quoted strings are unquoted (RFC 3501 §4.3).
fn tokenize(text: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b' ' => i += 1,
            b'"' => {
                let mut word = Vec::new();
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    if text[i] == b'\\' && i + 1 < text.len() {
                        i += 1;
                    }
                    word.push(text[i]);
                    i += 1;
                }
                i += 1;
                out.push(word);
            }
            _ => {
                let start = i;
                while i < text.len() && text[i] != b' ' {
                    i += 1;
                }
                out.push(text[start..i].to_vec());
            }
        }
    }
}

/// Reads one command, following literals.
async fn read_command(w: &mut Wire) -> Result<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    loop {
        let line = w.line().await?;
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
        match literal_suffix(text) {
            Some((prefix, n, sync)) => {
                if n > MAX_LITERAL {
                    bail!("literal of {n} bytes");
                }
                tokenize(prefix, &mut words);
                if sync {
                    w.send(b"+ go ahead\r\n").await?;
                }
                let mut lit = Vec::new();
                w.skip(n, |b| lit.extend_from_slice(b)).await?;
                words.push(lit);
            }
            None => {
                tokenize(text, &mut words);
                return Ok(words);
            }
        }
    }
}

/// One IMAP session.
pub async fn session(mut w: Wire, shared: &Shared) -> Result<()> {
    w.send(format!("* OK [CAPABILITY {CAPS}] bench IMAP ready\r\n").as_bytes())
        .await?;
    let mut state = State::NotAuthenticated;
    let mut exists = 1u64;
    loop {
        let words = read_command(&mut w).await?;
        let Some(tag) = words.first().cloned() else {
            w.send(b"* BAD empty command\r\n").await?;
            continue;
        };
        let tag = String::from_utf8_lossy(&tag).into_owned();
        let cmd = words
            .get(1)
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        let cmd = if cmd == b"UID" {
            words
                .get(2)
                .map(|c| c.to_ascii_uppercase())
                .unwrap_or_default()
        } else {
            cmd
        };
        let reply = match (cmd.as_slice(), state) {
            (b"CAPABILITY", _) => {
                format!("* CAPABILITY {CAPS}\r\n{tag} OK CAPABILITY completed\r\n")
            }
            (b"NOOP", _) => format!("{tag} OK NOOP completed\r\n"),
            (b"ID", _) => format!("* ID (\"name\" \"qqmail-bench\")\r\n{tag} OK ID completed\r\n"),
            (b"LOGOUT", _) => {
                w.send(format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n").as_bytes())
                    .await?;
                w.shutdown().await;
                return Ok(());
            }
            (b"LOGIN", State::NotAuthenticated) => {
                let ok = match (words.get(2), words.get(3)) {
                    (Some(u), Some(p)) => shared.check(u, p),
                    _ => false,
                };
                if ok {
                    state = State::Authenticated;
                    format!("{tag} OK [CAPABILITY {CAPS}] Logged in\r\n")
                } else {
                    format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
                }
            }
            (b"AUTHENTICATE", State::NotAuthenticated) => {
                let mech = words.get(2).map(|m| m.to_ascii_uppercase());
                if mech.as_deref() != Some(b"PLAIN") {
                    format!("{tag} NO unsupported mechanism\r\n")
                } else {
                    let ir = match words.get(3) {
                        Some(ir) => ir.clone(),
                        None => {
                            w.send(b"+ \r\n").await?;
                            w.line().await?
                        }
                    };
                    match sasl_plain(&ir) {
                        Some((u, p)) if shared.check(&u, &p) => {
                            state = State::Authenticated;
                            format!("{tag} OK [CAPABILITY {CAPS}] Logged in\r\n")
                        }
                        _ => format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
                    }
                }
            }
            (b"SELECT" | b"EXAMINE", State::Authenticated | State::Selected) => {
                state = State::Selected;
                format!(
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
                     * {exists} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n\
                     * OK [UIDNEXT 2] next UID\r\n{tag} OK [READ-WRITE] SELECT completed\r\n"
                )
            }
            (b"FETCH", State::Selected) => {
                let m = &shared.message;
                w.write(format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", m.len()).as_bytes())
                    .await?;
                w.write(m).await?;
                format!(")\r\n{tag} OK FETCH completed\r\n")
            }
            (b"IDLE", State::Authenticated | State::Selected) => {
                idle(&mut w, shared, &tag, &mut exists).await?;
                continue;
            }
            (b"LOGIN" | b"AUTHENTICATE", _) => format!("{tag} BAD already logged in\r\n"),
            (_, State::NotAuthenticated) => format!("{tag} NO log in first\r\n"),
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        w.send(reply.as_bytes()).await?;
    }
}

/// IDLE until DONE; each push sends one more EXISTS.
async fn idle(w: &mut Wire, shared: &Shared, tag: &str, exists: &mut u64) -> Result<()> {
    let mut push = shared.push.subscribe();
    push.borrow_and_update();
    w.send(b"+ idling\r\n").await?;
    shared.idlers.fetch_add(1, Ordering::Relaxed);
    let result = async {
        loop {
            tokio::select! {
                line = w.line() => {
                    let line = line?;
                    if line.trim_ascii().eq_ignore_ascii_case(b"DONE") {
                        w.send(format!("{tag} OK IDLE terminated\r\n").as_bytes()).await?;
                        return Ok(());
                    }
                    w.send(format!("{tag} BAD expected DONE\r\n").as_bytes()).await?;
                    return Ok(());
                }
                changed = push.changed() => {
                    changed?;
                    push.borrow_and_update();
                    *exists += 1;
                    w.send(format!("* {exists} EXISTS\r\n").as_bytes()).await?;
                }
            }
        }
    }
    .await;
    shared.idlers.fetch_sub(1, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_suffixes() {
        assert_eq!(
            literal_suffix(b"a LOGIN {5}"),
            Some((&b"a LOGIN "[..], 5, true))
        );
        assert_eq!(
            literal_suffix(b"a LOGIN x {12+}"),
            Some((&b"a LOGIN x "[..], 12, false))
        );
        assert_eq!(literal_suffix(b"a LOGIN x y"), None);
        assert_eq!(literal_suffix(b"a {x}"), None);
    }

    #[test]
    fn words() {
        let mut out = Vec::new();
        tokenize(br#"a1 LOGIN "tester@qq.com" "a\"b\\c" x"#, &mut out);
        let want: Vec<&[u8]> = vec![b"a1", b"LOGIN", b"tester@qq.com", b"a\"b\\c", b"x"];
        assert_eq!(out, want);
    }
}
