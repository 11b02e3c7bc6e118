//! IMAP login phase (RFC 3501, RFC 9051) as a pure state machine: greeting, CAPABILITY,
//! NOOP, ID, LOGOUT, STARTTLS, LOGIN (atoms, quoted strings, literals) and AUTHENTICATE
//! PLAIN/LOGIN, up to the tagged reply that hands the connection to the relay.
//!
//! A command with literals (RFC 3501 §4.3, RFC 7888) is collected whole into a buffer
//! that is wiped when dropped, with a CRLF kept after each `{n}` so that the parser can
//! walk the command exactly as it was framed; then it is parsed (see `syntax`) and
//! answered. Every consumed line and literal is wiped, since any of them may carry a
//! password or a SASL blob.

use std::mem;

use bytes::{Buf, BytesMut};

use super::line::{has_control, Frame, LineFramer};
use super::sasl::{self, Mechanism, SaslError};
use super::{
    http, Action, Credentials, LoginOutcome, LoginPhase, Policy, Protocol, StartTlsMode, MAX_ERRORS,
};
use crate::secrets::wipe;
use syntax::{
    parse_authenticate, parse_id, parse_login, tagged, Head, Marker, Parser, Tag, Verb, WipeBuf,
};

mod syntax;

/// Capabilities when credentials may be sent (STARTTLS off, or TLS already active).
const CAPS_OPEN: &str = "IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN AUTH=LOGIN";
/// Capabilities in plaintext when STARTTLS is optional.
const CAPS_STARTTLS: &str = "IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN";
/// Capabilities in plaintext when STARTTLS is required: no `AUTH=`, and `LOGINDISABLED`
/// (RFC 3501 §6.2.3, RFC 2595 §3.2).
const CAPS_REQUIRED: &str = "IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS LOGINDISABLED";

/// Continuation request for a synchronising literal (RFC 3501 §7.5).
const LITERAL_READY: &[u8] = b"+ Ready for literal data\r\n";
const BAD_UNTAGGED: &[u8] = b"* BAD Invalid command\r\n";
const BYE_LINE_TOO_LONG: &[u8] = b"* BYE Line too long\r\n";
const BYE_COMMAND_TOO_LONG: &[u8] = b"* BYE Command too long\r\n";
const BYE_LITERAL_TOO_LARGE: &[u8] = b"* BYE Literal too large\r\n";
const BYE_INTERNAL: &[u8] = b"* BYE Internal error\r\n";
const BYE_TIMEOUT: &[u8] = b"* BYE Autologout; idle for too long\r\n";
const BYE_SHUTDOWN: &[u8] = b"* BYE Server shutting down\r\n";
const BYE_TOO_MANY_ERRORS: &[u8] = b"* BYE Too many invalid commands\r\n";
const BYE_CONTROL: &[u8] = b"* BYE Control characters are not allowed\r\n";
const BYE_HTTP: &[u8] = b"* BYE HTTP request refused; this is an IMAP server\r\n";
const BAD_CONTROL: &[u8] = b"BAD Syntax error: control characters are not allowed";

/// Longest `UpstreamUnavailable` reason shown to the client, in bytes.
const MAX_REASON: usize = 200;
/// Longest upstream capability list passed on in the login reply, in bytes.
const MAX_CAPABILITIES: usize = 4096;

/// The IMAP login phase of one client connection, driven through [`LoginPhase`]: it
/// answers everything up to the login itself and leaves the bytes after the command that
/// logged in untouched in the input, for the relay.
#[derive(Debug)]
pub struct ImapLogin {
    policy: Policy,
    transport: Transport,
    framer: LineFramer,
    state: State,
    /// BAD (and refusing NO) answers so far; the session closes at [`MAX_ERRORS`].
    errors: u32,
}

/// Whether the client connection is protected yet; fixed by `tls_started`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

/// Where the login phase is.
#[derive(Debug)]
enum State {
    /// Waiting for a new tagged command line.
    Command,
    /// Reading the `remaining` bytes of the literal announced at the end of `cmd`.
    Literal { cmd: Pending, remaining: usize },
    /// A literal has been read; the rest of its command line follows.
    AfterLiteral { cmd: Pending },
    /// AUTHENTICATE sent a continuation request and waits for one response line.
    Sasl { tag: Tag, step: SaslStep },
    /// STARTTLS accepted: nothing is read until the handshake is done.
    AwaitTls,
    /// Credentials were handed out with `Action::Login`: nothing is read until
    /// `login_result`.
    AwaitLogin { tag: Tag },
    /// Logged in (the relay owns the rest of the input) or closing.
    Done,
}

