//! Tests for the IMAP login phase: transcript tables replayed at every chunk size, direct
//! checks of what is left in the input, and a proptest over random bytes.

use bytes::BytesMut;
use proptest::prelude::*;

use super::ImapLogin;
use crate::proto::testkit::{login, o, printer_secret, replay, Event};
use crate::proto::{Action, Credentials, LoginOutcome, LoginPhase, Policy, StartTlsMode};
use crate::secrets::Secret;

use StartTlsMode::{Off, Optional, Required};

const OPEN: &str = "IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN AUTH=LOGIN";
const OFFER: &str = "IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN";
const DISABLED: &str = "IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS LOGINDISABLED";
const READY: &str = "+ Ready for literal data\r\n";
const WELCOME: &str = "a OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n";
const BAD_CREDS: &str = "a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n";
const PRIVACY: &str = "NO [PRIVACYREQUIRED] Use STARTTLS first\r\n";
const BEGIN_TLS: &str = "s OK Begin TLS negotiation now\r\n";
/// base64("\0printer\0secret")
const PLAIN: &str = "AHByaW50ZXIAc2VjcmV0";

fn policy(starttls: StartTlsMode) -> Policy {
    Policy {
        starttls,
        max_line: 1024,
        max_literal: 64,
        ..Policy::default()
    }
}

fn greeting(mode: StartTlsMode) -> String {
    let caps = match mode {
        Off => OPEN,
        Optional => OFFER,
        Required => DISABLED,
    };
    format!("* OK [CAPABILITY {caps}] qqmail-proxy ready\r\n")
}

fn run(mode: StartTlsMode, script: &[u8]) -> Vec<Event> {
    replay(|| ImapLogin::new(policy(mode)), script, &printer_secret)
}

/// The first `Out` of a session: the greeting, then `rest`.
fn first(mode: StartTlsMode, rest: &str) -> Event {
    o(&(greeting(mode) + rest))
}

fn capability(caps: &str) -> String {
    format!("* CAPABILITY {caps}\r\na OK CAPABILITY completed\r\n")
}

fn check(mode: StartTlsMode, script: &[u8], want: &[Event]) {
    let got = run(mode, script);
    assert_eq!(got, want, "{mode:?} {:?}", String::from_utf8_lossy(script));
}

/// Scripts that only get replies: everything after the greeting is `out`.
fn replies(mode: StartTlsMode, cases: &[(&[u8], &str)]) {
    for (script, out) in cases {
        check(mode, script, &[first(mode, out)]);
    }
}

/// Scripts that end with the proxy closing the connection after `out`.
fn closes(cases: &[(&[u8], &str)]) {
    for (script, out) in cases {
        check(Off, script, &[first(Off, out), Event::Close]);
    }
}

#[test]
fn greeting_and_capability_per_mode() {
    check(Off, b"", &[first(Off, "")]);
    check(Off, b"a CAPABILITY\r\n", &[first(Off, &capability(OPEN))]);
    check(
        Optional,
        b"a CAPABILITY\r\n",
        &[first(Optional, &capability(OFFER))],
    );
    check(
        Required,
        b"a capability\r\n",
        &[first(Required, &capability(DISABLED))],
    );
    for mode in [Optional, Required] {
        check(
            mode,
            b"s starttls\r\na CAPABILITY\r\nb STARTTLS\r\n",
            &[
                first(mode, BEGIN_TLS),
                Event::StartTls,
                o(&(capability(OPEN) + "b BAD STARTTLS not available\r\n")),
            ],
        );
    }
}

#[test]
fn simple_commands() {
    replies(
        Off,
        &[
            (b"a STARTTLS\r\n", "a BAD STARTTLS not available\r\n"),
            (
                b"a NOOP\r\nb noop  \r\n",
                "a OK NOOP completed\r\nb OK NOOP completed\r\n",
            ),
            (b"c NOOP x\r\n", "c BAD Invalid arguments\r\n"),
            (b"d CAPABILITY x\r\n", "d BAD Invalid arguments\r\n"),
            (b"e STARTTLS {3}\r\n", "e BAD Invalid arguments\r\n"),
            (
                b"a NOOP\nb NOOP\n",
                "a OK NOOP completed\r\nb OK NOOP completed\r\n",
            ),
        ],
    );
    closes(&[(
        b"a LOGOUT\r\nb NOOP\r\n",
        "* BYE qqmail-proxy logging out\r\na OK LOGOUT completed\r\n",
    )]);
}

