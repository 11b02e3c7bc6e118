//! SMTP sink (RFC 5321 subset, RFC 4954 AUTH PLAIN/LOGIN): accepts every message from an
//! authenticated client at full speed, counting messages and DATA bytes. Pipelined
//! commands (RFC 2920) work because replies are written in command order.

use std::sync::atomic::Ordering;

use anyhow::Result;
use base64::Engine;

use super::{sasl_plain, Shared};
use crate::wire::Wire;

const EHLO: &[u8] = b"250-bench.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n\
250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n";

/// Where the session is (RFC 5321 §3.3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not authenticated.
    Greeted,
    /// Authenticated, no transaction.
    Ready,
    /// MAIL accepted.
    Mail,
    /// At least one RCPT accepted.
    Rcpt,
}

fn decode(line: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(line.trim_ascii())
        .unwrap_or_default()
}

/// One SMTP session.
pub async fn session(mut w: Wire, shared: &Shared) -> Result<()> {
    w.send(b"220 bench.test ESMTP ready\r\n").await?;
    let mut state = State::Greeted;
    loop {
        let line = w.line().await?;
        let text = line.strip_suffix(b"\r\n").unwrap_or(&line);
        let upper = text.to_ascii_uppercase();
        let verb = upper.split(|&b| b == b' ').next().unwrap_or_default();
        let reply: &[u8] = match (verb, state) {
            (b"EHLO", _) => {
                if state != State::Greeted {
                    state = State::Ready;
                }
                EHLO
            }
            (b"HELO", _) => b"250 bench.test\r\n",
            (b"NOOP", _) => b"250 2.0.0 Ok\r\n",
            (b"RSET", _) => {
                if state != State::Greeted {
                    state = State::Ready;
                }
                b"250 2.0.0 Ok\r\n"
            }
            (b"QUIT", _) => {
                w.send(b"221 2.0.0 Bye\r\n").await?;
                w.shutdown().await;
                return Ok(());
            }
            (b"AUTH", State::Greeted) => {
                let words: Vec<&[u8]> = text.split(|&b| b == b' ').collect();
                let mech = words.get(1).map(|m| m.to_ascii_uppercase());
                let creds = match mech.as_deref() {
                    Some(b"PLAIN") => {
                        let ir = match words.get(2) {
                            Some(ir) => ir.to_vec(),
                            None => {
                                w.send(b"334 \r\n").await?;
                                w.line().await?
                            }
                        };
                        sasl_plain(&ir)
                    }
                    Some(b"LOGIN") => {
                        let user = match words.get(2) {
                            Some(u) => decode(u),
                            None => {
                                w.send(b"334 VXNlcm5hbWU6\r\n").await?;
                                decode(&w.line().await?)
                            }
                        };
                        w.send(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let pass = decode(&w.line().await?);
                        Some((user, pass))
                    }
                    _ => None,
                };
                match creds {
                    Some((u, p)) if shared.check(&u, &p) => {
                        state = State::Ready;
                        b"235 2.7.0 Authentication successful\r\n"
                    }
                    _ => b"535 5.7.8 Authentication credentials invalid\r\n",
                }
            }
            (b"AUTH", _) => b"503 5.5.1 Already authenticated\r\n",
            (_, State::Greeted) => b"530 5.7.0 Authentication required\r\n",
            (b"MAIL", State::Ready) => {
                state = State::Mail;
                b"250 2.1.0 Ok\r\n"
            }
            (b"RCPT", State::Mail | State::Rcpt) => {
                state = State::Rcpt;
                b"250 2.1.5 Ok\r\n"
            }
            (b"DATA", State::Rcpt) => {
                w.send(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let n = w.skip_data().await?;
                shared.smtp_bytes.fetch_add(n, Ordering::Relaxed);
                shared.msgs.send_modify(|m| *m += 1);
                state = State::Ready;
                b"250 2.0.0 Ok: queued\r\n"
            }
            (b"MAIL" | b"RCPT" | b"DATA", _) => b"503 5.5.1 Bad sequence of commands\r\n",
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        // Replies to pipelined commands are flushed once the client's batch is consumed.
        if w.buffered() > 0 {
            w.write(reply).await?;
        } else {
            w.send(reply).await?;
        }
    }
}
