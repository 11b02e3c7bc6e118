//! POP3 login phase: the AUTHORIZATION state of RFC 1939 §4 as a pure state machine.
//!
//! The machine greets, answers `CAPA` (RFC 2449 §5), `STLS` (RFC 2595 §4), `USER`/`PASS`
//! (RFC 1939 §7), `AUTH` with PLAIN and LOGIN (RFC 5034 §4) and `QUIT`, and turns a
//! complete login into [`Action::Login`]. Failures are answered with the RFC 3206 response
//! codes. Everything after a successful login, including pipelined commands (RFC 2449
//! §6.6), is left in the input buffer for the relay to pass upstream.

use bytes::BytesMut;

use super::line::{has_control, split_word, Frame, LineFramer};
use super::sasl::{self, Mechanism, SaslError, LOGIN_PASSWORD_CHALLENGE, LOGIN_USERNAME_CHALLENGE};
use super::{
    http, Action, Credentials, LoginOutcome, LoginPhase, Policy, Protocol, StartTlsMode, MAX_ERRORS,
};
use crate::secrets::{wipe, Secret};

#[cfg(test)]
mod tests;

/// RFC 1939 §4. No `<timestamp>` in the banner: APOP is not offered (RFC 1939 §7).
const GREETING: &[u8] = b"+OK qqmail-proxy ready\r\n";
const CAPA_HEADER: &[u8] = b"+OK Capability list follows\r\n";
const STLS_BEGIN: &[u8] = b"+OK Begin TLS negotiation\r\n";
const STLS_OFF: &[u8] = b"-ERR STLS not available\r\n";
const STLS_ALREADY: &[u8] = b"-ERR TLS already active\r\n";
const USER_OK: &[u8] = b"+OK Send PASS\r\n";
const USER_MISSING: &[u8] = b"-ERR Missing user name\r\n";
const USER_FIRST: &[u8] = b"-ERR USER first\r\n";
const STLS_FIRST: &[u8] = b"-ERR Use STLS first\r\n";
const AUTH_LIST: &[u8] = b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n";
const AUTH_UNSUPPORTED: &[u8] = b"-ERR Unsupported authentication mechanism\r\n";
const AUTH_CANCELLED: &[u8] = b"-ERR Authentication cancelled\r\n";
const AUTH_INVALID: &[u8] = b"-ERR Invalid SASL response\r\n";
/// RFC 5034 §4: an empty server challenge is `+` followed by a space.
const SASL_EMPTY_CHALLENGE: &[u8] = b"+ \r\n";
const APOP_UNSUPPORTED: &[u8] = b"-ERR APOP not supported\r\n";
const BYE: &[u8] = b"+OK qqmail-proxy signing off\r\n";
const NOT_BEFORE_LOGIN: &[u8] = b"-ERR Command not valid before login\r\n";
const INVALID_COMMAND: &[u8] = b"-ERR Invalid command\r\n";
const LINE_TOO_LONG: &[u8] = b"-ERR Line too long\r\n";
const LOGGED_IN: &[u8] = b"+OK Logged in\r\n";
const BAD_CREDENTIALS: &[u8] = b"-ERR [AUTH] Invalid credentials\r\n";
const TOO_MANY_FAILURES: &[u8] = b"-ERR [AUTH] Too many authentication failures\r\n";
const UPSTREAM_REJECTED: &[u8] =
    b"-ERR [SYS/TEMP] upstream rejected the stored authorization code\r\n";
const INTERNAL_ERROR: &[u8] = b"-ERR [SYS/TEMP] internal error\r\n";
const TIMEOUT: &[u8] = b"-ERR Autologout; idle for too long\r\n";
const SHUTDOWN: &[u8] = b"-ERR Server shutting down\r\n";
const TOO_MANY_ERRORS: &[u8] = b"-ERR Too many invalid commands\r\n";
const CONTROL: &[u8] = b"-ERR Syntax error: control characters are not allowed\r\n";
const HTTP_REFUSED: &[u8] = b"-ERR HTTP request refused; this is a POP3 server\r\n";

/// Longest upstream failure reason passed on to the client, in bytes.
const MAX_REASON: usize = 200;

/// Where the AUTHORIZATION state stands.
#[derive(Debug)]
enum State {
    /// Waiting for a command.
    Command,
    /// `USER` was accepted; `PASS` completes the login (RFC 1939 §7).
    User(String),
    /// Inside an `AUTH` exchange, waiting for the client's next response line.
    Sasl(SaslStep),
    /// `STLS` was answered; nothing buffered may be read until the handshake is done
    /// (RFC 2595 §4: bytes sent before it were plaintext and are discarded by the pipeline).
    StartingTls,
    /// `Action::Login` was returned; waiting for [`LoginPhase::login_result`].
    AwaitingLogin,
    /// Logged in (the relay owns the rest of the input) or closing.
    Done,
}