#[test]
fn id_command() {
    let id = "* ID (\"name\" \"qqmail-proxy\")\r\na OK ID completed\r\n";
    let with_ready = format!("{READY}{id}");
    replies(
        Off,
        &[
            (b"a ID NIL\r\n", id),
            (b"a id nil\r\n", id),
            (b"a ID (\"name\" \"printer\" \"version\" \"1.0\")\r\n", id),
            (b"a ID ()\r\n", id),
            (b"a ID (\"name\" {7+}\r\nprinter \"os\" NIL)\r\n", id),
            (b"a ID (\"name\" {7}\r\nprinter)\r\n", &with_ready),
            (b"a ID\r\n", "a BAD Invalid arguments\r\n"),
            (b"a ID foo\r\n", "a BAD Invalid arguments\r\n"),
            (b"a ID (\"x\"\r\n", "a BAD Invalid arguments\r\n"),
            (b"a ID (\"x\") y\r\n", "a BAD Invalid arguments\r\n"),
        ],
    );
}

/// Each script logs in once, as `user` / `pass`, after the replies `before`.
#[test]
fn login_forms() {
    let x64 = "x".repeat(64);
    let cases: &[(&[u8], &str, &str, &str)] = &[
        (b"a LOGIN printer secret\r\n", "printer", "secret", ""),
        (b"a login printer secret\r\n", "printer", "secret", ""),
        (b"a LOGIN printer secret  \r\n", "printer", "secret", ""),
        (b"a LOGIN \"printer\" \"secret\"\r\n", "printer", "secret", ""),
        (b"a LOGIN \"\" \"\"\r\n", "", "", ""),
        (b"a LOGIN p \"s\\\\e\\\"c\"\r\n", "p", "s\\e\"c", ""),
        // Leniency for legacy clients: wildcards and 8-bit bytes in atoms.
        ("a LOGIN printer p%*ss\u{e4}\r\n".as_bytes(), "printer", "p%*ss\u{e4}", ""),
        (b"a LOGIN printer s]\r\n", "printer", "s]", ""),
        (b"a LOGIN {7}\r\nprinter {6}\r\nsecret\r\n", "printer", "secret", "+ Ready for literal data\r\n+ Ready for literal data\r\n"),
        (b"a LOGIN {7+}\r\nprinter {6+}\r\nsecret\r\n", "printer", "secret", ""),
        (b"a LOGIN printer {6}\r\nsecret\r\n", "printer", "secret", READY),
        (b"a LOGIN printer {0}\r\n\r\n", "printer", "", READY),
        (b"a LOGIN {0+}\r\n secret\r\n", "", "secret", ""),
        (b"a LOGIN printer {7+}\r\nse\r\ncr\"\r\n", "printer", "se\r\ncr\"", ""),
        (b"a LOGIN printer {006+}\r\nsecret\r\n", "printer", "secret", ""),
        (b"a LOGIN printer {64+}\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", "printer", &x64, ""),
        // AUTHENTICATE PLAIN (RFC 4616) and LOGIN, with and without initial response.
        (b"a AUTHENTICATE PLAIN AHByaW50ZXIAc2VjcmV0\r\n", "printer", "secret", ""),
        (b"a authenticate plain AHByaW50ZXIAc2VjcmV0\r\n", "printer", "secret", ""),
        (b"a AUTHENTICATE PLAIN\r\nAHByaW50ZXIAc2VjcmV0\r\n", "printer", "secret", "+ \r\n"),
        (b"a AUTHENTICATE PLAIN\r\nAHByaW50ZXIAc2VjcmV0  \r\n", "printer", "secret", "+ \r\n"),
        (b"a AUTHENTICATE LOGIN\r\ncHJpbnRlcg==\r\nc2VjcmV0\r\n", "printer", "secret", "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n"),
        (b"a AUTHENTICATE LOGIN cHJpbnRlcg==\r\nc2VjcmV0\r\n", "printer", "secret", "+ UGFzc3dvcmQ6\r\n"),
        (b"a AUTHENTICATE LOGIN cHJpbnRlcg==\r\n=\r\n", "printer", "", "+ UGFzc3dvcmQ6\r\n"),
    ];
    for &(script, user, pass, before) in cases {
        let mut want = vec![first(Off, before), login(user, pass)];
        if (user, pass) == ("printer", "secret") {
            want.extend([o(WELCOME), Event::Relay]);
        } else {
            want.push(o(BAD_CREDS));
        }
        check(Off, script, &want);
    }
}

