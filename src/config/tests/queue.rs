//! Issue 12's keys: `[smtp] delivery`, `[[user]] delivery`, `QQMAIL_SMTP_DELIVERY` and
//! `[queue]`: defaults, accepted forms, and errors naming the key and the fix.

use std::time::Duration;

use super::*;
use crate::config::Delivery;
use crate::queue::schedule::Rate;

/// `QQMAIL_*` variables for one case.
type Env<'a> = &'a [(&'a str, &'a str)];

fn smtp_with(extra: &str) -> String {
    format!("{ACCOUNT}{SMTP}{extra}\n")
}

#[test]
fn defaults_relay_and_a_queue_under_state_dir() {
    let f = Fixture::new();
    let c = f.ok(&format!("state_dir = \"/var/qq\"\n{ACCOUNT}{SMTP}"), &[]);
    assert_eq!(c.smtp.as_ref().map(|s| s.delivery), Some(Delivery::Relay));
    assert!(!c.uses_queue());
    assert_eq!(c.delivery_of(None), Delivery::Relay);
    let q = &c.queue;
    assert_eq!(q.dir, PathBuf::from("/var/qq/queue"));
    assert_eq!(q.max_size, 1 << 30);
    assert_eq!(q.policy.max_age, Duration::from_secs(5 * 86400));
    assert_eq!(q.policy.retry_min, Duration::from_secs(60));
    assert_eq!(q.policy.retry_max, Duration::from_secs(3600));
    assert_eq!((q.rate, q.daily_limit), (None, 0));
}

#[test]
fn queue_keys_are_read() {
    let f = Fixture::new();
    let c = f.ok(
        &smtp_with(
            "delivery = \"queue\"\n[queue]\ndir = \"spool\"\nmax_age = \"2d\"\nmax_size = \
             \"500MiB\"\nretry_min = \"30s\"\nretry_max = \"2h\"\nrate = \"20/min\"\n\
             daily_limit = 400\n",
        ),
        &[],
    );
    assert!(c.uses_queue());
    assert_eq!(c.delivery_of(None), Delivery::Queue);
    let q = &c.queue;
    assert!(
        q.dir.is_absolute() && q.dir.ends_with("spool"),
        "{:?}",
        q.dir
    );
    assert_eq!(q.max_size, 500 << 20);
    assert_eq!(q.policy.max_age, Duration::from_secs(2 * 86400));
    assert_eq!(q.policy.retry_min, Duration::from_secs(30));
    assert_eq!(q.policy.retry_max, Duration::from_secs(7200));
    assert_eq!(q.rate, Rate::parse("20/min").ok().flatten());
    assert_eq!(q.daily_limit, 400);
    // A bare number of bytes is a size too.
    let c = f.ok(&smtp_with("[queue]\nmax_size = 4096\n"), &[]);
    assert_eq!(c.queue.max_size, 4096);
}

#[test]
fn a_user_overrides_the_smtp_delivery() {
    let f = Fixture::new();
    let toml = format!(
        "{ACCOUNT}{}delivery = \"queue\"\n{}{SMTP}",
        user("printer", None),
        user("app", None)
    );
    let c = f.ok(&toml, &[]);
    let printer = &c.users[0];
    assert_eq!(printer.delivery, Some(Delivery::Queue));
    assert_eq!(c.delivery_of(Some(printer)), Delivery::Queue);
    assert_eq!(c.delivery_of(Some(&c.users[1])), Delivery::Relay);
    assert_eq!(c.delivery_of(None), Delivery::Relay, "allow-listed clients");
    assert!(c.uses_queue());
}

#[test]
fn the_environment_sets_smtp_delivery() {
    let f = Fixture::new();
    let c = f.ok(&smtp_with(""), &[("QQMAIL_SMTP_DELIVERY", "queue")]);
    assert_eq!(c.delivery_of(None), Delivery::Queue);
    let c = f.ok(
        &smtp_with("delivery = \"queue\""),
        &[("QQMAIL_SMTP_DELIVERY", "relay")],
    );
    assert_eq!(c.delivery_of(None), Delivery::Relay, "the variable wins");
    let c = f.ok(&smtp_with(""), &[("QQMAIL_SMTP_DELIVERY", "fallback")]);
    assert_eq!(c.delivery_of(None), Delivery::Fallback);
    assert!(c.uses_queue());
}

#[test]
fn every_queue_mistake_names_the_key_and_the_fix() {
    let f = Fixture::new();
    let user_with = |extra: &str| format!("{ACCOUNT}{}{extra}\n{SMTP}", user("p", None));
    let cases: Vec<(String, Env<'_>, Vec<&str>)> = vec![
        (
            smtp_with("delivery = \"later\""),
            &[],
            vec!["[smtp] delivery", "\"relay\", \"queue\", \"fallback\""],
        ),
        (
            smtp_with(""),
            &[("QQMAIL_SMTP_DELIVERY", "store")],
            vec!["[smtp] delivery", "\"relay\", \"queue\""],
        ),
        (
            user_with("delivery = \"x\""),
            &[],
            vec!["[[user]] #1 delivery", "is not one of"],
        ),
        (
            smtp_with("[queue]\nmax_size = \"lots\""),
            &[],
            vec!["[queue] max_size", "\"1GiB\""],
        ),
        (
            smtp_with("[queue]\nmax_size = 0"),
            &[],
            vec!["[queue] max_size", "more than 0"],
        ),
        (
            smtp_with("[queue]\nrate = \"fast\""),
            &[],
            vec!["[queue] rate", "20/min"],
        ),
        (
            smtp_with("[queue]\nrate = \"0/min\""),
            &[],
            vec!["[queue] rate", "N at least 1"],
        ),
        (
            smtp_with("[queue]\nretry_min = \"2h\"\nretry_max = \"1h\""),
            &[],
            vec!["[queue] retry_max", "at least retry_min"],
        ),
        (
            smtp_with("[queue]\nretry_min = 0"),
            &[],
            vec!["[queue] retry_min", "more than 0"],
        ),
        (
            smtp_with("[queue]\nmax_age = \"5 weeks\""),
            &[],
            vec!["max_age", "h or d"],
        ),
        (
            smtp_with("[queue]\nmax_age = \"0s\""),
            &[],
            vec!["[queue] max_age", "more than 0"],
        ),
        (
            smtp_with("[queue]\ndaily_limit = -1"),
            &[],
            vec!["daily_limit"],
        ),
        (
            smtp_with("[queue]\nspool = \"x\""),
            &[],
            vec!["spool", "unknown field"],
        ),
    ];
    for (toml, env, needles) in cases {
        assert_error(&toml, f.load(&toml, env), &needles);
    }
}
