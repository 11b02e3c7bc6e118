//! Test harness shared by the login-phase tests: replays a client script in chunks of
//! 1..512 bytes and checks that every split gives the same transcript.

use bytes::BytesMut;

use super::{Action, Credentials, LoginOutcome, LoginPhase};

/// One thing the pipeline was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes sent to the client (consecutive replies merged, so chunking cannot split them).
    Out(String),
    /// TLS started (the harness acts as if the rest of the script arrived over TLS).
    StartTls,
    /// Credentials handed to the pipeline.
    Login { user: String, password: String },
    /// SMTP: the client proceeds unauthenticated.
    Proceed,
    /// The login succeeded and the relay phase takes over.
    Relay,
    /// The connection is closed.
    Close,
    /// Closed as a cross-protocol attack (HTTP): the pipeline discards the rest.
    CrossProtocol,
}

fn out(events: &mut Vec<Event>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Some(Event::Out(prev)) = events.last_mut() {
        prev.push_str(&text);
    } else if !text.is_empty() {
        events.push(Event::Out(text.into_owned()));
    }
}

/// Drives `phase` through `input`, fed `chunk` bytes at a time. Each `Login` is answered
/// with `answer(credentials)`. Stops at `Close`, `Proceed`, or a successful login.
pub fn drive<P: LoginPhase>(
    phase: &mut P,
    input: &[u8],
    chunk: usize,
    answer: &dyn Fn(&Credentials) -> LoginOutcome,
) -> Vec<Event> {
    let mut events = Vec::new();
    out(&mut events, &phase.greeting());
    let mut buf = BytesMut::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match phase.advance(&mut buf) {
                Action::NeedMore => break,
                Action::Reply(b) => out(&mut events, &b),
                Action::StartTls(b) => {
                    out(&mut events, &b);
                    events.push(Event::StartTls);
                    phase.tls_started();
                }
                Action::Login(creds) => {
                    events.push(Event::Login {
                        user: creds.user.clone(),
                        password: String::from_utf8_lossy(creds.password.expose()).into_owned(),
                    });
                    let outcome = answer(&creds);
                    let success = matches!(outcome, LoginOutcome::Success { .. });
                    match phase.login_result(outcome) {
                        Action::Reply(b) => {
                            out(&mut events, &b);
                            if success {
                                events.push(Event::Relay);
                                return events;
                            }
                        }
                        Action::Close(b) => {
                            out(&mut events, &b);
                            events.push(Event::Close);
                            return events;
                        }
                        other => panic!("login_result returned {other:?}"),
                    }
                }
                Action::Proceed => {
                    events.push(Event::Proceed);
                    return events;
                }
                Action::Close(b) => {
                    out(&mut events, &b);
                    events.push(Event::Close);
                    return events;
                }
                Action::CrossProtocol(b) => {
                    out(&mut events, &b);
                    events.push(Event::CrossProtocol);
                    return events;
                }
            }
        }
    }
    events
}

/// Chunk sizes every script is replayed with.
pub const CHUNKS: &[usize] = &[1, 2, 3, 4, 5, 7, 8, 13, 16, 64, 512];

/// Runs `input` whole and at every size in [`CHUNKS`], asserts the transcripts agree, and
/// returns the transcript.
pub fn replay<P: LoginPhase>(
    make: impl Fn() -> P,
    input: &[u8],
    answer: &dyn Fn(&Credentials) -> LoginOutcome,
) -> Vec<Event> {
    let whole = drive(&mut make(), input, input.len().max(1), answer);
    for &chunk in CHUNKS {
        let got = drive(&mut make(), input, chunk, answer);
        assert_eq!(
            got,
            whole,
            "chunk size {chunk} changed the transcript for {:?}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

/// An answer that accepts `printer` / `secret` and rejects everything else.
pub fn printer_secret(creds: &Credentials) -> LoginOutcome {
    if creds.user == "printer" && creds.password.expose() == b"secret" {
        LoginOutcome::Success {
            capabilities: Some(b"IMAP4rev1 IDLE MOVE".to_vec()),
        }
    } else {
        LoginOutcome::BadCredentials
    }
}

/// Shorthand for an `Out` event.
pub fn o(s: &str) -> Event {
    Event::Out(s.to_string())
}

/// Shorthand for a `Login` event.
pub fn login(user: &str, password: &str) -> Event {
    Event::Login {
        user: user.into(),
        password: password.into(),
    }
}
