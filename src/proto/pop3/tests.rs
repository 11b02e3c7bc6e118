//! Tests for the POP3 login phase: transcript tables replayed at every chunk size, direct
//! checks of what stays in the input buffer, and a proptest over random input.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::proto::testkit::{login, o, printer_secret, replay, Event};

const G: &str = "+OK qqmail-proxy ready\r\n";
const CAPA_PLAIN: &str = "+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n\
                          RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n\
                          IMPLEMENTATION qqmail-proxy\r\n.\r\n";
const CAPA_NO_STLS: &str = "+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN\r\n\
                            RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n\
                            IMPLEMENTATION qqmail-proxy\r\n.\r\n";
const CAPA_LOCKED: &str = "+OK Capability list follows\r\nSTLS\r\n\
                           RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n\
                           IMPLEMENTATION qqmail-proxy\r\n.\r\n";
const USER_OK_S: &str = "+OK Send PASS\r\n";
const LOGGED: &str = "+OK Logged in\r\n";
const BAD: &str = "-ERR [AUTH] Invalid credentials\r\n";
const BEGIN: &str = "+OK Begin TLS negotiation\r\n";
const STLS_FIRST_S: &str = "-ERR Use STLS first\r\n";
const BYE_S: &str = "+OK qqmail-proxy signing off\r\n";
const INVALID: &str = "-ERR Invalid command\r\n";
const CONTROL_S: &str = "-ERR Syntax error: control characters are not allowed\r\n";
const NOT_YET: &str = "-ERR Command not valid before login\r\n";
const SASL_BAD: &str = "-ERR Invalid SASL response\r\n";
const CANCELLED: &str = "-ERR Authentication cancelled\r\n";
const ASK_USER: &str = "+ VXNlcm5hbWU6\r\n";
const ASK_PASS: &str = "+ UGFzc3dvcmQ6\r\n";

fn policy(starttls: StartTlsMode) -> Policy {
    Policy {
        starttls,
        ..Policy::default()
    }
}

fn run(mode: StartTlsMode, input: &[u8]) -> Vec<Event> {
    replay(|| Pop3Login::new(policy(mode)), input, &printer_secret)
}

fn cat(parts: &[&str]) -> String {
    parts.concat()
}

/// A transcript made of one output.
fn only(parts: &[&str]) -> Vec<Event> {
    vec![o(&parts.concat())]
}

fn ok_login(prefix: &[&str]) -> Vec<Event> {
    vec![
        o(&cat(prefix)),
        login("printer", "secret"),
        o(LOGGED),
        Event::Relay,
    ]
}

