//! Issue 19 item 12: `[smtp] unauthenticated_recipients`, its environment variable, the
//! matching rule, and the warning for an `allow_unauthenticated` network.

use super::*;
use crate::config::recipients::{allowed, RecipientPattern};

fn smtp_with(extra: &str) -> String {
    format!("{ACCOUNT}{SMTP}{extra}\n")
}

fn patterns(c: &Config) -> Vec<String> {
    let s = c.smtp.as_ref().expect("smtp");
    s.unauthenticated_recipients
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn patterns_match_as_a_table() {
    let list: Vec<RecipientPattern> = ["*@Example.com", "Boss@qq.com"]
        .iter()
        .map(|s| RecipientPattern::parse(s).expect(s))
        .collect();
    let table = [
        ("a@example.com", true),
        ("A@EXAMPLE.COM", true),
        ("boss@qq.com", true),
        ("BOSS@QQ.COM", true),
        ("other@qq.com", false),
        ("a@sub.example.com", false),
        ("a@example.com.evil", false),
        ("@example.com", false),
        ("example.com", false),
        ("", false),
    ];
    for (addr, want) in table {
        assert_eq!(allowed(&list, addr), want, "{addr}");
    }
    assert!(allowed(&[], "anyone@anywhere.test"), "empty: anyone");
}

#[test]
fn key_and_env_are_read_and_mistakes_named() {
    let f = Fixture::new();
    let c = f.ok(
        &smtp_with("unauthenticated_recipients = [\"*@example.com\", \"boss@qq.com\"]"),
        &[],
    );
    assert_eq!(patterns(&c), ["*@example.com", "boss@qq.com"]);
    let c = f.ok(&smtp_with(""), &[]);
    assert!(patterns(&c).is_empty(), "absent: anyone");
    let env = [(
        "QQMAIL_SMTP_UNAUTHENTICATED_RECIPIENTS",
        "*@Example.com, boss@qq.com  ops@example.org",
    )];
    let c = f.ok(&smtp_with(""), &env);
    assert_eq!(
        patterns(&c),
        ["*@example.com", "boss@qq.com", "ops@example.org"]
    );
    for bad in ["*", "boss", "a@*.com", "*@", "a b@qq.com"] {
        assert_error(
            bad,
            f.load(
                &smtp_with(&format!("unauthenticated_recipients = [{bad:?}]")),
                &[],
            ),
            &["[smtp] unauthenticated_recipients", "*@example.com"],
        );
    }
}

#[test]
fn a_network_in_allow_unauthenticated_is_warned_about() {
    let f = Fixture::new();
    let warned = |c: &Config| c.warnings.iter().any(|w| w.contains("whole network"));
    let c = f.ok(
        &smtp_with("allow_unauthenticated = [\"192.168.1.0/24\"]"),
        &[],
    );
    assert!(warned(&c), "{:?}", c.warnings);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("unauthenticated_recipients")));
    let c = f.ok(&smtp_with("allow_unauthenticated = [\"fd00::/64\"]"), &[]);
    assert!(warned(&c), "{:?}", c.warnings);
    for host in ["192.168.1.50", "192.168.1.50/32", "fd00::5/128"] {
        let c = f.ok(
            &smtp_with(&format!("allow_unauthenticated = [{host:?}]")),
            &[],
        );
        assert!(!warned(&c), "{host}: {:?}", c.warnings);
    }
}
