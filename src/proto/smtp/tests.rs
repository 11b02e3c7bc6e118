//! Table tests of the SMTP login phase, each script replayed at chunk sizes 1..512.

use super::*;
use crate::proto::testkit::{login, o, printer_secret, replay, Event};

fn policy(starttls: StartTlsMode, allow: bool) -> Policy {
    Policy {
        starttls,
        allow_unauthenticated: allow,
        smtp_size: Some(73_400_320),
        ..Policy::default()
    }
}

const GREETING: &str = "220 localhost ESMTP qqmail-proxy\r\n";
const EHLO_FULL: &str = "250-localhost Hello pc\r\n250-PIPELINING\r\n250-SIZE 73400320\r\n\
250-8BITMIME\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_NO_AUTH: &str = "250-localhost Hello pc\r\n250-PIPELINING\r\n250-SIZE 73400320\r\n\
250-8BITMIME\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_TLS: &str = "250-localhost Hello pc\r\n250-PIPELINING\r\n250-SIZE 73400320\r\n\
250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_OFF: &str = "250-localhost Hello pc\r\n250-PIPELINING\r\n250-SIZE 73400320\r\n\
250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n";

fn cat(parts: &[&str]) -> Event {
    o(&parts.concat())
}

#[test]
fn scripts() {
    use StartTlsMode::*;
    // \0printer\0secret and \0printer\0wrong
    let good = "AHByaW50ZXIAc2VjcmV0";
    let bad = "AHByaW50ZXIAd3Jvbmc=";
    let cases: Vec<(StartTlsMode, bool, String, Vec<Event>)> = vec![
        (
            Optional,
            false,
            format!("EHLO pc\r\nAUTH PLAIN {good}\r\n"),
            vec![cat(&[GREETING, EHLO_FULL]), login("printer", "secret"), o(reply::AUTH_OK), Event::Relay],
        ),
        (
            Optional,
            false,
            format!("EHLO pc\r\nAUTH PLAIN\r\n{good}\r\n"),
            vec![cat(&[GREETING, EHLO_FULL, "334 \r\n"]), login("printer", "secret"), o(reply::AUTH_OK), Event::Relay],
        ),
        (
            // AUTH LOGIN, with the HELO a legacy printer sends.
            Optional,
            false,
            "HELO scanner\r\nAUTH LOGIN\r\ncHJpbnRlcg==\r\nc2VjcmV0\r\n".into(),
            vec![
                cat(&[GREETING, "250 localhost\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"]),
                login("printer", "secret"),
                o(reply::AUTH_OK),
                Event::Relay,
            ],
        ),
        (
            Optional,
            false,
            "EHLO pc\r\nAUTH LOGIN cHJpbnRlcg==\r\nc2VjcmV0\r\n".into(),
            vec![cat(&[GREETING, EHLO_FULL, "334 UGFzc3dvcmQ6\r\n"]), login("printer", "secret"), o(reply::AUTH_OK), Event::Relay],
        ),
        (
            // Wrong password, then the right one.
            Optional,
            false,
            format!("EHLO pc\r\nAUTH PLAIN {bad}\r\nAUTH PLAIN {good}\r\n"),
            vec![
                cat(&[GREETING, EHLO_FULL]),
                login("printer", "wrong"),
                o(reply::AUTH_FAILED),
                login("printer", "secret"),
                o(reply::AUTH_OK),
                Event::Relay,
            ],
        ),
        (
            Optional,
            false,
            "EHLO pc\r\nAUTH LOGIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\nQUIT\r\n".into(),
            vec![
                cat(&[GREETING, EHLO_FULL, "334 VXNlcm5hbWU6\r\n", reply::CANCELLED, reply::MECHANISM, reply::BAD_BASE64, reply::BYE]),
                Event::Close,
            ],
        ),
        (
            // AUTH before EHLO, MAIL without AUTH from a non-allowed client.
            Optional,
            false,
            "AUTH PLAIN x\r\nMAIL FROM:<a@b.c>\r\nEHLO pc\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nQUIT\r\n".into(),
            vec![
                cat(&[
                    GREETING,
                    reply::EHLO_FIRST,
                    reply::EHLO_FIRST,
                    EHLO_FULL,
                    reply::AUTH_REQUIRED,
                    reply::AUTH_REQUIRED,
                    reply::AUTH_REQUIRED,
                    reply::BYE,
                ]),
                Event::Close,
            ],
        ),
        (
            // An allow-listed printer: MAIL without AUTH proceeds to the relay.
            Optional,
            true,
            "EHLO pc\r\nMAIL FROM:<scanner@printer.local>\r\nRCPT TO:<x@y.z>\r\n".into(),
            vec![cat(&[GREETING, EHLO_FULL]), Event::Proceed],
        ),
        (
            // STARTTLS required: no AUTH offered or accepted before TLS; fine after.
            Required,
            false,
            format!("EHLO pc\r\nAUTH PLAIN {good}\r\nSTARTTLS\r\nEHLO pc\r\nAUTH PLAIN {good}\r\n"),
            vec![
                cat(&[GREETING, EHLO_NO_AUTH, reply::TLS_FIRST, reply::TLS_READY]),
                Event::StartTls,
                cat(&[EHLO_TLS]),
                login("printer", "secret"),
                o(reply::AUTH_OK),
                Event::Relay,
            ],
        ),
        (
            // After STARTTLS the client must EHLO again; STARTTLS twice is refused.
            Optional,
            false,
            "EHLO pc\r\nSTARTTLS\r\nAUTH PLAIN x\r\nEHLO pc\r\nSTARTTLS\r\nQUIT\r\n".into(),
            vec![
                cat(&[GREETING, EHLO_FULL, reply::TLS_READY]),
                Event::StartTls,
                cat(&[reply::EHLO_FIRST, EHLO_TLS, reply::ALREADY_TLS, reply::BYE]),
                Event::Close,
            ],
        ),
        (
            Off,
            false,
            "ehlo pc\r\nstarttls\r\nnoop\r\nrset\r\nvrfy x\r\nhelp\r\nBDAT 1\r\nfoo\r\n\u{ff}\u{fe}\u{1}\r\nquit\r\n".into(),
            vec![
                cat(&[
                    GREETING,
                    EHLO_OFF,
                    reply::NO_TLS,
                    reply::OK,
                    reply::OK,
                    reply::VRFY,
                    reply::HELP,
                    reply::AUTH_REQUIRED,
                    reply::UNKNOWN,
                    reply::CONTROL,
                    reply::BYE,
                ]),
                Event::Close,
            ],
        ),
    ];
    for (mode, allow, script, want) in cases {
        let got = replay(
            || SmtpLogin::new(policy(mode, allow)),
            script.as_bytes(),
            &printer_secret,
        );
        assert_eq!(got, want, "script {script:?}");
    }
}

