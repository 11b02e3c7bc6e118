//! Issue 17 item 1: devices that end every line with a bare LF. Raw sessions replayed as
//! tables (bytes in -> replies out, then the message the upstream recorded): a session
//! whose every command line ended in a bare LF may end DATA with `\n.\n` and its message
//! arrives with CRLF line ends; a session that has sent CRLF keeps the strict rule, so
//! `\n.\n` in its body is still refused with nothing delivered (the smuggling cases of
//! `data_rules` and `transfer` are unchanged).

use super::*;

const SMUGGLING_554: &str = "554 5.6.11 ";

/// One exchange: bytes sent as one write, then the start of each reply expected.
type Step = (Vec<u8>, &'static [&'static str]);

struct Case {
    name: &'static str,
    /// The client's address is allow-listed (no AUTH; its first MAIL ends the login phase).
    allow_listed: bool,
    steps: Vec<Step>,
    /// The DATA the upstream recorded (still dot-stuffed, without the final CRLF), or
    /// `None`: nothing delivered.
    delivered: Option<&'static [u8]>,
}

fn auth(end: &str) -> Vec<u8> {
    format!(
        "AUTH PLAIN {}{end}",
        b64(format!("\0{USER}\0{PASSWORD}").as_bytes())
    )
    .into_bytes()
}

fn line(text: &str, end: &str) -> Vec<u8> {
    format!("{text}{end}").into_bytes()
}

fn cases() -> Vec<Case> {
    let mail = format!("MAIL FROM:<{SENDER}>");
    let rcpt = format!("RCPT TO:<{RCPT}>");
    let lf = |t: &str| line(t, "\n");
    let crlf = |t: &str| line(t, "\r\n");
    vec![
        Case {
            allow_listed: false,
            name: "LF-only device, one command per write, greeting to QUIT",
            steps: vec![
                (lf("EHLO printer"), &["250-"]),
                (auth("\n"), &["235 "]),
                (lf(&mail), &["250 "]),
                (lf(&rcpt), &["250 "]),
                (lf("DATA"), &["354 "]),
                (
                    b"Subject: scan\n\npage 1\n..leading dot\n\nend\n.\n".to_vec(),
                    &["250 "],
                ),
                (lf("QUIT"), &["221 "]),
            ],
            delivered: Some(b"Subject: scan\r\n\r\npage 1\r\n..leading dot\r\n\r\nend"),
        },
        Case {
            allow_listed: false,
            name: "LF-only device, HELO, message and QUIT in one write",
            steps: vec![
                (lf("HELO printer"), &["250 "]),
                (auth("\n"), &["235 "]),
                (
                    [lf(&mail), lf(&rcpt), lf("DATA")].concat(),
                    &["250 ", "250 ", "354 "],
                ),
                (b"Subject: x\n\nscan\n.\nQUIT\n".to_vec(), &["250 ", "221 "]),
            ],
            delivered: Some(b"Subject: x\r\n\r\nscan"),
        },
        Case {
            allow_listed: false,
            name: "mixed session (CRLF at EHLO): \\n.\\n in the body is still refused",
            steps: vec![
                (crlf("EHLO printer"), &["250-"]),
                (auth("\n"), &["235 "]),
                ([lf(&mail), lf(&rcpt)].concat(), &["250 ", "250 "]),
                (lf("DATA"), &["354 "]),
                (
                    b"Subject: s\n\na\n.\nMAIL FROM:<evil@example.com>\r\nsmuggled\r\n.\r\n"
                        .to_vec(),
                    &[SMUGGLING_554],
                ),
                (lf("QUIT"), &["221 "]),
            ],
            delivered: None,
        },
        Case {
            allow_listed: false,
            name: "LF-only device: a bare-CR dot line is still refused",
            steps: vec![
                (lf("EHLO printer"), &["250-"]),
                (auth("\n"), &["235 "]),
                (
                    [lf(&mail), lf(&rcpt), lf("DATA")].concat(),
                    &["250 ", "250 ", "354 "],
                ),
                (
                    b"Subject: s\n\na\r.\rMAIL FROM:<evil@example.com>\nsmuggled\n.\n".to_vec(),
                    &[SMUGGLING_554],
                ),
                (lf("QUIT"), &["221 "]),
            ],
            delivered: None,
        },
        Case {
            allow_listed: true,
            name: "LF-only allow-listed device: its first MAIL keeps its bare LF",
            steps: vec![
                (lf("EHLO printer"), &["250-"]),
                (
                    [lf(&mail), lf(&rcpt), lf("DATA")].concat(),
                    &["250 ", "250 ", "354 "],
                ),
                (b"Subject: y\n\nscan\n.\n".to_vec(), &["250 "]),
                (lf("QUIT"), &["221 "]),
            ],
            delivered: Some(b"Subject: y\r\n\r\nscan"),
        },
    ]
}

#[tokio::test]
async fn bare_lf_sessions_replayed() {
    for case in cases() {
        let gw = if case.allow_listed {
            Gateway::with(SmtpOptions::implicit, |b| {
                b.allow_unauthenticated(&["127.0.0.1/32"], "main")
            })
            .await
        } else {
            Gateway::start().await
        };
        let mut c = gw.client().await;
        for (bytes, replies) in &case.steps {
            c.send(bytes).await;
            for want in *replies {
                let got = c.reply().await;
                assert!(
                    got.starts_with(want),
                    "{}: after {:?}: got {got:?}, want {want:?}",
                    case.name,
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        match case.delivered {
            Some(data) => {
                let got = gw.fake.wait_messages(1, WAIT).await;
                assert_relayed(&got[0], &[RCPT], data);
            }
            None => {
                let cut = gw.fake.wait_cut_off_data(1, WAIT).await;
                assert!(
                    !String::from_utf8_lossy(&cut[0]).contains("evil"),
                    "{}: the smuggled part reached the upstream: {:?}",
                    case.name,
                    String::from_utf8_lossy(&cut[0])
                );
                assert!(gw.fake.messages().is_empty(), "{}", case.name);
                let cmds = gw.fake.commands();
                assert!(
                    !cmds.iter().any(|c| c.contains("evil")),
                    "{}: {cmds:#?}",
                    case.name
                );
            }
        }
        // Every line of the session is in the log once its end is.
        gw.proxy.wait_for_log("session end", WAIT).await;
        let logs = gw.proxy.logs();
        let told = logs.matches("client ends its lines with a bare LF").count();
        let bare = case.name.starts_with("LF-only");
        assert_eq!(
            told,
            usize::from(bare),
            "{}: logged once per session",
            case.name
        );
        gw.assert_no_secret(&[]);
    }
}