/// The next response an AUTHENTICATE exchange expects (RFC 3501 §6.2.2).
#[derive(Debug)]
enum SaslStep {
    /// PLAIN without an initial response: the whole PLAIN message.
    Plain,
    /// LOGIN: the base64 user name.
    LoginUser,
    /// LOGIN: the base64 password for `user`.
    LoginPassword { user: String },
}

/// A command whose first line announced a literal, collected until its last line.
#[derive(Debug)]
struct Pending {
    head: Head,
    buf: WipeBuf,
}

/// The upstream capabilities as a response code, when they are safe to embed: printable
/// ASCII without `]`, non-empty and of sane length (RFC 3501 §7.1 `resp-text-code`).
fn capability_code(caps: Option<&[u8]>) -> Option<&[u8]> {
    let caps = caps?.trim_ascii();
    let printable = caps.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b']');
    (printable && !caps.is_empty() && caps.len() <= MAX_CAPABILITIES).then_some(caps)
}

/// A reason text safe for a tagged reply (see [`super::reply_text`]), never empty.
fn sanitize_reason(reason: &str) -> Vec<u8> {
    let text = super::reply_text(reason, MAX_REASON);
    if text.is_empty() {
        b"Upstream unavailable".to_vec()
    } else {
        text.into_bytes()
    }
}

impl ImapLogin {
    /// A login phase for one client connection, before any TLS.
    pub fn new(policy: Policy) -> ImapLogin {
        let framer = LineFramer::new(policy.max_line);
        ImapLogin {
            policy,
            transport: Transport::Plain,
            framer,
            state: State::Command,
            errors: 0,
        }
    }