#[test]
fn transcripts() {
    use StartTlsMode::{Off, Optional, Required};
    let tls = Event::StartTls;
    let user_first = "-ERR USER first\r\n";
    let no_user = "-ERR Missing user name\r\n";
    let unsupported = "-ERR Unsupported authentication mechanism\r\n";
    // One case a line, so that the table reads as a table.
    #[rustfmt::skip]
    let cases: Vec<(StartTlsMode, &str, Vec<Event>)> = vec![
        // Greeting alone.
        (Optional, "", vec![o(G)]),
        // CAPA in each mode, and after STLS (RFC 2595 §4: the list changes).
        (Optional, "CAPA\r\n", only(&[G, CAPA_PLAIN])),
        (Off, "CAPA\r\n", only(&[G, CAPA_NO_STLS])),
        (Required, "CAPA\r\n", only(&[G, CAPA_LOCKED])),
        (Optional, "STLS\r\nCAPA\r\n", vec![o(&cat(&[G, BEGIN])), tls.clone(), o(CAPA_NO_STLS)]),
        (Required, "STLS\r\ncapa\r\n", vec![o(&cat(&[G, BEGIN])), tls.clone(), o(CAPA_NO_STLS)]),
        // USER / PASS, lower case and bare LF too.
        (Optional, "USER printer\r\nPASS secret\r\n", ok_login(&[G, USER_OK_S])),
        (Off, "user printer\npass secret\n", ok_login(&[G, USER_OK_S])),
        // A failed PASS forgets the USER (RFC 1939 §7); a new USER/PASS may succeed.
        (Optional, "USER printer\r\nPASS wrong\r\nPASS secret\r\n",
         vec![o(&cat(&[G, USER_OK_S])), login("printer", "wrong"), o(&cat(&[BAD, user_first]))]),
        (Optional, "USER printer\r\nPASS x\r\nUSER printer\r\nPASS secret\r\n",
         vec![o(&cat(&[G, USER_OK_S])), login("printer", "x"), o(&cat(&[BAD, USER_OK_S])),
              login("printer", "secret"), o(LOGGED), Event::Relay]),
        // RFC 1939 §7: the password is the whole rest of the line, spaces included.
        (Optional, "USER bob\r\nPASS  my secret pw \r\n",
         vec![o(&cat(&[G, USER_OK_S])), login("bob", " my secret pw "), o(BAD)]),
        (Optional, "USER bob\r\nPASS\r\n", vec![o(&cat(&[G, USER_OK_S])), login("bob", ""), o(BAD)]),
        (Optional, "PASS secret\r\n", only(&[G, user_first])),
        (Optional, "USER\r\nUSER  \r\n", only(&[G, no_user, no_user])),
        // A second USER replaces the first; CAPA and errors keep a pending USER.
        (Optional, "USER someone\r\nUSER printer\r\nCAPA\r\nSTAT\r\n\x01\r\nPASS secret\r\n",
         ok_login(&[G, USER_OK_S, USER_OK_S, CAPA_PLAIN, NOT_YET, CONTROL_S])),
        // STLS forgets a pending USER.
        (Optional, "USER printer\r\nSTLS\r\nPASS secret\r\n",
         vec![o(&cat(&[G, USER_OK_S, BEGIN])), tls.clone(), o(user_first)]),
        // AUTH without a mechanism lists them.
        (Optional, "AUTH\r\n", only(&[G, "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"])),
        // AUTH PLAIN with an initial response, with a continuation, and `=`.
        (Optional, "AUTH PLAIN AHByaW50ZXIAc2VjcmV0\r\n", ok_login(&[G])),
        (Optional, "auth plain AHByaW50ZXIAc2VjcmV0  \r\n", ok_login(&[G])),
        (Optional, "AUTH PLAIN\r\nAHByaW50ZXIAc2VjcmV0\r\n", ok_login(&[G, "+ \r\n"])),
        (Optional, "AUTH PLAIN =\r\n", only(&[G, SASL_BAD])),
        (Optional, "AUTH PLAIN\r\n=\r\n", only(&[G, "+ \r\n", SASL_BAD])),
        // "\0printer\0wrong", then the right one.
        (Optional, "AUTH PLAIN AHByaW50ZXIAd3Jvbmc=\r\nAUTH PLAIN AHByaW50ZXIAc2VjcmV0\r\n",
         vec![o(G), login("printer", "wrong"), o(BAD), login("printer", "secret"), o(LOGGED),
              Event::Relay]),
        // AUTH LOGIN, with and without an initial response; empty user or password.
        (Optional, "AUTH LOGIN\r\ncHJpbnRlcg==\r\nc2VjcmV0\r\n", ok_login(&[G, ASK_USER, ASK_PASS])),
        (Optional, "AUTH LOGIN cHJpbnRlcg==\r\nc2VjcmV0\r\n", ok_login(&[G, ASK_PASS])),
        (Optional, "AUTH LOGIN\r\n=\r\n", only(&[G, ASK_USER, SASL_BAD])),
        (Optional, "AUTH LOGIN cHJpbnRlcg==\r\n=\r\n",
         vec![o(&cat(&[G, ASK_PASS])), login("printer", ""), o(BAD)]),
        // `*` cancels at any step.
        (Optional, "AUTH PLAIN\r\n*\r\nQUIT\r\n",
         vec![o(&cat(&[G, "+ \r\n", CANCELLED, BYE_S])), Event::Close]),
        (Optional, "AUTH LOGIN\r\ncHJpbnRlcg==\r\n*\r\nSTAT\r\n",
         only(&[G, ASK_USER, ASK_PASS, CANCELLED, NOT_YET])),
        // Bad base64, and a PLAIN message without NULs ("printer").
        (Optional, "AUTH PLAIN\r\nnot base64!\r\nAUTH PLAIN !!!!\r\nAUTH LOGIN @\r\n",
         only(&[G, "+ \r\n", SASL_BAD, SASL_BAD, SASL_BAD])),
        (Optional, "AUTH PLAIN cHJpbnRlcg==\r\n", only(&[G, SASL_BAD])),
        (Optional, "AUTH CRAM-MD5\r\nAUTH XOAUTH2 abc\r\n", only(&[G, unsupported, unsupported])),
        // Required: no credentials before STLS, accepted after it.
        (Required, "USER printer\r\nPASS secret\r\nAUTH PLAIN AHByaW50ZXIAc2VjcmV0\r\nAUTH\r\n\
                    STLS\r\nUSER printer\r\nPASS secret\r\n",
         vec![o(&cat(&[G, STLS_FIRST_S, STLS_FIRST_S, STLS_FIRST_S, STLS_FIRST_S, BEGIN])),
              tls.clone(), o(USER_OK_S), login("printer", "secret"), o(LOGGED), Event::Relay]),
        (Required, "STLS\r\nAUTH PLAIN\r\nAHByaW50ZXIAc2VjcmV0\r\n",
         vec![o(&cat(&[G, BEGIN])), tls.clone(), o("+ \r\n"), login("printer", "secret"),
              o(LOGGED), Event::Relay]),
        // STLS when off, and a second STLS.
        (Off, "STLS\r\n", only(&[G, "-ERR STLS not available\r\n"])),
        (Optional, "STLS\r\nSTLS\r\n",
         vec![o(&cat(&[G, BEGIN])), tls.clone(), o("-ERR TLS already active\r\n")]),
        // QUIT ends the session; nothing after it is read.
        (Optional, "QUIT\r\nCAPA\r\n", vec![o(&cat(&[G, BYE_S])), Event::Close]),
        (Required, "quit\r\n", vec![o(&cat(&[G, BYE_S])), Event::Close]),
        // TRANSACTION-state commands before login.
        (Optional, "STAT\r\nLIST\r\nRETR 1\r\nNOOP\r\nTOP 1 2\r\nuidl\r\nDELE 1\r\nRSET\r\n",
         only(&[G, NOT_YET, NOT_YET, NOT_YET, NOT_YET, NOT_YET, NOT_YET, NOT_YET, NOT_YET])),
        (Optional, "APOP printer c4c9334bac560ecc979e58001b3e22fb\r\n",
         only(&[G, "-ERR APOP not supported\r\n"])),
        // Empty, garbage and control-character lines (RFC 1939 §3: 3-4 letter keywords).
        (Optional, "\r\n\n HELO\r\nUS\r\nHELLO WORLD\r\nUSE1 x\r\n\x00\x01\x02\r\nCAPA\r\n",
         only(&[G, INVALID, INVALID, INVALID, INVALID, INVALID, INVALID, CONTROL_S, CAPA_PLAIN])),
    ];
    for (mode, input, want) in cases {
        assert_eq!(run(mode, input.as_bytes()), want, "{mode:?} {input:?}");
    }
}