#[test]
fn login_and_authenticate_errors() {
    let invalid = "a BAD Invalid arguments\r\n";
    let sasl = "a BAD Invalid SASL response\r\n";
    replies(
        Off,
        &[
            (b"a LOGIN printer\r\n", invalid),
            (b"a LOGIN\r\n", invalid),
            (b"a LOGIN a b c\r\n", invalid),
            (b"a LOGIN p \"s\\ecret\"\r\n", invalid),
            // Refused before it is parsed (issue 16, item 5).
            (
                b"a LOGIN p \"sec\0ret\"\r\n",
                "a BAD Syntax error: control characters are not allowed\r\n",
            ),
            (b"a LOGIN p \"secret\r\n", invalid),
            (b"a LOGIN p (secret)\r\n", invalid),
            // `{n}` not at the very end of a line announces no literal.
            (b"a LOGIN p {3}abc\r\n", invalid),
            (b"a LOGIN p {6}x\r\n", invalid),
            (b"a LOGIN p {}\r\n", invalid),
            (
                b"a LOGIN printer {65}\r\nb NOOP\r\n",
                "a BAD Literal too large\r\nb OK NOOP completed\r\n",
            ),
            (
                b"a LOGIN p {99999999999999999999999}\r\n",
                "a BAD Literal too large\r\n",
            ),
            (b"a AUTHENTICATE\r\n", invalid),
            (b"a AUTHENTICATE PLAIN x y\r\n", invalid),
            (b"a AUTHENTICATE {5}\r\n", invalid),
            (
                b"a AUTHENTICATE CRAM-MD5\r\n",
                "a NO Unsupported authentication mechanism\r\n",
            ),
            (b"a AUTHENTICATE PLAIN =\r\n", sasl),
            (b"a AUTHENTICATE PLAIN\r\n=\r\n", &format!("+ \r\n{sasl}")),
            (b"a AUTHENTICATE PLAIN !!!!\r\n", sasl),
            (b"a AUTHENTICATE PLAIN\r\n%%%\r\n", &format!("+ \r\n{sasl}")),
            // "printer\0secret": no second NUL.
            (b"a AUTHENTICATE PLAIN cHJpbnRlcgBzZWNyZXQ=\r\n", sasl),
            (b"a AUTHENTICATE LOGIN =\r\n", sasl),
            (
                b"a AUTHENTICATE LOGIN\r\n???\r\n",
                &format!("+ VXNlcm5hbWU6\r\n{sasl}"),
            ),
            (
                b"a AUTHENTICATE PLAIN\r\n*\r\nb NOOP\r\n",
                "+ \r\na BAD Authentication cancelled\r\nb OK NOOP completed\r\n",
            ),
            (
                b"a AUTHENTICATE LOGIN\r\ncHJpbnRlcg==\r\n*\r\n",
                "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\na BAD Authentication cancelled\r\n",
            ),
        ],
    );
}

#[test]
fn wrong_then_right_password() {
    let script = b"a LOGIN printer wrong\r\nb AUTHENTICATE PLAIN\r\nAHByaW50ZXIAc2VjcmV0\r\n";
    let want = [
        first(Off, ""),
        login("printer", "wrong"),
        o(&format!("{BAD_CREDS}+ \r\n")),
        login("printer", "secret"),
        o("b OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n"),
        Event::Relay,
    ];
    check(Off, script, &want);
}

#[test]
fn required_mode_refuses_credentials_before_tls() {
    let refused = format!("a {PRIVACY}b {PRIVACY}c OK NOOP completed\r\n");
    let refused_one = format!("a {PRIVACY}b OK NOOP completed\r\n");
    replies(Required, &[
        (b"a LOGIN printer secret\r\nb AUTHENTICATE PLAIN AHByaW50ZXIAc2VjcmV0\r\nc NOOP\r\n", &refused),
        (b"a AUTHENTICATE PLAIN\r\nb NOOP\r\n", &refused_one),
        // A synchronising literal is refused before the password is sent.
        (b"a LOGIN printer {6}\r\nb NOOP\r\n", &refused_one),
        (b"a LOGIN printer {6+}\r\nsecret\r\nb NOOP\r\n", &refused_one),
    ]);
    let script = b"a LOGIN printer secret\r\ns STARTTLS\r\na LOGIN printer secret\r\n";
    let want = [
        first(Required, &format!("a {PRIVACY}{BEGIN_TLS}")),
        Event::StartTls,
        login("printer", "secret"),
        o(WELCOME),
        Event::Relay,
    ];
    check(Required, script, &want);
}