    /// The capability list for the current transport.
    fn capabilities(&self) -> &'static str {
        match (self.transport, self.policy.starttls) {
            (Transport::Tls, _) | (Transport::Plain, StartTlsMode::Off) => CAPS_OPEN,
            (Transport::Plain, StartTlsMode::Optional) => CAPS_STARTTLS,
            (Transport::Plain, StartTlsMode::Required) => CAPS_REQUIRED,
        }
    }

    /// True when credentials must wait for STARTTLS.
    fn privacy_required(&self) -> bool {
        self.transport == Transport::Plain && self.policy.starttls == StartTlsMode::Required
    }

    /// Upper bound of one command, lines and literals together.
    fn command_limit(&self) -> usize {
        let literals = self.policy.max_literal.saturating_mul(2);
        self.policy.max_line.saturating_add(literals)
    }

    fn close(&mut self, bytes: &[u8]) -> Action {
        self.state = State::Done;
        Action::Close(bytes.to_vec())
    }

    /// Answers a protocol error with `reply` (a BAD, or a NO refusing the command), and
    /// closes instead once [`MAX_ERRORS`] have been answered, as SMTP does.
    fn error(&mut self, reply: Vec<u8>) -> Action {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            let mut out = reply;
            out.extend_from_slice(BYE_TOO_MANY_ERRORS);
            return self.close(&out);
        }
        Action::Reply(reply)
    }

    /// Refuses a command line holding a control byte (see [`has_control`]); the line and
    /// any literal it announces are never interpreted.
    fn refuse_control(&mut self, head: &Head, line: &[u8]) -> Action {
        self.state = State::Command;
        if Marker::find(line).is_some_and(|m| m.non_sync) {
            // The literal follows unasked (RFC 7888): it cannot be refused, and must not
            // be read as commands either.
            return self.close(BYE_CONTROL);
        }
        // A synchronising literal is refused by answering instead of "+" (RFC 3501 §7.5).
        match &head.tag {
            Some(tag) => self.error(tagged(tag, BAD_CONTROL)),
            None => self.error(BAD_UNTAGGED.to_vec()),
        }
    }

    /// A new command line. `None` means a literal is being read without a reply.
    fn first_line(&mut self, line: &[u8]) -> Option<Action> {
        // A browser's request line lands where a tag is expected (`POST / HTTP/1.1`).
        if http::is_http_line(line) {
            self.state = State::Done;
            return Some(Action::CrossProtocol(BYE_HTTP.to_vec()));
        }
        let head = Head::parse(line);
        if has_control(line) {
            return Some(self.refuse_control(&head, line));
        }
        match Marker::find(line) {
            None => Some(self.execute(&head, line.get(head.args..).unwrap_or_default())),
            Some(marker) => {
                let mut buf = WipeBuf::new();
                buf.push(line);
                self.start_literal(Pending { head, buf }, marker)
            }
        }
    }

    /// The line that follows a literal.
    fn continued_line(&mut self, mut cmd: Pending, line: &[u8]) -> Option<Action> {
        if has_control(line) {
            return Some(self.refuse_control(&cmd.head, line));
        }
        cmd.buf.push(line);
        if cmd.buf.len() > self.command_limit() {
            return Some(self.close(BYE_COMMAND_TOO_LONG));
        }
        match Marker::find(line) {
            None => Some(self.execute(&cmd.head, cmd.buf.from(cmd.head.args))),
            Some(marker) => self.start_literal(cmd, marker),
        }
    }

    /// Accepts or refuses the literal announced at the end of `cmd`.
    fn start_literal(&mut self, mut cmd: Pending, marker: Marker) -> Option<Action> {
        let total = cmd.buf.len().saturating_add(2).saturating_add(marker.len);
        if marker.non_sync {
            // The client sends the data without waiting (RFC 7888 §3), so it cannot be
            // refused; reading it as commands would be an injection, so close instead.
            if marker.len > self.policy.max_literal {
                return Some(self.close(BYE_LITERAL_TOO_LARGE));
            }
            if total > self.command_limit() {
                return Some(self.close(BYE_COMMAND_TOO_LONG));
            }
        } else if let Some(refusal) = self.refuse_literal(&cmd.head, marker.len, total) {
            // A tagged completion instead of "+" rejects the command, and the client
            // sends no literal (RFC 3501 §2.2.1, §7.5).
            self.state = State::Command;
            return Some(self.error(refusal));
        }
        cmd.buf.push(b"\r\n");
        cmd.buf.reserve(marker.len);
        self.state = State::Literal {
            cmd,
            remaining: marker.len,
        };
        (!marker.non_sync).then(|| Action::Reply(LITERAL_READY.to_vec()))
    }

    /// Why a synchronising literal is refused before the client sends it, if it is.
    fn refuse_literal(&self, head: &Head, len: usize, total: usize) -> Option<Vec<u8>> {
        let Some(tag) = &head.tag else {
            return Some(BAD_UNTAGGED.to_vec());
        };
        let text: &[u8] = match head.verb {
            // Refused before the password is even sent in plaintext.
            Verb::Login if self.privacy_required() => b"NO [PRIVACYREQUIRED] Use STARTTLS first",
            Verb::Login | Verb::Id if len > self.policy.max_literal => b"BAD Literal too large",
            Verb::Login | Verb::Id if total > self.command_limit() => b"BAD Command too long",
            Verb::Login | Verb::Id => return None,
            Verb::Other => b"BAD Command not valid before login",
            Verb::Invalid => b"BAD Invalid command",
            Verb::Capability | Verb::Noop | Verb::Logout | Verb::StartTls | Verb::Authenticate => {
                b"BAD Invalid arguments"
            }
        };
        Some(tagged(tag, text))
    }

    /// Answers a complete command.
    fn execute(&mut self, head: &Head, args: &[u8]) -> Action {
        // Most commands leave the phase waiting for the next one.
        self.state = State::Command;
        let Some(tag) = &head.tag else {
            return self.error(BAD_UNTAGGED.to_vec());
        };
        let reply = |text: &[u8]| Action::Reply(tagged(tag, text));
        let bad_args = || tagged(tag, b"BAD Invalid arguments");
        let no_args = Parser::new(args).at_end();
        match head.verb {
            Verb::Capability if no_args => {
                let mut out = format!("* CAPABILITY {}\r\n", self.capabilities()).into_bytes();
                out.extend(tagged(tag, b"OK CAPABILITY completed"));
                Action::Reply(out)
            }
            Verb::Noop if no_args => reply(b"OK NOOP completed"),
            Verb::Logout if no_args => {
                let mut out = b"* BYE qqmail-proxy logging out\r\n".to_vec();
                out.extend(tagged(tag, b"OK LOGOUT completed"));
                self.state = State::Done;
                Action::Close(out)
            }
            Verb::StartTls if no_args => {
                if self.transport == Transport::Tls || self.policy.starttls == StartTlsMode::Off {
                    return self.error(tagged(tag, b"BAD STARTTLS not available"));
                }
                self.state = State::AwaitTls;
                Action::StartTls(tagged(tag, b"OK Begin TLS negotiation now"))
            }
            Verb::Capability | Verb::Noop | Verb::Logout | Verb::StartTls => self.error(bad_args()),
            // RFC 2971 §3.1: ID is valid in any state.
            Verb::Id => match parse_id(args) {
                Some(()) => {
                    let mut out = b"* ID (\"name\" \"qqmail-proxy\")\r\n".to_vec();
                    out.extend(tagged(tag, b"OK ID completed"));
                    Action::Reply(out)
                }
                None => self.error(bad_args()),
            },
            // RFC 3501 §6.2.3 (LOGINDISABLED) and RFC 5530 §3 (PRIVACYREQUIRED).
            Verb::Login | Verb::Authenticate if self.privacy_required() => {
                self.error(tagged(tag, b"NO [PRIVACYREQUIRED] Use STARTTLS first"))
            }
            Verb::Login => match parse_login(args) {
                Some(creds) => self.login(tag.clone(), creds),
                None => self.error(bad_args()),
            },
            Verb::Authenticate => self.authenticate(tag.clone(), args),
            Verb::Other => self.error(tagged(tag, b"BAD Command not valid before login")),
            Verb::Invalid => self.error(tagged(tag, b"BAD Invalid command")),
        }
    }

    /// `AUTHENTICATE SP auth-type [SP (base64 / "=")]` (RFC 3501 §6.2.2, RFC 4959 §3).
    fn authenticate(&mut self, tag: Tag, args: &[u8]) -> Action {
        let Some((name, initial)) = parse_authenticate(args) else {
            return self.error(tagged(&tag, b"BAD Invalid arguments"));
        };
        match (Mechanism::parse(name), initial) {
            // RFC 3501 §6.2.2: NO for an unsupported mechanism.
            (None, _) => self.error(tagged(&tag, b"NO Unsupported authentication mechanism")),
            (Some(Mechanism::Plain), Some(response)) => self.plain(tag, response),
            (Some(Mechanism::Login), Some(response)) => self.login_user(tag, response),
            (Some(Mechanism::Plain), None) => {
                self.state = State::Sasl {
                    tag,
                    step: SaslStep::Plain,
                };
                Action::Reply(b"+ \r\n".to_vec())
            }
            (Some(Mechanism::Login), None) => {
                self.state = State::Sasl {
                    tag,
                    step: SaslStep::LoginUser,
                };
                Action::Reply(format!("+ {}\r\n", sasl::LOGIN_USERNAME_CHALLENGE).into_bytes())
            }
        }
    }

    /// One response line of an AUTHENTICATE exchange.
    fn sasl_response(&mut self, tag: Tag, step: SaslStep, line: &[u8]) -> Action {
        match step {
            SaslStep::Plain => self.plain(tag, line),
            SaslStep::LoginUser => self.login_user(tag, line),
            SaslStep::LoginPassword { user } => match sasl::decode_response(line) {
                Ok(password) => self.login(tag, Credentials { user, password }),
                Err(e) => self.sasl_failed(&tag, &e),
            },
        }
    }

    fn plain(&mut self, tag: Tag, response: &[u8]) -> Action {
        match sasl::decode_plain(response) {
            Ok(creds) => self.login(tag, creds),
            Err(e) => self.sasl_failed(&tag, &e),
        }
    }

    fn login_user(&mut self, tag: Tag, response: &[u8]) -> Action {
        match sasl::decode_response(response) {
            Ok(user) if !user.is_empty() => {
                let user = String::from_utf8_lossy(user.expose()).into_owned();
                self.state = State::Sasl {
                    tag,
                    step: SaslStep::LoginPassword { user },
                };
                Action::Reply(format!("+ {}\r\n", sasl::LOGIN_PASSWORD_CHALLENGE).into_bytes())
            }
            Ok(_) => self.sasl_failed(&tag, &SaslError::BadPlain),
            Err(e) => self.sasl_failed(&tag, &e),
        }
    }

    /// RFC 3501 §6.2.2: a `*` response or invalid base64 MUST be answered with a tagged
    /// BAD; a well-formed blob that is not a valid message gets the same answer.
    fn sasl_failed(&mut self, tag: &Tag, error: &SaslError) -> Action {
        self.state = State::Command;
        match error {
            // Cancelling is the client's right, not an error (as in SMTP).
            SaslError::Cancelled => Action::Reply(tagged(tag, b"BAD Authentication cancelled")),
            SaslError::BadBase64 | SaslError::BadPlain => {
                self.error(tagged(tag, b"BAD Invalid SASL response"))
            }
        }
    }

    fn login(&mut self, tag: Tag, creds: Credentials) -> Action {
        self.state = State::AwaitLogin { tag };
        Action::Login(creds)
    }
}