/// The mechanism of an `AUTH` exchange and how far it got.
#[derive(Debug)]
enum SaslStep {
    /// `AUTH PLAIN` without an initial response: the next line is the PLAIN message.
    Plain,
    /// `AUTH LOGIN`: the next line is the base64 user name.
    LoginUser,
    /// `AUTH LOGIN`: the next line is the base64 password for this user.
    LoginPassword(String),
}

/// Whether the client connection is already encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plaintext,
    Tls,
}

/// The commands recognised in the AUTHORIZATION state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Capa,
    Stls,
    User,
    Pass,
    Auth,
    Apop,
    Quit,
    /// Any other well-formed keyword (STAT, LIST, RETR, NOOP, ...): valid, if at all,
    /// only in the TRANSACTION state.
    Other,
}

impl Command {
    /// Parses a keyword. RFC 1939 §3: keywords are three or four characters long and
    /// case-insensitive; anything else is not a command at all.
    fn parse(verb: &[u8]) -> Option<Command> {
        if !(3..=4).contains(&verb.len()) || !verb.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let known: [(&[u8], Command); 7] = [
            (b"CAPA", Command::Capa),
            (b"STLS", Command::Stls),
            (b"USER", Command::User),
            (b"PASS", Command::Pass),
            (b"AUTH", Command::Auth),
            (b"APOP", Command::Apop),
            (b"QUIT", Command::Quit),
        ];
        let found = known
            .iter()
            .find(|(name, _)| verb.eq_ignore_ascii_case(name))
            .map(|&(_, command)| command);
        Some(found.unwrap_or(Command::Other))
    }
}

/// The POP3 AUTHORIZATION-state machine for one client connection.
#[derive(Debug)]
pub struct Pop3Login {
    policy: Policy,
    framer: LineFramer,
    transport: Transport,
    state: State,
    /// `-ERR` answers to protocol errors so far; the session closes at [`MAX_ERRORS`].
    errors: u32,
}

impl Pop3Login {
    /// A machine for a new plaintext connection under `policy`.
    pub fn new(policy: Policy) -> Pop3Login {
        let framer = LineFramer::new(policy.max_line);
        Pop3Login {
            policy,
            framer,
            transport: Transport::Plaintext,
            state: State::Command,
            errors: 0,
        }
    }