#[test]
fn other_commands_and_garbage_before_login() {
    let early = "BAD Command not valid before login\r\n";
    let star = "* BAD Invalid command\r\n";
    replies(
        Off,
        &[
            (b"a SELECT INBOX\r\n", &format!("a {early}")),
            (
                b"b LIST \"\" *\r\nc fetch 1 BODY[]\r\n",
                &format!("b {early}c {early}"),
            ),
            // A synchronising literal is refused at once; a non-synchronising one is skipped.
            (
                b"a SELECT {5}\r\nb SELECT {5+}\r\nINBOX\r\nc NOOP\r\n",
                &format!("a {early}b {early}c OK NOOP completed\r\n"),
            ),
            (b"\r\nhello\r\n+ NOOP\r\na*b NOOP\r\n", &star.repeat(4)),
            (b"a]b NOOP\r\n", "a]b OK NOOP completed\r\n"),
            (b"\xff\xfe\x00 LOGIN\r\n", star),
            (
                b"a \x80\x81\r\nb \r\nc (x\r\n",
                "a BAD Invalid command\r\nb BAD Invalid command\r\nc BAD Invalid command\r\n",
            ),
            (
                b"{5}\r\n\xff\xfe {3+}\r\nabc\r\na NOOP\r\n",
                &format!("{star}{star}a OK NOOP completed\r\n"),
            ),
        ],
    );
}

#[test]
fn oversized_input_closes() {
    let mut huge = b"a LOGIN printer ".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    huge.extend_from_slice(b"\r\nb NOOP\r\n");
    // After a literal, the continuation line is limited too.
    let mut after = b"a LOGIN {1+}\r\np ".to_vec();
    after.extend(std::iter::repeat_n(b'x', 2000));
    after.extend_from_slice(b"\r\n");
    // Many small literals in one command: bounded by max_line + 2 * max_literal.
    let mut many = b"a ID (".to_vec();
    for _ in 0..40 {
        many.extend_from_slice(b"{60+}\r\n");
        many.extend(std::iter::repeat_n(b'v', 60));
        many.push(b' ');
    }
    let mut non_sync = b"a LOGIN printer {65+}\r\n".to_vec();
    non_sync.extend(std::iter::repeat_n(b'x', 65));
    closes(&[
        (&huge, "* BYE Line too long\r\n"),
        (&after, "* BYE Line too long\r\n"),
        (&many, "* BYE Command too long\r\n"),
        (&non_sync, "* BYE Literal too large\r\n"),
    ]);
    // The same with synchronising literals: refused with a tagged BAD instead of "+".
    let sync = String::from_utf8_lossy(&many).replace("{60+}", "{60}");
    let events = run(Off, sync.as_bytes());
    let Some(Event::Out(out)) = events.first() else {
        panic!("no output: {events:?}");
    };
    assert!(
        out.contains(&format!("{READY}a BAD Command too long\r\n")),
        "{out}"
    );
}

