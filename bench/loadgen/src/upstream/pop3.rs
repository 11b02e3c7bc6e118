//! POP3 source (RFC 1939 subset, RFC 2449 CAPA, RFC 5034 AUTH PLAIN): a maildrop of one
//! message served by RETR.

use anyhow::Result;

use super::{sasl_plain, Shared};
use crate::wire::Wire;

/// Where the session is (RFC 1939 §3).
enum State {
    /// Waiting for USER (or AUTH).
    Authorization,
    /// USER given; waiting for PASS.
    User(Vec<u8>),
    /// Logged in.
    Transaction,
}

/// One POP3 session.
pub async fn session(mut w: Wire, shared: &Shared) -> Result<()> {
    w.send(b"+OK bench POP3 ready\r\n").await?;
    let size = shared.message.len();
    let mut state = State::Authorization;
    loop {
        let line = w.line().await?;
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
        let mut parts = text.splitn(2, |&b| b == b' ');
        let cmd = parts.next().unwrap_or_default().to_ascii_uppercase();
        let arg = parts.next().unwrap_or_default().to_vec();
        let reply: Vec<u8> = match (cmd.as_slice(), &state) {
            (b"CAPA", _) => b"+OK\r\nUSER\r\nSASL PLAIN\r\nUIDL\r\nPIPELINING\r\n.\r\n".to_vec(),
            (b"NOOP", State::Transaction) => b"+OK\r\n".to_vec(),
            (b"QUIT", _) => {
                w.send(b"+OK bye\r\n").await?;
                w.shutdown().await;
                return Ok(());
            }
            (b"USER", State::Authorization) => {
                state = State::User(arg);
                b"+OK send PASS\r\n".to_vec()
            }
            (b"PASS", State::User(user)) => {
                if shared.check(user, &arg) {
                    state = State::Transaction;
                    b"+OK logged in\r\n".to_vec()
                } else {
                    state = State::Authorization;
                    b"-ERR [AUTH] invalid login\r\n".to_vec()
                }
            }
            (b"AUTH", State::Authorization) => {
                let mut words = arg.splitn(2, |&b| b == b' ');
                let mech = words.next().unwrap_or_default().to_ascii_uppercase();
                if mech != b"PLAIN" {
                    b"-ERR unsupported mechanism\r\n".to_vec()
                } else {
                    let ir = match words.next() {
                        Some(ir) => ir.to_vec(),
                        None => {
                            w.send(b"+ \r\n").await?;
                            w.line().await?
                        }
                    };
                    match sasl_plain(&ir) {
                        Some((u, p)) if shared.check(&u, &p) => {
                            state = State::Transaction;
                            b"+OK logged in\r\n".to_vec()
                        }
                        _ => b"-ERR [AUTH] invalid login\r\n".to_vec(),
                    }
                }
            }
            (b"STAT", State::Transaction) => format!("+OK 1 {size}\r\n").into_bytes(),
            (b"LIST", State::Transaction) if arg.is_empty() => {
                format!("+OK 1 messages\r\n1 {size}\r\n.\r\n").into_bytes()
            }
            (b"LIST", State::Transaction) => format!("+OK 1 {size}\r\n").into_bytes(),
            (b"UIDL", State::Transaction) if arg.is_empty() => {
                b"+OK\r\n1 bench-1\r\n.\r\n".to_vec()
            }
            (b"UIDL", State::Transaction) => b"+OK 1 bench-1\r\n".to_vec(),
            (b"RSET" | b"DELE", State::Transaction) => b"+OK\r\n".to_vec(),
            (b"RETR", State::Transaction) => {
                w.write(format!("+OK {size} octets\r\n").as_bytes()).await?;
                w.write(&shared.message).await?;
                b".\r\n".to_vec()
            }
            (_, State::Transaction) => b"-ERR unknown command\r\n".to_vec(),
            _ => b"-ERR log in first\r\n".to_vec(),
        };
        w.send(&reply).await?;
    }
}