impl LoginPhase for ImapLogin {
    const PROTOCOL: Protocol = Protocol::Imap;

    /// RFC 3501 §7.1.1: an untagged OK greeting, with the capabilities as a response code
    /// so that clients need not ask (RFC 3501 §7.2.1).
    fn greeting(&self) -> Vec<u8> {
        format!(
            "* OK [CAPABILITY {}] qqmail-proxy ready\r\n",
            self.capabilities()
        )
        .into_bytes()
    }

    fn advance(&mut self, input: &mut BytesMut) -> Action {
        loop {
            let action = match mem::replace(&mut self.state, State::Done) {
                State::Command => match self.framer.next_frame(input) {
                    Frame::Line(mut line) => {
                        let action = self.first_line(&line);
                        wipe(&mut line);
                        action
                    }
                    Frame::NeedMore => {
                        self.state = State::Command;
                        Some(Action::NeedMore)
                    }
                    Frame::TooLong => Some(self.close(BYE_LINE_TOO_LONG)),
                },
                State::AfterLiteral { cmd } => match self.framer.next_frame(input) {
                    Frame::Line(mut line) => {
                        let action = self.continued_line(cmd, &line);
                        wipe(&mut line);
                        action
                    }
                    Frame::NeedMore => {
                        self.state = State::AfterLiteral { cmd };
                        Some(Action::NeedMore)
                    }
                    Frame::TooLong => Some(self.close(BYE_LINE_TOO_LONG)),
                },
                State::Literal { mut cmd, remaining } => {
                    let n = remaining.min(input.len());
                    if let Some(data) = input.get_mut(..n) {
                        cmd.buf.push(data);
                        wipe(data);
                    }
                    input.advance(n);
                    if remaining == n {
                        self.state = State::AfterLiteral { cmd };
                        None
                    } else {
                        self.state = State::Literal {
                            cmd,
                            remaining: remaining - n,
                        };
                        Some(Action::NeedMore)
                    }
                }
                State::Sasl { tag, step } => match self.framer.next_frame(input) {
                    Frame::Line(mut line) => {
                        let action = self.sasl_response(tag, step, &line);
                        wipe(&mut line);
                        Some(action)
                    }
                    Frame::NeedMore => {
                        self.state = State::Sasl { tag, step };
                        Some(Action::NeedMore)
                    }
                    Frame::TooLong => Some(self.close(BYE_LINE_TOO_LONG)),
                },
                // Nothing is read here: the pipeline acts first, and after a login the
                // client's pipelined commands belong to the relay.
                waiting @ (State::AwaitTls | State::AwaitLogin { .. } | State::Done) => {
                    self.state = waiting;
                    Some(Action::NeedMore)
                }
            };
            if let Some(action) = action {
                return action;
            }
        }
    }