#[test]
fn every_outcome_has_its_reply() {
    let table: Vec<(LoginOutcome, Action)> = vec![
        (
            LoginOutcome::Success { capabilities: None },
            Action::Reply(reply::AUTH_OK.into()),
        ),
        (
            LoginOutcome::BadCredentials,
            Action::Reply(reply::AUTH_FAILED.into()),
        ),
        (
            LoginOutcome::TooManyFailures,
            Action::Close(reply::TOO_MANY_FAILURES.into()),
        ),
        (
            LoginOutcome::UpstreamUnavailable {
                reason: "cannot reach smtp.qq.com:465\r\nx".into(),
            },
            Action::Reply(b"454 4.7.0 cannot reach smtp.qq.com:465  x\r\n".to_vec()),
        ),
        (
            LoginOutcome::UpstreamRejected,
            Action::Reply(
                b"454 4.7.0 upstream rejected the stored authorization code\r\n".to_vec(),
            ),
        ),
    ];
    for (outcome, want) in table {
        let mut s = SmtpLogin::new(Policy::default());
        assert_eq!(s.login_result(outcome.clone()), want, "{outcome:?}");
    }
}

#[test]
fn pipelined_mail_after_proceed_stays_in_the_buffer() {
    let mut s = SmtpLogin::new(policy(StartTlsMode::Optional, true));
    let mut buf =
        BytesMut::from(&b"EHLO pc\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n"[..]);
    assert!(matches!(s.advance(&mut buf), Action::Reply(_)));
    assert_eq!(s.advance(&mut buf), Action::Proceed);
    assert_eq!(
        &buf[..],
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n"
    );
    assert_eq!(s.advance(&mut buf), Action::NeedMore);
}

#[test]
fn nothing_is_consumed_after_success() {
    let mut s = SmtpLogin::new(Policy::default());
    let mut buf =
        BytesMut::from(&b"EHLO pc\r\nAUTH PLAIN AHByaW50ZXIAc2VjcmV0\r\nMAIL FROM:<a@b.c>\r\n"[..]);
    assert!(matches!(s.advance(&mut buf), Action::Reply(_)));
    assert!(matches!(s.advance(&mut buf), Action::Login(_)));
    assert_eq!(s.advance(&mut buf), Action::NeedMore);
    assert!(matches!(
        s.login_result(LoginOutcome::Success { capabilities: None }),
        Action::Reply(_)
    ));
    assert_eq!(s.advance(&mut buf), Action::NeedMore);
    assert_eq!(&buf[..], b"MAIL FROM:<a@b.c>\r\n");
}

#[test]
fn overlong_lines_and_error_limit() {
    let mut script = b"EHLO pc\r\n".to_vec();
    script.extend(std::iter::repeat_n(b'x', 1 << 20));
    script.extend_from_slice(b"\r\nNOOP\r\n");
    let got = replay(
        || SmtpLogin::new(Policy::default()),
        &script,
        &printer_secret,
    );
    assert_eq!(
        got,
        vec![cat(&[
            GREETING,
            &EHLO_FULL.replace("SIZE 73400320", "SIZE"),
            reply::TOO_LONG,
            reply::OK
        ])]
    );

    let garbage = "junk\r\n".repeat(MAX_ERRORS as usize + 5);
    let got = replay(
        || SmtpLogin::new(Policy::default()),
        garbage.as_bytes(),
        &printer_secret,
    );
    let mut want = GREETING.to_string();
    want.push_str(&reply::UNKNOWN.repeat(MAX_ERRORS as usize - 1));
    want.push_str(reply::TOO_MANY_ERRORS);
    assert_eq!(got, vec![o(&want), Event::Close]);
}

proptest::proptest! {
    #[test]
    fn random_input_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048), chunk in 1usize..64) {
        let mut s = SmtpLogin::new(Policy { max_line: 512, ..Policy::default() });
        let mut buf = BytesMut::new();
        for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            for _ in 0..64 {
                match s.advance(&mut buf) {
                    Action::NeedMore | Action::Close(_) | Action::CrossProtocol(_) | Action::Proceed => break,
                    Action::Login(_) => { let _ = s.login_result(LoginOutcome::BadCredentials); }
                    Action::StartTls(_) => s.tls_started(),
                    Action::Reply(_) => {}
                }
            }
            proptest::prop_assert!(buf.len() <= 512 + 2 + chunk);
        }
    }
}
