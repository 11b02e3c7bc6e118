//! Self-tests of the config builder and of the proxy harness's log parsing, readiness
//! tracking and secret scanning, on canned input (the proxy itself is tested elsewhere).

use std::time::Duration;

use argon2::{PasswordHash, PasswordVerifier};

use crate::support::ca::TestCa;
use crate::support::config::{toml_str, Account, CaFile, ConfigBuilder};
use crate::support::proxy::{parse_log_line, secret_forms, Launch, Proxy, Readiness};
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE};

const LISTENING: &str = r#"{"timestamp":"2025-01-01T00:00:00.000000Z","level":"INFO","fields":{"message":"listening","protocol":"smtp","addr":"127.0.0.1:40001"},"target":"qqmail_proxy::server"}"#;

#[test]
fn parses_the_contract_line() {
    let event = parse_log_line(LISTENING).expect("JSON event");
    assert_eq!(event.level.as_deref(), Some("INFO"));
    assert_eq!(event.target.as_deref(), Some("qqmail_proxy::server"));
    assert_eq!(event.message(), Some("listening"));
    assert_eq!(event.field("protocol"), Some("smtp"));
    assert_eq!(event.field("addr"), Some("127.0.0.1:40001"));
}

#[test]
fn log_lines_table() {
    // (line, message, protocol field)
    let table: &[(&str, Option<&str>, Option<&str>)] = &[
        // Reordered, with span fields that must not shadow the event's own.
        (
            r#"{"target":"t","span":{"protocol":"imap","name":"s"},"spans":[{"protocol":"imap"}],"fields":{"addr":"127.0.0.1:1","protocol":"pop3","message":"listening"},"level":"INFO"}"#,
            Some("listening"),
            Some("pop3"),
        ),
        // Flattened events put fields at the top level.
        (r#"{"level":"INFO","message":"ready","target":"x"}"#, Some("ready"), None),
        // Escapes, numbers, booleans, nulls, nested arrays and whitespace.
        (
            "{ \"fields\" : { \"message\" : \"a \\\"q\\\" \\u00e9 \\ud83d\\ude00\\n\", \"n\": -1.5e3, \"b\": true, \"z\": null, \"l\": [1, [2], {\"k\": \"v\"}] } }",
            Some("a \"q\" é 😀\n"),
            None,
        ),
        ("thread 'main' panicked at src/main.rs:1:1:", None, None),
        (r#"{"fields":{"message":"unterminated}"#, None, None),
        ("", None, None),
    ];
    for (line, message, protocol) in table {
        let event = parse_log_line(line);
        assert_eq!(event.as_ref().and_then(|e| e.message()), *message, "{line}");
        assert_eq!(
            event.as_ref().and_then(|e| e.field("protocol")),
            *protocol,
            "{line}"
        );
    }
}

#[test]
fn readiness_from_canned_stderr() {
    let stderr = [
        "some plain text before the subscriber starts",
        LISTENING,
        r#"{"level":"INFO","fields":{"message":"listening","protocol":"smtp","addr":"[::1]:40002"},"target":"s"}"#,
        r#"{"level":"INFO","fields":{"protocol":"imap","message":"listening","addr":"127.0.0.1:40003"},"target":"s"}"#,
        r#"{"level":"INFO","fields":{"message":"listening","protocol":"admin","addr":"not an addr"},"target":"s"}"#,
        r#"{"level":"DEBUG","fields":{"message":"ready to go"},"target":"s"}"#,
    ];
    let mut r = Readiness::default();
    for line in stderr {
        r.ingest(line);
    }
    assert!(!r.ready, "only the exact message `ready` counts");
    assert_eq!(
        r.addrs("smtp"),
        [
            "127.0.0.1:40001".parse().expect("a"),
            "[::1]:40002".parse().expect("b")
        ]
    );
    assert_eq!(r.addrs("imap"), ["127.0.0.1:40003".parse().expect("c")]);
    assert!(r.addrs("admin").is_empty());
    r.ingest(r#"{"fields":{"message":"ready"},"level":"INFO","target":"qqmail_proxy"}"#);
    assert!(r.ready);
}

#[test]
fn secret_forms_catch_encodings() {
    let secret = DEFAULT_CODE;
    let forms = secret_forms(secret, &[]);
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let leaks = [
        format!("password={secret}"),
        format!("AUTH LOGIN {}", b64(secret)),
        format!("AUTH PLAIN {}", b64(&format!("\0someone@qq.com\0{secret}"))),
        format!("AUTH PLAIN {}", b64(&format!("ab\0cd\0{secret}"))),
        format!("AUTH PLAIN {}", b64(&format!("a\0b\0{secret}"))),
        format!("{:?}", secret.as_bytes()),
    ];
    for leak in &leaks {
        assert!(
            forms.iter().any(|(_, f)| leak.contains(f.as_str())),
            "missed: {leak}"
        );
    }
    let clean = [
        "AUTH PLAIN <redacted>",
        "abcdefghijklmno",
        &b64("abcdefghijklmnoX"),
    ];
    for line in clean {
        assert!(
            !forms.iter().any(|(_, f)| line.contains(f.as_str())),
            "false positive: {line}"
        );
    }
}

/// The binary today is a stub that exits at once; the real one rejects this config. Either
/// way `start` must fail fast with the log rather than hang.
#[tokio::test]
#[should_panic(expected = "before `ready`")]
async fn start_fails_fast_when_the_process_exits() {
    Proxy::start("this is = not [valid toml", &[]).await;
}

/// A shell script standing in for the proxy: checks its argv and env, announces two
/// listeners and `ready` on stderr, leaks the code it was given, and logs `bye` on SIGTERM.
const STAND_IN: &str = r#"
[ "$1 $2 $3 $4" = "--log-format json serve --config" ] && [ -f "$5" ] || exit 3
[ "$RUST_LOG" = trace ] || exit 4
echo 'not json yet' >&2
echo '{"level":"INFO","fields":{"message":"listening","protocol":"smtp","addr":"127.0.0.1:40001"},"target":"x"}' >&2
echo '{"fields":{"addr":"127.0.0.1:40002","message":"listening","protocol":"imap"},"level":"INFO"}' >&2
echo '{"fields":{"message":"ready"},"level":"INFO"}' >&2
echo "stdout line $6"
sleep 60 & child=$!
bye() { kill $child; echo '{"fields":{"message":"bye"}}' >&2; exit 0; }
trap bye TERM
echo "{\"fields\":{\"message\":\"oops $QQMAIL_AUTH_CODE\"}}" >&2
wait
"#;

#[tokio::test]
async fn harness_drives_a_stand_in_process() {
    let launch = Launch::new("k = 1\n")
        .env(&[("QQMAIL_AUTH_CODE", DEFAULT_CODE)])
        .serve_args(&["extra-arg"])
        .program("sh", &["-c", STAND_IN, "stand-in"]);
    let proxy = Proxy::launch(launch).await;
    assert_eq!(proxy.smtp_addr(), "127.0.0.1:40001".parse().expect("smtp"));
    assert_eq!(proxy.imap_addr(), "127.0.0.1:40002".parse().expect("imap"));
    let line = proxy.wait_for_log("oops", Duration::from_secs(10)).await;
    assert!(line.contains("oops"));
    let leak = std::panic::catch_unwind(|| proxy.assert_no_secret(&[DEFAULT_CODE]));
    let message = leak.expect_err("the leaked code must be found");
    let text = message.downcast_ref::<String>().expect("panic text");
    assert!(
        text.contains("secret #0") && !text.contains(DEFAULT_CODE),
        "{text}"
    );
    proxy.assert_no_secret(&["some-other-secret"]);
    proxy
        .wait_for_stdout("stdout line", Duration::from_secs(10))
        .await;
    assert_eq!(proxy.stdout(), "stdout line extra-arg");
    let mark = proxy.log_mark();
    let status = proxy.terminate().await;
    assert!(status.success(), "{status}");
    proxy
        .wait_for_log_since(mark, "bye", Duration::from_secs(10))
        .await;
    assert_eq!(
        proxy
            .events()
            .last()
            .and_then(|e| e.message().map(str::to_owned))
            .as_deref(),
        Some("bye")
    );
}

#[tokio::test]
async fn start_expect_failure_returns_stderr() {
    let script = "echo 'error: unknown key `bogus` in [smtp]' >&2; exit 2";
    let launch = Launch::new("[smtp]\nbogus = 1\n").program("sh", &["-c", script, "stand-in"]);
    let (status, stderr) = Proxy::launch_expect_failure(launch).await;
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr, "error: unknown key `bogus` in [smtp]");
}

#[tokio::test]
async fn missing_listener_names_the_protocol() {
    let script = r#"echo '{"fields":{"message":"ready"}}' >&2; exec sleep 60"#;
    let proxy = Proxy::launch(Launch::new("").program("sh", &["-c", script, "s"])).await;
    let missing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| proxy.pop3_addr()));
    let message = missing.expect_err("no pop3 listener was announced");
    let text = message.downcast_ref::<String>().expect("panic text");
    assert!(text.contains("no `pop3` listener"), "{text}");
}