#[test]
fn every_login_outcome() {
    let unavailable = |reason: &str| LoginOutcome::UpstreamUnavailable {
        reason: reason.into(),
    };
    let success = |caps: Option<&[u8]>| LoginOutcome::Success {
        capabilities: caps.map(<[u8]>::to_vec),
    };
    let han = "\u{4e2d}";
    let capped = format!("a NO [UNAVAILABLE] {}\r\n", han.repeat(66));
    let cases: &[(LoginOutcome, &str, bool)] = &[
        (success(None), "a OK Logged in\r\n", false),
        (success(Some(b" IMAP4rev1 IDLE ")), "a OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n", false),
        // Unsafe capability text is dropped rather than embedded.
        (success(Some(b"IMAP4rev1] x\r\n* OK")), "a OK Logged in\r\n", false),
        (LoginOutcome::BadCredentials, BAD_CREDS, true),
        (LoginOutcome::TooManyFailures, "a NO [AUTHENTICATIONFAILED] Too many failures\r\n* BYE Too many authentication failures\r\n", false),
        (unavailable("cannot reach imap.qq.com:993: refused"), "a NO [UNAVAILABLE] cannot reach imap.qq.com:993: refused\r\n", true),
        (unavailable("x\r\nb OK injected\0"), "a NO [UNAVAILABLE] x  b OK injected\r\n", true),
        (unavailable(&han.repeat(100)), &capped, true),
        (unavailable("\r\n"), "a NO [UNAVAILABLE] Upstream unavailable\r\n", true),
        (LoginOutcome::UpstreamRejected, "a NO [AUTHENTICATIONFAILED] upstream rejected the stored authorization code\r\n", true),
    ];
    for (outcome, reply, continues) in cases {
        let answer = |_: &Credentials| outcome.clone();
        let make = || ImapLogin::new(policy(Off));
        let got = replay(make, b"a LOGIN printer secret\r\nb NOOP\r\n", &answer);
        let mut want = vec![first(Off, ""), login("printer", "secret")];
        match outcome {
            _ if *continues => want.push(o(&format!("{reply}b OK NOOP completed\r\n"))),
            LoginOutcome::Success { .. } => want.extend([o(reply), Event::Relay]),
            _ => want.extend([o(reply), Event::Close]),
        }
        assert_eq!(got, want, "{outcome:?}");
    }
}

#[test]
fn timeout_and_shutdown_replies() {
    let m = ImapLogin::new(policy(Off));
    assert_eq!(
        m.timeout_reply(),
        b"* BYE Autologout; idle for too long\r\n"
    );
    assert_eq!(m.shutdown_reply(), b"* BYE Server shutting down\r\n");
}

fn creds(user: &str, password: &str) -> Action {
    Action::Login(Credentials {
        user: user.into(),
        password: Secret::from(password),
    })
}

fn success() -> LoginOutcome {
    LoginOutcome::Success {
        capabilities: Some(b"IMAP4rev1 IDLE".to_vec()),
    }
}

/// Pipelined commands after a successful login stay, byte for byte, for the relay.
#[test]
fn pipelined_commands_are_left_for_the_relay() {
    let scripts: &[(&[u8], Option<&[u8]>)] = &[
        (b"a LOGIN printer secret\r\nb SELECT INBOX\r\n", None),
        (
            b"a LOGIN {7+}\r\nprinter {6+}\r\nsecret\r\nb SELECT INBOX\r\n",
            None,
        ),
        (
            b"a AUTHENTICATE PLAIN\r\nAHByaW50ZXIAc2VjcmV0\r\nb SELECT INBOX\r\n",
            Some(b"+ \r\n"),
        ),
    ];
    for &(script, continuation) in scripts {
        let mut m = ImapLogin::new(policy(Off));
        let mut buf = BytesMut::from(script);
        if let Some(c) = continuation {
            assert_eq!(m.advance(&mut buf), Action::Reply(c.to_vec()));
        }
        assert_eq!(m.advance(&mut buf), creds("printer", "secret"));
        // Waiting for the result: nothing is consumed.
        assert_eq!(m.advance(&mut buf), Action::NeedMore);
        assert_eq!(&buf[..], b"b SELECT INBOX\r\n");
        let welcome = b"a OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n".to_vec();
        assert_eq!(m.login_result(success()), Action::Reply(welcome));
        assert_eq!(&buf[..], b"b SELECT INBOX\r\n");
        // Logged in: still nothing is consumed.
        assert_eq!(m.advance(&mut buf), Action::NeedMore);
        assert_eq!(&buf[..], b"b SELECT INBOX\r\n");
    }
}

#[test]
fn nothing_is_read_between_starttls_and_the_handshake() {
    let mut m = ImapLogin::new(policy(Required));
    let mut buf = BytesMut::from(&b"s STARTTLS\r\na LOGIN printer secret\r\n"[..]);
    assert_eq!(m.advance(&mut buf), Action::StartTls(BEGIN_TLS.into()));
    assert_eq!(m.advance(&mut buf), Action::NeedMore);
    assert_eq!(&buf[..], b"a LOGIN printer secret\r\n");
    // The pipeline discards plaintext leftovers (RFC 3207 §6), then the handshake runs.
    buf.clear();
    m.tls_started();
    buf.extend_from_slice(b"a LOGIN printer secret\r\n");
    assert_eq!(m.advance(&mut buf), creds("printer", "secret"));
}

