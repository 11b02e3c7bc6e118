use super::*;

use Class::*;
use Scope::{Account, Message, Recipient};
use Stage::*;

fn reply(stage: Stage, text: &'static [u8]) -> Outcome<'static> {
    Outcome::Reply {
        stage,
        code: reply_code(text).unwrap_or(0),
        text,
    }
}

#[test]
fn the_table() {
    let cases: Vec<(Outcome<'static>, Class, Scope, bool)> = vec![
        // Success at each step.
        (
            reply(EndOfData, b"250 OK: queued as 1\r\n"),
            Delivered,
            Message,
            false,
        ),
        (reply(Rcpt, b"250 OK\r\n"), Delivered, Recipient, false),
        (
            reply(Data, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
            Delivered,
            Message,
            false,
        ),
        (
            reply(Auth, b"235 Authentication successful\r\n"),
            Delivered,
            Account,
            false,
        ),
        // No session at all, or a broken one.
        (Outcome::Unreachable, Temporary, Account, false),
        (Outcome::Dropped(Greeting), Temporary, Account, false),
        (Outcome::Dropped(Data), Temporary, Message, false),
        (Outcome::Dropped(Rcpt), Temporary, Message, false),
        // The final dot went out and nothing came back.
        (Outcome::NoFinalReply, Temporary, Message, true),
        // 4xx and 421 anywhere.
        (
            reply(Greeting, b"421 Service not available\r\n"),
            Temporary,
            Account,
            false,
        ),
        (
            reply(Mail, b"421 4.7.0 Try again later\r\n"),
            Temporary,
            Message,
            false,
        ),
        (
            reply(Rcpt, b"450 Mailbox busy\r\n"),
            Temporary,
            Recipient,
            false,
        ),
        (
            reply(EndOfData, b"451 Local error\r\n"),
            Temporary,
            Message,
            false,
        ),
        (
            reply(Auth, b"454 Temporary authentication failure\r\n"),
            Temporary,
            Account,
            false,
        ),
        // QQ's rate limits: 550 but temporary, account-wide.
        (
            reply(Greeting, b"550 Connection frequency limited\r\n"),
            RateLimited,
            Account,
            false,
        ),
        (
            reply(Auth, b"550 Ip frequency limited\r\n"),
            RateLimited,
            Account,
            false,
        ),
        (
            reply(Mail, b"550 Sender frequency limited\r\n"),
            RateLimited,
            Account,
            false,
        ),
        (
            reply(Rcpt, b"550 Domain frequency limited\r\n"),
            RateLimited,
            Account,
            false,
        ),
        (
            reply(EndOfData, b"550 5.7.1 Ip Frequency Limited [xyz]\r\n"),
            RateLimited,
            Account,
            false,
        ),
        (
            reply(Mail, b"550-Sender frequency limited\r\n550 see help\r\n"),
            RateLimited,
            Account,
            false,
        ),
        // The stored code refused.
        (
            reply(
                Auth,
                b"535 Login Fail. Please enter your authorization code to login.\r\n",
            ),
            CodeRefused,
            Account,
            false,
        ),
        (
            reply(Auth, b"535 \xb5\xc7\xc2\xbc\xca\xa7\xb0\xdc\r\n"),
            CodeRefused,
            Account,
            false,
        ),
        // Other 5xx before MAIL concern the session, not the message.
        (
            reply(Greeting, b"554 No SMTP service here\r\n"),
            Temporary,
            Account,
            false,
        ),
        (
            reply(Ehlo, b"502 Command not implemented\r\n"),
            Temporary,
            Account,
            false,
        ),
        (
            reply(Auth, b"530 Must issue STARTTLS first\r\n"),
            Temporary,
            Account,
            false,
        ),
        // Other 5xx about the message: permanent.
        (
            reply(
                Mail,
                b"501 Mail from address must be same as authorization user\r\n",
            ),
            Permanent,
            Message,
            false,
        ),
        (
            reply(Rcpt, b"550 Mailbox not found or access denied\r\n"),
            Permanent,
            Recipient,
            false,
        ),
        (
            reply(Rcpt, b"553 \xd3\xca\xcf\xe4\xb2\xbb\xb4\xe6\xd4\xda\r\n"),
            Permanent,
            Recipient,
            false,
        ),
        (
            reply(Data, b"554 Transaction failed\r\n"),
            Permanent,
            Message,
            false,
        ),
        (
            reply(EndOfData, b"552 Message size exceeds fixed limit\r\n"),
            Permanent,
            Message,
            false,
        ),
        (
            reply(
                EndOfData,
                b"550 The \"From\" header is missing or invalid\r\n",
            ),
            Permanent,
            Message,
            false,
        ),
        // 535 outside AUTH is an ordinary 5xx.
        (reply(Mail, b"535 odd\r\n"), Permanent, Message, false),
        // A nonsense code: not a reason to bounce.
        (reply(EndOfData, b"699 what\r\n"), Temporary, Message, false),
    ];
    for (outcome, class, scope, dup) in cases {
        let want = Decision {
            class,
            scope,
            possibly_duplicated: dup,
        };
        assert_eq!(classify(&outcome), want, "{outcome:?}");
    }
}

#[test]
fn class_tokens_round_trip() {
    for c in [Delivered, Temporary, RateLimited, CodeRefused, Permanent] {
        assert_eq!(Class::from_token(c.as_str()), Some(c));
    }
    assert_eq!(Class::from_token("Temporary"), None);
}

#[test]
fn login_errors_map_to_outcomes() {
    let server = || "smtp.qq.com:465".to_string();
    let email = || "a@qq.com".to_string();
    let cases: Vec<(UpstreamError, Class, Scope)> = vec![
        (
            UpstreamError::Connect {
                server: server(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            },
            Temporary,
            Account,
        ),
        (
            UpstreamError::Timeout {
                server: server(),
                stage: "greeting",
                secs: 30,
            },
            Temporary,
            Account,
        ),
        (
            UpstreamError::Rejected {
                server: server(),
                email: email(),
                reply: b"535 Login Fail.\r\n".to_vec(),
            },
            CodeRefused,
            Account,
        ),
        (
            UpstreamError::Refused {
                server: server(),
                reply: b"550 Connection frequency limited\r\n".to_vec(),
            },
            RateLimited,
            Account,
        ),
        (
            UpstreamError::TempFail {
                server: server(),
                email: email(),
                reply: b"451 busy\r\n".to_vec(),
            },
            Temporary,
            Account,
        ),
        (
            UpstreamError::Closed {
                server: server(),
                stage: "AUTH",
                detail: "reset".into(),
            },
            Temporary,
            Account,
        ),
    ];
    for (e, class, scope) in cases {
        let d = classify(&Outcome::from_login_error(&e));
        assert_eq!((d.class, d.scope), (class, scope), "{e}");
    }
}
