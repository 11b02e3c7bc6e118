//! SMTP login phase (RFC 5321, RFC 3207 STARTTLS, RFC 4954 AUTH), as a pure state
//! machine: greeting, EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN, and the first MAIL of an
//! allow-listed client. The transaction relay after it lives in `session::smtp`.

use bytes::BytesMut;

use super::line::{Frame, LineEndings, LineFramer};
use super::sasl::{self, Mechanism, SaslError};
use super::{Action, Credentials, LoginOutcome, LoginPhase, Policy, Protocol, StartTlsMode};
use crate::secrets::wipe;

pub mod command;
pub mod data;
pub mod framing;
pub mod header;

use command::{reply, Command, Extensions};

/// Protocol errors tolerated before the session is closed (Postfix: smtpd_hard_error_limit);
/// the same cap as IMAP and POP3 before login, and the SMTP relay's after it.
pub use super::MAX_ERRORS;

/// Where the login phase is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for EHLO/HELO.
    Fresh,
    /// Greeted; AUTH and MAIL are possible.
    Greeted,
    /// `AUTH PLAIN` without an initial response: waiting for it.
    PlainResponse,
    /// `AUTH LOGIN`: waiting for the user name.
    LoginUser,
    /// `AUTH LOGIN`: waiting for the password of `user`.
    LoginPassword { user: String },
    /// Credentials handed to the pipeline.
    AwaitingResult,
    /// Logged in or proceeding: nothing more is consumed.
    Done,
}

/// The SMTP login phase.
#[derive(Debug)]
pub struct SmtpLogin {
    policy: Policy,
    framer: LineFramer,
    state: State,
    tls: bool,
    errors: u32,
    /// A 530 was sent: the client wanted to send without logging in.
    refused: bool,
}

impl SmtpLogin {
    /// A login phase for one session.
    pub fn new(policy: Policy) -> SmtpLogin {
        SmtpLogin {
            framer: LineFramer::new(policy.max_line),
            policy,
            state: State::Fresh,
            tls: false,
            errors: 0,
            refused: false,
        }
    }

    /// True once TLS is active on the client connection.
    pub fn tls_active(&self) -> bool {
        self.tls
    }

    /// What this session's EHLO reply advertises.
    pub fn extensions(&self) -> Extensions {
        Extensions {
            starttls: self.policy.starttls != StartTlsMode::Off && !self.tls,
            auth: self.auth_allowed(),
            size: self.policy.smtp_size,
        }
    }

    fn auth_allowed(&self) -> bool {
        self.tls || self.policy.starttls != StartTlsMode::Required
    }

    fn error(&mut self, text: &str) -> Action {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::Done;
            return Action::Close(reply::TOO_MANY_ERRORS.into());
        }
        Action::Reply(text.into())
    }

    fn sasl_failure(&mut self, e: SaslError) -> Action {
        self.state = State::Greeted;
        match e {
            SaslError::Cancelled => Action::Reply(reply::CANCELLED.into()),
            SaslError::BadBase64 | SaslError::BadPlain => self.error(reply::BAD_BASE64),
        }
    }

    fn login(&mut self, creds: Credentials) -> Action {
        self.state = State::AwaitingResult;
        Action::Login(creds)
    }

    fn command(&mut self, line: &mut BytesMut, input: &mut BytesMut) -> Action {
        let action = match command::parse(line) {
            Command::Ehlo(client) => {
                self.state = State::Greeted;
                Action::Reply(command::ehlo_reply(
                    &self.policy.hostname,
                    client,
                    &self.extensions(),
                ))
            }
            Command::Helo(_) => {
                self.state = State::Greeted;
                Action::Reply(format!("250 {}\r\n", self.policy.hostname).into_bytes())
            }
            Command::StartTls if self.tls => self.error(reply::ALREADY_TLS),
            Command::StartTls if self.policy.starttls == StartTlsMode::Off => {
                self.error(reply::NO_TLS)
            }
            Command::StartTls => Action::StartTls(reply::TLS_READY.into()),
            Command::Auth { .. } if self.state == State::Fresh => self.error(reply::EHLO_FIRST),
            Command::Auth { .. } if !self.auth_allowed() => {
                self.refused = true;
                self.error(reply::TLS_FIRST)
            }
            Command::Auth { mechanism, initial } => match Mechanism::parse(mechanism) {
                None => self.error(reply::MECHANISM),
                Some(Mechanism::Plain) => match initial {
                    None => {
                        self.state = State::PlainResponse;
                        Action::Reply(b"334 \r\n".to_vec())
                    }
                    Some(ir) => match sasl::decode_plain(ir) {
                        Ok(creds) => self.login(creds),
                        Err(e) => self.sasl_failure(e),
                    },
                },
                Some(Mechanism::Login) => match initial {
                    None => {
                        self.state = State::LoginUser;
                        Action::Reply(format!("334 {}\r\n", sasl::LOGIN_USERNAME_CHALLENGE).into())
                    }
                    Some(ir) => self.login_user(ir),
                },
            },
            Command::Mail { .. } if self.state == State::Fresh => self.error(reply::EHLO_FIRST),
            Command::Mail { .. } if self.policy.allow_unauthenticated => {
                // Leave the MAIL command in the input, ended as it was sent (the relay
                // tracks line endings too): the relay phase handles it.
                let rest = input.split();
                input.extend_from_slice(line);
                input.extend_from_slice(self.framer.last_ending());
                input.unsplit(rest);
                self.state = State::Done;
                Action::Proceed
            }
            Command::Mail { .. } | Command::Rcpt { .. } | Command::Data | Command::Bdat => {
                self.refused = true;
                self.error(reply::AUTH_REQUIRED)
            }
            Command::BadSyntax(text) => self.error(text),
            Command::Rset | Command::Noop => Action::Reply(reply::OK.into()),
            Command::Vrfy => Action::Reply(reply::VRFY.into()),
            Command::Help => Action::Reply(reply::HELP.into()),
            Command::Quit => {
                self.state = State::Done;
                Action::Close(reply::BYE.into())
            }
            Command::Unknown => self.error(reply::UNKNOWN),
            Command::Http => {
                self.state = State::Done;
                Action::CrossProtocol(reply::HTTP_REFUSED.into())
            }
        };
        // AUTH lines carry secrets: wipe them once used.
        wipe(line);
        action
    }

    fn login_user(&mut self, response: &[u8]) -> Action {
        match sasl::decode_response(response) {
            Ok(user) => {
                self.state = State::LoginPassword {
                    user: String::from_utf8_lossy(user.expose()).into_owned(),
                };
                Action::Reply(format!("334 {}\r\n", sasl::LOGIN_PASSWORD_CHALLENGE).into())
            }
            Err(e) => self.sasl_failure(e),
        }
    }
}