    /// Answers a protocol error with `text`, or closes once [`MAX_ERRORS`] have been
    /// answered (as SMTP does; RFC 1939 sets no limit). The state is left as it is.
    fn error(&mut self, text: &[u8]) -> Action {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::Done;
            return Action::Close(TOO_MANY_ERRORS.to_vec());
        }
        reply(text)
    }

    /// True while `STLS` is on offer: enabled for this listener and not yet done.
    fn stls_offered(&self) -> bool {
        self.policy.starttls != StartTlsMode::Off && self.transport == Transport::Plaintext
    }

    /// True while credentials must be refused because TLS is required but not active
    /// (RFC 2595 §2.3: servers must be configurable to refuse clear-text logins).
    fn login_locked(&self) -> bool {
        self.policy.starttls == StartTlsMode::Required && self.transport == Transport::Plaintext
    }

    /// The `CAPA` answer for the current transport (RFC 2449 §5, §6). After STLS the
    /// list changes (RFC 2595 §4), so it is built on each request.
    fn capabilities(&self) -> Vec<u8> {
        let mut out = CAPA_HEADER.to_vec();
        if !self.login_locked() {
            out.extend_from_slice(b"USER\r\n"); // RFC 2449 §6.2
            out.extend_from_slice(b"SASL PLAIN LOGIN\r\n"); // RFC 2449 §6.3, RFC 5034 §3
        }
        if self.stls_offered() {
            out.extend_from_slice(b"STLS\r\n"); // RFC 2595 §4
        }
        out.extend_from_slice(b"RESP-CODES\r\n"); // RFC 2449 §6.4
        out.extend_from_slice(b"AUTH-RESP-CODE\r\n"); // RFC 3206 §6
        out.extend_from_slice(b"PIPELINING\r\n"); // RFC 2449 §6.6
        out.extend_from_slice(b"IMPLEMENTATION qqmail-proxy\r\n"); // RFC 2449 §6.9
        out.extend_from_slice(b".\r\n");
        out
    }

    /// Handles one whole line in a state that reads input.
    fn on_line(&mut self, line: &[u8]) -> Action {
        match std::mem::replace(&mut self.state, State::Command) {
            State::Command => self.on_command(None, line),
            State::User(name) => self.on_command(Some(name), line),
            State::Sasl(step) => self.on_sasl(step, line),
            // `advance` reads no line in these states; keep them as they were.
            other @ (State::StartingTls | State::AwaitingLogin | State::Done) => {
                self.state = other;
                Action::NeedMore
            }
        }
    }

    /// Handles a command line; `user` is the name from a previous `USER`, if any. The
    /// state is `Command` on entry; a command that keeps the pending `USER` puts it back.
    fn on_command(&mut self, user: Option<String>, line: &[u8]) -> Action {
        let (verb, rest) = split_word(line);
        if http::is_method(verb) || http::is_http_line(line) {
            self.state = State::Done;
            return Action::CrossProtocol(HTTP_REFUSED.to_vec());
        }
        if has_control(line) {
            // Never interpreted: PASS would take it as a password, USER as a name.
            self.keep_user(user);
            return self.error(CONTROL);
        }
        let Some(command) = Command::parse(verb) else {
            self.keep_user(user);
            return self.error(INVALID_COMMAND);
        };
        match command {
            Command::Capa => {
                self.keep_user(user);
                Action::Reply(self.capabilities())
            }
            Command::Quit => {
                // RFC 1939 §4: QUIT in the AUTHORIZATION state just ends the session.
                self.state = State::Done;
                Action::Close(BYE.to_vec())
            }
            Command::Stls => {
                if self.policy.starttls == StartTlsMode::Off {
                    self.keep_user(user);
                    self.error(STLS_OFF)
                } else if self.transport == Transport::Tls {
                    // RFC 2595 §4: STLS is not valid once TLS is active.
                    self.keep_user(user);
                    self.error(STLS_ALREADY)
                } else {
                    // A pending USER is forgotten: everything before the handshake is
                    // plaintext state that TLS must not inherit.
                    self.state = State::StartingTls;
                    Action::StartTls(STLS_BEGIN.to_vec())
                }
            }
            Command::User | Command::Pass | Command::Auth if self.login_locked() => {
                self.error(STLS_FIRST)
            }
            Command::User => {
                let name = rest.trim_ascii_end();
                if name.is_empty() {
                    self.keep_user(user);
                    return self.error(USER_MISSING);
                }
                // The same answer for every name: a -ERR here (RFC 1939 §7 allows one)
                // would let anyone enumerate the local users. PASS does the check.
                self.state = State::User(String::from_utf8_lossy(name).into_owned());
                reply(USER_OK)
            }
            Command::Pass => match user {
                None => self.error(USER_FIRST),
                Some(name) => {
                    // RFC 1939 §7 (PASS): the argument may contain spaces, so the
                    // password is everything after the single space following PASS.
                    let password = line.get(verb.len() + 1..).unwrap_or_default();
                    self.login(Credentials {
                        user: name,
                        password: Secret::from_slice(password),
                    })
                }
            },
            Command::Auth => self.on_auth(rest),
            Command::Apop => {
                self.keep_user(user);
                self.error(APOP_UNSUPPORTED)
            }
            Command::Other => {
                self.keep_user(user);
                self.error(NOT_BEFORE_LOGIN)
            }
        }
    }

    /// Puts back a pending `USER` name after a command that does not affect it.
    fn keep_user(&mut self, user: Option<String>) {
        if let Some(name) = user {
            self.state = State::User(name);
        }
    }

    /// `AUTH [mechanism [initial-response]]` (RFC 5034 §4).
    fn on_auth(&mut self, args: &[u8]) -> Action {
        let (name, initial) = split_word(args);
        if name.is_empty() {
            // Not in RFC 5034, but a common extension: clients that do not send CAPA
            // discover the mechanisms this way.
            return reply(AUTH_LIST);
        }
        let Some(mechanism) = Mechanism::parse(name) else {
            return self.error(AUTH_UNSUPPORTED);
        };
        let initial = initial.trim_ascii_end();
        match (mechanism, initial.is_empty()) {
            (Mechanism::Plain, true) => {
                self.state = State::Sasl(SaslStep::Plain);
                reply(SASL_EMPTY_CHALLENGE)
            }
            (Mechanism::Plain, false) => self.on_sasl(SaslStep::Plain, initial),
            (Mechanism::Login, true) => {
                self.state = State::Sasl(SaslStep::LoginUser);
                Action::Reply(challenge(LOGIN_USERNAME_CHALLENGE))
            }
            (Mechanism::Login, false) => self.on_sasl(SaslStep::LoginUser, initial),
        }
    }

    /// One client response of an `AUTH` exchange (an initial response or a line sent
    /// after a `+` challenge). The state is `Command` on entry.
    fn on_sasl(&mut self, step: SaslStep, line: &[u8]) -> Action {
        match step {
            SaslStep::Plain => match sasl::decode_plain(line) {
                Ok(credentials) => self.login(credentials),
                Err(error) => self.sasl_failure(&error),
            },
            SaslStep::LoginUser => match sasl::decode_response(line) {
                Ok(name) if !name.is_empty() => {
                    let name = String::from_utf8_lossy(name.expose()).into_owned();
                    self.state = State::Sasl(SaslStep::LoginPassword(name));
                    Action::Reply(challenge(LOGIN_PASSWORD_CHALLENGE))
                }
                Ok(_) => self.error(AUTH_INVALID),
                Err(error) => self.sasl_failure(&error),
            },
            SaslStep::LoginPassword(user) => match sasl::decode_response(line) {
                Ok(password) => self.login(Credentials { user, password }),
                Err(error) => self.sasl_failure(&error),
            },
        }
    }

    fn login(&mut self, credentials: Credentials) -> Action {
        self.state = State::AwaitingLogin;
        Action::Login(credentials)
    }

    /// RFC 5034 §4: a `*` cancels the exchange (the client's right, not counted as an
    /// error); an undecodable response rejects it. Either way the session is back to
    /// awaiting commands (the caller left the state there).
    fn sasl_failure(&mut self, error: &SaslError) -> Action {
        match error {
            SaslError::Cancelled => reply(AUTH_CANCELLED),
            SaslError::BadBase64 | SaslError::BadPlain => self.error(AUTH_INVALID),
        }
    }
}