#[test]
fn binary_bytes_are_invalid_commands() {
    let events = run(
        StartTlsMode::Optional,
        b"\x80\x81 USER\r\n\xc3\x28\r\nQUIT\r\n",
    );
    assert_eq!(
        events,
        vec![o(&cat(&[G, INVALID, INVALID, BYE_S])), Event::Close]
    );
}

#[test]
fn overlong_lines_are_refused_and_the_session_goes_on() {
    let too_long = "-ERR Line too long\r\n";
    let mut input = vec![b'A'; 1 << 20];
    input.extend_from_slice(b"\r\nCAPA\r\n");
    assert_eq!(
        run(StartTlsMode::Optional, &input),
        only(&[G, too_long, CAPA_PLAIN])
    );
    // An overlong SASL response ends the exchange: QUIT is a command again.
    let mut input = b"AUTH PLAIN\r\n".to_vec();
    input.extend_from_slice(&[b'A'; 20_000]);
    input.extend_from_slice(b"\r\nQUIT\r\n");
    assert_eq!(
        run(StartTlsMode::Optional, &input),
        vec![o(&cat(&[G, "+ \r\n", too_long, BYE_S])), Event::Close]
    );
    // A pending USER survives an overlong line.
    let mut input = b"USER printer\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 20_000]);
    input.extend_from_slice(b"\nPASS secret\r\n");
    assert_eq!(
        run(StartTlsMode::Optional, &input),
        ok_login(&[G, USER_OK_S, too_long])
    );
}