impl LoginPhase for SmtpLogin {
    const PROTOCOL: Protocol = Protocol::Smtp;

    fn greeting(&self) -> Vec<u8> {
        format!("220 {} ESMTP qqmail-proxy\r\n", self.policy.hostname).into_bytes()
    }

    fn advance(&mut self, input: &mut BytesMut) -> Action {
        if matches!(self.state, State::AwaitingResult | State::Done) {
            return Action::NeedMore;
        }
        let mut line = match self.framer.next_frame(input) {
            Frame::NeedMore => return Action::NeedMore,
            Frame::TooLong => {
                if matches!(
                    self.state,
                    State::PlainResponse | State::LoginUser | State::LoginPassword { .. }
                ) {
                    self.state = State::Greeted;
                }
                return self.error(reply::TOO_LONG);
            }
            Frame::Line(line) => line,
        };
        let action = match std::mem::replace(&mut self.state, State::Greeted) {
            State::PlainResponse => match sasl::decode_plain(&line) {
                Ok(creds) => self.login(creds),
                Err(e) => self.sasl_failure(e),
            },
            State::LoginUser => self.login_user(&line),
            State::LoginPassword { user } => match sasl::decode_response(&line) {
                Ok(password) => self.login(Credentials { user, password }),
                Err(e) => self.sasl_failure(e),
            },
            previous => {
                self.state = previous;
                return self.command(&mut line, input);
            }
        };
        wipe(&mut line);
        action
    }

    fn login_result(&mut self, outcome: LoginOutcome) -> Action {
        self.state = State::Greeted;
        match outcome {
            LoginOutcome::Success { .. } => {
                self.state = State::Done;
                Action::Reply(reply::AUTH_OK.into())
            }
            LoginOutcome::BadCredentials => Action::Reply(reply::AUTH_FAILED.into()),
            LoginOutcome::TooManyFailures => {
                self.state = State::Done;
                Action::Close(reply::TOO_MANY_FAILURES.into())
            }
            LoginOutcome::UpstreamUnavailable { reason } => {
                Action::Reply(format!("454 4.7.0 {}\r\n", one_line(&reason)).into_bytes())
            }
            LoginOutcome::UpstreamRejected => Action::Reply(
                b"454 4.7.0 upstream rejected the stored authorization code\r\n".to_vec(),
            ),
        }
    }

    fn tls_started(&mut self) {
        // RFC 3207 §4.2: forget everything; the client must say EHLO again.
        self.tls = true;
        self.state = State::Fresh;
    }

    fn timeout_reply(&self) -> Vec<u8> {
        format!(
            "421 4.4.2 {} Error: timeout exceeded\r\n",
            self.policy.hostname
        )
        .into_bytes()
    }

    fn shutdown_reply(&self) -> Vec<u8> {
        reply::SHUTDOWN.into()
    }

    fn line_endings(&self) -> LineEndings {
        self.framer.endings()
    }

    fn refused(&self) -> bool {
        self.refused
    }
}

/// Makes `text` safe to put in a one-line reply (see [`super::reply_text`]).
pub fn one_line(text: &str) -> String {
    super::reply_text(text, 300)
}

#[cfg(test)]
mod tests;