#[test]
fn login_result_without_a_pending_login_closes() {
    let mut m = ImapLogin::new(policy(Off));
    let bye = b"* BYE Internal error\r\n".to_vec();
    assert_eq!(
        m.login_result(LoginOutcome::BadCredentials),
        Action::Close(bye)
    );
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static [u8]> = vec![
        b"a LOGIN ",
        b"a AUTHENTICATE PLAIN\r\n",
        b"a AUTHENTICATE LOGIN\r\n",
        b"a AUTHENTICATE PLAIN ",
        b"a ID (",
        b"a STARTTLS\r\n",
        b"a NOOP\r\n",
        b"a LOGOUT\r\n",
        b"a SELECT ",
        b"printer secret\r\n",
        PLAIN.as_bytes(),
        b"cHJpbnRlcg==\r\n",
        b" ",
        b"(",
        b")",
        b"\"",
        b"\\",
        b"{3}\r\n",
        b"{2+}\r\n",
        b"{0}\r\n",
        b"{40+}\r\n",
        b"{99}\r\n",
        b"\r\n",
        b"\n",
        b"*\r\n",
        b"=",
        b"NIL",
    ];
    prop_oneof![
        3 => proptest::sample::select(words).prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

fn outcome(i: u8) -> LoginOutcome {
    match i % 5 {
        0 => success(),
        1 => LoginOutcome::BadCredentials,
        2 => LoginOutcome::TooManyFailures,
        3 => LoginOutcome::UpstreamUnavailable {
            reason: "down\r\n".into(),
        },
        _ => LoginOutcome::UpstreamRejected,
    }
}

proptest! {
    /// Random input at random chunkings never panics, every reply is CRLF-terminated
    /// ASCII, and the buffer never holds more than one (bounded) line.
    #[test]
    fn random_input_is_bounded_and_safe(
        pieces in proptest::collection::vec(fragment(), 0..60),
        chunks in proptest::collection::vec(1usize..100, 1..8),
        outcomes in proptest::collection::vec(any::<u8>(), 1..8),
        mode in proptest::sample::select(vec![Off, Optional, Required]),
    ) {
        let input = pieces.concat();
        let policy = Policy { starttls: mode, max_line: 64, max_literal: 32, ..Policy::default() };
        let max_line = policy.max_line;
        let mut m = ImapLogin::new(policy);
        let mut buf = BytesMut::new();
        let (mut at, mut logins) = (0, 0);
        let sane = |b: &[u8]| b.ends_with(b"\r\n") && b.iter().all(|c| c.is_ascii() && *c != 0);
        'feed: for &chunk in chunks.iter().cycle() {
            if at >= input.len() {
                break;
            }
            let end = (at + chunk).min(input.len());
            buf.extend_from_slice(&input[at..end]);
            at = end;
            loop {
                match m.advance(&mut buf) {
                    Action::NeedMore => break,
                    Action::Reply(b) => prop_assert!(sane(&b)),
                    Action::StartTls(b) => {
                        prop_assert!(sane(&b));
                        buf.clear();
                        m.tls_started();
                    }
                    Action::Login(_) => {
                        logins += 1;
                        let result = outcome(outcomes[logins % outcomes.len()]);
                        let success = matches!(result, LoginOutcome::Success { .. });
                        match m.login_result(result) {
                            // The relay owns the rest of the input.
                            Action::Reply(b) if success => {
                                prop_assert!(sane(&b));
                                break 'feed;
                            }
                            Action::Reply(b) => prop_assert!(sane(&b)),
                            Action::Close(b) => {
                                prop_assert!(sane(&b));
                                break 'feed;
                            }
                            other => prop_assert!(false, "login_result gave {:?}", other),
                        }
                    }
                    Action::Close(b) | Action::CrossProtocol(b) => {
                        prop_assert!(sane(&b));
                        break 'feed;
                    }
                    Action::Proceed => prop_assert!(false, "IMAP never proceeds"),
                }
            }
            prop_assert!(buf.len() <= max_line + 1, "{} bytes buffered", buf.len());
        }
    }
}