#[tokio::test]
async fn config_builder_shape() {
    let ca = TestCa::new("config CA");
    let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
    let b = ConfigBuilder::new(&ca)
        .account(
            Account::new("main")
                .smtp_fake(&smtp)
                .imap("127.0.0.1:993")
                .pop3("tls://127.0.0.1:995"),
        )
        .account(
            Account::new("second")
                .email("x@foxmail.com")
                .code("ponmlkjihgfedcba")
                .code_file()
                .provider(None)
                .ca_file(CaFile::Omit)
                .line("note = \"raw\""),
        )
        .user("printer", "hunter2", "main")
        .smtp("required")
        .rewrite_sender("header")
        .allow_unauthenticated(&["127.0.0.1/32", "10.0.0.0/8"], "main")
        .imap("off")
        .pop3("optional")
        .listen("pop3", &["127.0.0.1:0", "[::1]:0"])
        .local_cert_from(&ca)
        .limit("pre_auth_timeout", "\"2s\"")
        .limit("max_line_length", "4096")
        .top_line("log_level = \"debug\"");
    let text = b.build();
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));

    let state = doc["state_dir"].as_str().expect("state_dir");
    assert!(state.starts_with(b.dir().to_str().expect("utf-8 dir")));
    assert!(
        text.starts_with("state_dir = "),
        "top-level key before any table:\n{text}"
    );
    assert_eq!(doc["log_level"].as_str(), Some("debug"));

    let accounts = doc["account"].as_array().expect("[[account]]");
    let main = accounts[0].as_table().expect("table");
    assert_eq!(main["id"].as_str(), Some("main"));
    assert_eq!(main["email"].as_str(), Some("12345@qq.com"));
    assert_eq!(main["provider"].as_str(), Some("qq"));
    assert_eq!(main["auth_code_env"].as_str(), Some("QQMAIL_AUTH_CODE"));
    assert_eq!(
        main["smtp_server"].as_str(),
        Some(smtp.addr().to_string().as_str())
    );
    assert_eq!(main["pop3_server"].as_str(), Some("tls://127.0.0.1:995"));
    assert_eq!(main["ca_file"].as_str(), ca.pem_path().to_str());
    let second = accounts[1].as_table().expect("table");
    let code_file = second["auth_code_file"].as_str().expect("auth_code_file");
    assert_eq!(
        std::fs::read_to_string(code_file).expect("code file"),
        "ponmlkjihgfedcba\n"
    );
    assert!(!second.contains_key("provider") && !second.contains_key("ca_file"));
    assert_eq!(second["note"].as_str(), Some("raw"));
    assert_eq!(
        b.env(),
        [("QQMAIL_AUTH_CODE".to_owned(), DEFAULT_CODE.to_owned())]
    );

    let user = doc["user"][0].as_table().expect("[[user]]");
    assert_eq!(
        (user["name"].as_str(), user["account"].as_str()),
        (Some("printer"), Some("main"))
    );
    let hash = user["password_hash"].as_str().expect("hash");
    assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
    let parsed = PasswordHash::new(hash).expect("PHC string");
    assert!(argon2::Argon2::default()
        .verify_password(b"hunter2", &parsed)
        .is_ok());
    assert!(argon2::Argon2::default()
        .verify_password(b"hunter3", &parsed)
        .is_err());

    let smtp_t = doc["smtp"].as_table().expect("[smtp]");
    assert_eq!(smtp_t["listen"][0].as_str(), Some("127.0.0.1:0"));
    assert_eq!(smtp_t["starttls"].as_str(), Some("required"));
    assert_eq!(smtp_t["rewrite_sender"].as_str(), Some("header"));
    assert_eq!(
        smtp_t["allow_unauthenticated"][1].as_str(),
        Some("10.0.0.0/8")
    );
    assert_eq!(smtp_t["unauthenticated_account"].as_str(), Some("main"));
    assert_eq!(doc["imap"]["starttls"].as_str(), Some("off"));
    assert_eq!(doc["pop3"]["listen"].as_array().map(Vec::len), Some(2));
    let cert = doc["tls"]["cert_file"].as_str().expect("cert_file");
    assert!(std::fs::read_to_string(cert)
        .expect("cert")
        .starts_with("-----BEGIN CERTIFICATE-----\n"));
    let key = doc["tls"]["key_file"].as_str().expect("key_file");
    assert!(std::fs::read_to_string(key)
        .expect("key")
        .contains("PRIVATE KEY"));
    assert_eq!(doc["limits"]["pre_auth_timeout"].as_str(), Some("2s"));
    assert_eq!(doc["limits"]["max_line_length"].as_integer(), Some(4096));
}

#[test]
fn toml_str_round_trips() {
    for s in [
        "plain",
        "quote \" and \\ back",
        "tab\tnew\nline\u{1}",
        "中文 é",
    ] {
        let doc: toml::Table = format!("k = {}", toml_str(s)).parse().expect("valid TOML");
        assert_eq!(doc["k"].as_str(), Some(s));
    }
}
