//! Issue 17 item 3's key: `[[account]] save_sent` and `QQMAIL_SAVE_SENT`: the default,
//! the accepted values, and errors naming the key and the fix.

use super::*;
use crate::config::SaveSent;

#[test]
fn save_sent_values_table() {
    let f = Fixture::new();
    let cases = [
        ("", SaveSent::Off),
        ("save_sent = \"off\"\n", SaveSent::Off),
        ("save_sent = \"on\"\n", SaveSent::On),
        ("save_sent = \" ON \"\n", SaveSent::On),
    ];
    for (line, want) in cases {
        let c = f.ok(&format!("{ACCOUNT}{line}{SMTP}"), &[]);
        assert_eq!(c.accounts[0].save_sent, want, "{line:?}");
    }
}

#[test]
fn save_sent_mistakes_name_the_key_and_the_fix() {
    let f = Fixture::new();
    let bad = f.load(&format!("{ACCOUNT}save_sent = \"yes\"\n{SMTP}"), &[]);
    assert_error(
        "a bool-ish word",
        bad,
        &["save_sent", "\"yes\"", "\"off\", \"on\""],
    );
    let not_a_string = f.load(&format!("{ACCOUNT}save_sent = true\n{SMTP}"), &[]);
    assert_error("a TOML bool", not_a_string, &["save_sent"]);
    let no_imap = f.load(
        &format!("{ACCOUNT}save_sent = \"on\"\nimap_server = \"\"\n{SMTP}"),
        &[],
    );
    assert_error("no IMAP server", no_imap, &["save_sent", "imap_server"]);
}

#[test]
fn save_sent_from_the_environment() {
    let f = Fixture::new();
    let c = f.ok(&format!("{ACCOUNT}{SMTP}"), &[("QQMAIL_SAVE_SENT", "on")]);
    assert_eq!(c.accounts[0].save_sent, SaveSent::On);
    let bad = f.load(&format!("{ACCOUNT}{SMTP}"), &[("QQMAIL_SAVE_SENT", "1")]);
    assert_error("env", bad, &["save_sent", "\"1\""]);
}
