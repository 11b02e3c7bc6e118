//! Table tests of the rules the three login phases share against hostile input (issue 16):
//! HTTP lines close the session at once, control bytes are refused, and protocol errors
//! are capped. Every script is replayed at chunk sizes 1..512 (see `testkit`).

use super::imap::ImapLogin;
use super::pop3::Pop3Login;
use super::smtp::SmtpLogin;
use super::testkit::{login, o, printer_secret, replay, Event};
use super::{LoginPhase, Policy, StartTlsMode, MAX_ERRORS};

/// A browser's POST whose body is pipelined SMTP, as a web page can send it.
const BROWSER_POST: &str = "POST / HTTP/1.1\r\nHost: 127.0.0.1:2525\r\nConnection: keep-alive\r\n\
Content-Length: 93\r\nContent-Type: text/plain\r\nOrigin: http://evil.example\r\n\r\n\
EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nspam\r\n.\r\n";

fn policy(allow_unauthenticated: bool) -> Policy {
    Policy {
        starttls: StartTlsMode::Off,
        allow_unauthenticated,
        ..Policy::default()
    }
}

fn smtp(script: &str) -> Vec<Event> {
    replay(
        || SmtpLogin::new(policy(true)),
        script.as_bytes(),
        &printer_secret,
    )
}

fn imap(script: &[u8]) -> Vec<Event> {
    replay(|| ImapLogin::new(policy(false)), script, &printer_secret)
}

fn pop3(script: &[u8]) -> Vec<Event> {
    replay(|| Pop3Login::new(policy(false)), script, &printer_secret)
}

fn greeting<P: LoginPhase>(make: impl Fn(Policy) -> P) -> String {
    String::from_utf8(make(policy(false)).greeting()).unwrap()
}