#[test]
fn every_login_outcome_has_its_reply() {
    let long_reason = "x".repeat(1000);
    let capped = format!("-ERR [SYS/TEMP] {}\r\n", "x".repeat(MAX_REASON));
    let cases: Vec<(LoginOutcome, Vec<Event>)> = vec![
        (
            LoginOutcome::Success { capabilities: None },
            vec![o(LOGGED), Event::Relay],
        ),
        (LoginOutcome::BadCredentials, only(&[BAD, USER_OK_S])),
        (
            LoginOutcome::TooManyFailures,
            vec![
                o("-ERR [AUTH] Too many authentication failures\r\n"),
                Event::Close,
            ],
        ),
        (
            LoginOutcome::UpstreamUnavailable {
                reason: "cannot reach pop.qq.com:995:\r\nconnection refused\0".into(),
            },
            only(&[
                "-ERR [SYS/TEMP] cannot reach pop.qq.com:995:  connection refused\r\n",
                USER_OK_S,
            ]),
        ),
        (
            LoginOutcome::UpstreamUnavailable {
                reason: long_reason,
            },
            only(&[&capped, USER_OK_S]),
        ),
        (
            LoginOutcome::UpstreamUnavailable {
                reason: "\r\n".into(),
            },
            only(&["-ERR [SYS/TEMP] upstream unavailable\r\n", USER_OK_S]),
        ),
        (
            LoginOutcome::UpstreamRejected,
            only(&[
                "-ERR [SYS/TEMP] upstream rejected the stored authorization code\r\n",
                USER_OK_S,
            ]),
        ),
    ];
    for (outcome, tail) in cases {
        // After a failure the session goes on: the second USER is answered.
        let answer = |_: &Credentials| outcome.clone();
        let got = replay(
            || Pop3Login::new(policy(StartTlsMode::Optional)),
            b"USER printer\r\nPASS secret\r\nUSER printer\r\n",
            &answer,
        );
        let mut want = vec![o(&cat(&[G, USER_OK_S])), login("printer", "secret")];
        want.extend(tail);
        assert_eq!(got, want, "{outcome:?}");
    }
}

#[test]
fn sanitize_reason_table() {
    let cases: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("a\rb\nc\0d", "a b c d"),
        ("  padded\t", "padded"),
        ("", "upstream unavailable"),
        ("\u{85}", "upstream unavailable"),
    ];
    for (reason, want) in cases {
        assert_eq!(sanitize_reason(reason), *want, "{reason:?}");
    }
    // The cap never splits a UTF-8 character.
    let s = sanitize_reason(&"é".repeat(300));
    assert!(s.len() <= MAX_REASON && s.chars().all(|c| c == 'é'));
}

/// Pipelined commands after PASS stay in the buffer, untouched, for the relay.
#[test]
fn pipelined_commands_after_login_stay_in_the_buffer() {
    let mut phase = Pop3Login::new(Policy::default());
    let mut buf = BytesMut::from(&b"USER printer\r\nPASS secret\r\nSTAT\r\n"[..]);
    assert_eq!(phase.advance(&mut buf), Action::Reply(USER_OK.to_vec()));
    let Action::Login(creds) = phase.advance(&mut buf) else {
        panic!("expected a login");
    };
    assert_eq!(creds.user, "printer");
    assert_eq!(creds.password.expose(), b"secret");
    // Waiting for the result: nothing more is read.
    assert_eq!(phase.advance(&mut buf), Action::NeedMore);
    assert_eq!(&buf[..], b"STAT\r\n");
    let result = phase.login_result(LoginOutcome::Success { capabilities: None });
    assert_eq!(result, Action::Reply(LOGGED_IN.to_vec()));
    assert_eq!(phase.advance(&mut buf), Action::NeedMore);
    assert_eq!(&buf[..], b"STAT\r\n");
}

/// After STLS nothing buffered is interpreted until the handshake is reported.
#[test]
fn nothing_is_read_between_stls_and_the_handshake() {
    let mut phase = Pop3Login::new(Policy::default());
    let mut buf = BytesMut::from(&b"STLS\r\nUSER printer\r\n"[..]);
    assert_eq!(
        phase.advance(&mut buf),
        Action::StartTls(STLS_BEGIN.to_vec())
    );
    assert_eq!(phase.advance(&mut buf), Action::NeedMore);
    assert_eq!(&buf[..], b"USER printer\r\n");
    // The pipeline drops the plaintext leftovers (RFC 2595 §4) and reads over TLS.
    buf.clear();
    phase.tls_started();
    buf.extend_from_slice(b"CAPA\r\n");
    assert_eq!(
        phase.advance(&mut buf),
        Action::Reply(CAPA_NO_STLS.as_bytes().to_vec())
    );
}