    fn login_result(&mut self, outcome: LoginOutcome) -> Action {
        let State::AwaitLogin { tag } = mem::replace(&mut self.state, State::Done) else {
            // Called without a pending login: a pipeline bug; end the session safely.
            return Action::Close(BYE_INTERNAL.to_vec());
        };
        self.state = State::Command;
        match outcome {
            LoginOutcome::Success { capabilities } => {
                self.state = State::Done;
                let text = match capability_code(capabilities.as_deref()) {
                    Some(caps) => [b"OK [CAPABILITY ", caps, b"] Logged in"].concat(),
                    None => b"OK Logged in".to_vec(),
                };
                Action::Reply(tagged(&tag, &text))
            }
            // RFC 5530 §3 response codes.
            LoginOutcome::BadCredentials => Action::Reply(tagged(
                &tag,
                b"NO [AUTHENTICATIONFAILED] Invalid credentials",
            )),
            LoginOutcome::TooManyFailures => {
                let mut out = tagged(&tag, b"NO [AUTHENTICATIONFAILED] Too many failures");
                out.extend_from_slice(b"* BYE Too many authentication failures\r\n");
                self.state = State::Done;
                Action::Close(out)
            }
            LoginOutcome::UpstreamUnavailable { reason } => {
                let text = [b"NO [UNAVAILABLE] ", &sanitize_reason(&reason)[..]].concat();
                Action::Reply(tagged(&tag, &text))
            }
            LoginOutcome::UpstreamRejected => Action::Reply(tagged(
                &tag,
                b"NO [AUTHENTICATIONFAILED] upstream rejected the stored authorization code",
            )),
        }
    }

    fn tls_started(&mut self) {
        self.transport = Transport::Tls;
        // Nothing framed before the handshake may influence what follows it.
        self.framer = LineFramer::new(self.policy.max_line);
        if matches!(self.state, State::AwaitTls) {
            self.state = State::Command;
        }
    }

    fn timeout_reply(&self) -> Vec<u8> {
        BYE_TIMEOUT.to_vec()
    }

    fn shutdown_reply(&self) -> Vec<u8> {
        BYE_SHUTDOWN.to_vec()
    }
}

#[cfg(test)]
mod tests;