#[test]
fn http_closes_every_protocol_at_once() {
    let smtp_g = greeting(SmtpLogin::new);
    let imap_g = greeting(ImapLogin::new);
    let pop3_g = greeting(Pop3Login::new);
    let smtp_no =
        "221 2.7.0 Error: HTTP request refused; this is an SMTP server, closing connection\r\n";
    let imap_no = "* BYE HTTP request refused; this is an IMAP server\r\n";
    let pop3_no = "-ERR HTTP request refused; this is a POP3 server\r\n";
    let closed = |text: String| vec![o(&text), Event::CrossProtocol];
    let ehlo = "250-localhost Hello pc\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n\
250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n";
    let cases: Vec<(Vec<Event>, Vec<Event>)> = vec![
        // The request line: never the body's MAIL (which would Proceed).
        (smtp(BROWSER_POST), closed(smtp_g.clone() + smtp_no)),
        (smtp("GET\r\nEHLO x\r\n"), closed(smtp_g.clone() + smtp_no)),
        (
            smtp("EHLO pc\r\nOPTIONS * HTTP/1.1\r\nMAIL FROM:<a@b.c>\r\n"),
            closed(smtp_g.clone() + ehlo + smtp_no),
        ),
        // A header alone (the request line may have been dropped as too long).
        (
            smtp("Host: gw:2525\r\nMAIL FROM:<a@b.c>\r\n"),
            closed(smtp_g.clone() + smtp_no),
        ),
        (
            imap(BROWSER_POST.as_bytes()),
            closed(imap_g.clone() + imap_no),
        ),
        (
            imap(b"a NOOP\r\nUser-Agent: Mozilla/5.0\r\na LOGIN printer secret\r\n"),
            closed(imap_g.clone() + "a OK NOOP completed\r\n" + imap_no),
        ),
        (
            pop3(BROWSER_POST.as_bytes()),
            closed(pop3_g.clone() + pop3_no),
        ),
        (
            pop3(b"GET /\r\nUSER printer\r\n"),
            closed(pop3_g.clone() + pop3_no),
        ),
        (
            pop3(b"USER printer\r\nContent-Type: text/plain\r\nPASS secret\r\n"),
            closed(pop3_g.clone() + "+OK Send PASS\r\n" + pop3_no),
        ),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn control_bytes_are_refused_and_never_interpreted() {
    let smtp_g = greeting(SmtpLogin::new);
    let imap_g = greeting(ImapLogin::new);
    let pop3_g = greeting(Pop3Login::new);
    let s501 = "501 5.5.2 Syntax error: control characters are not allowed\r\n";
    let bye = "221 2.0.0 Bye\r\n";
    let helo = "250 localhost\r\n";
    let i_bad = "a BAD Syntax error: control characters are not allowed\r\n";
    let p_err = "-ERR Syntax error: control characters are not allowed\r\n";
    let cases: Vec<(Vec<Event>, Vec<Event>)> = vec![
        // A MAIL that would have proceeded to the relay with a CR in its parameters.
        (
            smtp("HELO pc\r\nMAIL FROM:<a@b.c> SIZE=1\rRCPT TO:<x@y.z>\r\nQUIT\r\n"),
            vec![o(&(smtp_g.clone() + helo + s501 + bye)), Event::Close],
        ),
        (
            smtp("HELO pc\r\nMAIL FROM:<a@b.c> X=\0\r\nQUIT\r\n"),
            vec![o(&(smtp_g.clone() + helo + s501 + bye)), Event::Close],
        ),
        (
            smtp("EHLO a\x1b[2Kb\r\nQUIT\r\n"),
            vec![o(&(smtp_g.clone() + s501 + bye)), Event::Close],
        ),
        // IMAP: a quoted password with a control byte; a tag-less line; a literal that
        // is refused before it is sent; a non-synchronising one that cannot be refused.
        (
            imap(b"a LOGIN printer \"sec\rret\"\r\na LOGOUT\r\n"),
            vec![
                o(&(imap_g.clone()
                    + i_bad
                    + "* BYE qqmail-proxy logging out\r\n"
                    + "a OK LOGOUT completed\r\n")),
                Event::Close,
            ],
        ),
        (
            imap(b"\x01\r\n"),
            vec![o(&(imap_g.clone() + "* BAD Invalid command\r\n"))],
        ),
        (
            imap(b"a LOGIN pr\x00inter {6}\r\n"),
            vec![o(&(imap_g.clone() + i_bad))],
        ),
        (
            imap(b"a LOGIN pr\x00inter {6+}\r\nsecret\r\n"),
            vec![
                o(&(imap_g.clone() + "* BYE Control characters are not allowed\r\n")),
                Event::Close,
            ],
        ),
        // The line after a literal is checked as well.
        (
            imap(b"a LOGIN {7}\r\nprinter \"x\x01\"\r\n"),
            vec![o(&(imap_g.clone()
                + "+ Ready for literal data\r\n"
                + i_bad))],
        ),
        // Literal contents are octets, never checked: a password may hold anything.
        (
            imap(b"a LOGIN printer {7}\r\nse\x01cret\r\n"),
            vec![
                o(&(imap_g.clone() + "+ Ready for literal data\r\n")),
                login("printer", "se\x01cret"),
                o("a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"),
            ],
        ),
        // POP3: the pending USER survives a refused PASS.
        (
            pop3(b"USER printer\r\nPASS sec\0ret\r\nPASS secret\r\n"),
            vec![
                o(&(pop3_g.clone() + "+OK Send PASS\r\n" + p_err)),
                login("printer", "secret"),
                o("+OK Logged in\r\n"),
                Event::Relay,
            ],
        ),
        (
            pop3(b"USER print\rer\r\n"),
            vec![o(&(pop3_g.clone() + p_err))],
        ),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn errors_before_login_are_capped_in_imap_and_pop3() {
    let n = MAX_ERRORS as usize;
    let imap_bad = "a BAD Command not valid before login\r\n";
    let got = imap("a SELECT INBOX\r\n".repeat(n + 5).as_bytes());
    let want =
        greeting(ImapLogin::new) + &imap_bad.repeat(n) + "* BYE Too many invalid commands\r\n";
    assert_eq!(got, vec![o(&want), Event::Close]);

    let pop3_bad = "-ERR Command not valid before login\r\n";
    let got = pop3("STAT\r\n".repeat(n + 5).as_bytes());
    let want =
        greeting(Pop3Login::new) + &pop3_bad.repeat(n - 1) + "-ERR Too many invalid commands\r\n";
    assert_eq!(got, vec![o(&want), Event::Close]);

    // Commands that succeed are not errors (the pre-auth deadline bounds those).
    let got = pop3("CAPA\r\n".repeat(n + 5).as_bytes());
    assert_eq!(got.len(), 1, "{got:?}");
}