impl LoginPhase for Pop3Login {
    const PROTOCOL: Protocol = Protocol::Pop3;

    fn greeting(&self) -> Vec<u8> {
        GREETING.to_vec()
    }

    fn advance(&mut self, input: &mut BytesMut) -> Action {
        if matches!(
            self.state,
            State::StartingTls | State::AwaitingLogin | State::Done
        ) {
            // Waiting for the pipeline, or logged in: pipelined bytes belong to whoever
            // comes next (the TLS layer discards them, the relay forwards them).
            return Action::NeedMore;
        }
        match self.framer.next_frame(input) {
            Frame::NeedMore => Action::NeedMore,
            Frame::TooLong => {
                // The framer has wiped and dropped the line. An AUTH exchange cannot go
                // on without the response it carried (RFC 5034 §4), so it is abandoned;
                // a pending USER stays.
                if matches!(self.state, State::Sasl(_)) {
                    self.state = State::Command;
                }
                self.error(LINE_TOO_LONG)
            }
            Frame::Line(mut line) => {
                let action = self.on_line(&line);
                // The line may have held a password or a SASL blob; it is consumed now.
                wipe(&mut line);
                action
            }
        }
    }

    fn login_result(&mut self, outcome: LoginOutcome) -> Action {
        if !matches!(self.state, State::AwaitingLogin) {
            // The pipeline reported a login that was never asked for: refuse to go on
            // rather than guess which state to resume.
            self.state = State::Done;
            return Action::Close(INTERNAL_ERROR.to_vec());
        }
        match outcome {
            LoginOutcome::Success { .. } => {
                // RFC 1939 §4: the session enters the TRANSACTION state (upstream).
                self.state = State::Done;
                reply(LOGGED_IN)
            }
            LoginOutcome::BadCredentials => {
                // RFC 1939 §7: after a failed PASS the client starts again with USER.
                self.state = State::Command;
                reply(BAD_CREDENTIALS)
            }
            LoginOutcome::TooManyFailures => {
                self.state = State::Done;
                Action::Close(TOO_MANY_FAILURES.to_vec())
            }
            LoginOutcome::UpstreamUnavailable { reason } => {
                // RFC 3206 §4: SYS/TEMP, the client may retry later.
                self.state = State::Command;
                let mut out = b"-ERR [SYS/TEMP] ".to_vec();
                out.extend_from_slice(sanitize_reason(&reason).as_bytes());
                out.extend_from_slice(b"\r\n");
                Action::Reply(out)
            }
            LoginOutcome::UpstreamRejected => {
                self.state = State::Command;
                reply(UPSTREAM_REJECTED)
            }
        }
    }

    fn tls_started(&mut self) {
        self.transport = Transport::Tls;
        self.framer = LineFramer::new(self.policy.max_line);
        if matches!(self.state, State::StartingTls) {
            self.state = State::Command;
        }
    }

    fn timeout_reply(&self) -> Vec<u8> {
        TIMEOUT.to_vec()
    }

    fn shutdown_reply(&self) -> Vec<u8> {
        SHUTDOWN.to_vec()
    }
}

fn reply(bytes: &[u8]) -> Action {
    Action::Reply(bytes.to_vec())
}

/// A `+ <base64>` continuation (RFC 5034 §4).
fn challenge(base64: &str) -> Vec<u8> {
    let mut out = b"+ ".to_vec();
    out.extend_from_slice(base64.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// Makes an upstream failure reason safe for a one-line reply (see
/// [`super::reply_text`]), never empty.
fn sanitize_reason(reason: &str) -> String {
    let text = super::reply_text(reason, MAX_REASON);
    if text.is_empty() {
        "upstream unavailable".to_string()
    } else {
        text
    }
}