#[test]
fn fixed_replies() {
    let phase = Pop3Login::new(Policy::default());
    assert_eq!(Pop3Login::PROTOCOL, Protocol::Pop3);
    assert_eq!(phase.greeting(), G.as_bytes());
    assert_eq!(
        phase.timeout_reply(),
        b"-ERR Autologout; idle for too long\r\n"
    );
    assert_eq!(phase.shutdown_reply(), b"-ERR Server shutting down\r\n");
}

#[test]
fn a_login_result_nobody_asked_for_closes() {
    let mut phase = Pop3Login::new(Policy::default());
    assert_eq!(
        phase.login_result(LoginOutcome::BadCredentials),
        Action::Close(INTERNAL_ERROR.to_vec())
    );
    let mut buf = BytesMut::from(&b"CAPA\r\n"[..]);
    assert_eq!(phase.advance(&mut buf), Action::NeedMore);
}

/// Pieces of plausible client input, mixed with random bytes by the proptest.
const FRAGMENTS: &[&[u8]] = &[
    b"USER printer\r\n",
    b"PASS secret\r\n",
    b"PASS wrong pw\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH\r\n",
    b"AHByaW50ZXIAc2VjcmV0\r\n",
    b"cHJpbnRlcg==\r\n",
    b"*\r\n",
    b"=\r\n",
    b"STLS\r\n",
    b"CAPA\r\n",
    b"STAT\r\n",
    b"\r\n",
    b"\n",
    b"\r",
];

const FUZZ_MAX_LINE: usize = 64;

/// Feeds `input` in `chunk`-byte pieces, answering logins in turn with every outcome,
/// and checks that the machine never holds more than one line's worth of input.
fn fuzz(mode: StartTlsMode, input: &[u8], chunk: usize) {
    let mut phase = Pop3Login::new(Policy {
        starttls: mode,
        max_line: FUZZ_MAX_LINE,
        ..Policy::default()
    });
    let outcomes = [
        LoginOutcome::BadCredentials,
        LoginOutcome::UpstreamUnavailable {
            reason: "down\r\n".into(),
        },
        LoginOutcome::UpstreamRejected,
        LoginOutcome::TooManyFailures,
        LoginOutcome::Success { capabilities: None },
    ];
    let mut logins = 0;
    let mut buf = BytesMut::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match phase.advance(&mut buf) {
                Action::NeedMore => {
                    assert!(
                        buf.len() <= FUZZ_MAX_LINE + 1,
                        "buffer grew to {}",
                        buf.len()
                    );
                    break;
                }
                Action::Reply(bytes) => assert!(bytes.ends_with(b"\r\n")),
                Action::StartTls(bytes) => {
                    assert!(bytes.ends_with(b"\r\n"));
                    phase.tls_started();
                }
                Action::Login(_) => {
                    let outcome = outcomes[logins % outcomes.len()].clone();
                    logins += 1;
                    let success = matches!(outcome, LoginOutcome::Success { .. });
                    match phase.login_result(outcome) {
                        Action::Reply(_) if success => {
                            let left = buf.clone();
                            assert_eq!(phase.advance(&mut buf), Action::NeedMore);
                            assert_eq!(buf, left);
                            return;
                        }
                        Action::Reply(_) => {}
                        Action::Close(_) => return,
                        other => panic!("login_result gave {other:?}"),
                    }
                }
                Action::Close(_) | Action::CrossProtocol(_) => return,
                Action::Proceed => panic!("POP3 never proceeds without login"),
            }
        }
    }
}

fn any_mode() -> impl Strategy<Value = StartTlsMode> {
    prop_oneof![
        Just(StartTlsMode::Off),
        Just(StartTlsMode::Optional),
        Just(StartTlsMode::Required),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        mode in any_mode(),
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..600,
    ) {
        fuzz(mode, &input, chunk);
    }

    #[test]
    fn random_command_mixes_never_panic(
        mode in any_mode(),
        pieces in proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec),
                1 => proptest::collection::vec(any::<u8>(), 0..100),
            ],
            0..40,
        ),
        chunk in 1usize..80,
    ) {
        fuzz(mode, &pieces.concat(), chunk);
    }
}
