//! The recipient limit of clients that send without a login (`[smtp]
//! unauthenticated_recipients`, issue 19 item 12): an allow-listed printer may mail only
//! the listed domains and addresses, so a device on the network cannot mail the whole
//! world as the account. Checked before anything goes upstream or into the queue.

use super::verdict::At;
use super::Relay;
use crate::config::recipients::allowed;
use crate::net::show;

/// RFC 3463 X.7.1: delivery not authorized (what Postfix answers a restricted recipient).
const NOT_ALLOWED: &str = "550 5.7.1 Error: recipient not allowed without a login; \
                           authenticate (AUTH) to send to it\r\n";

impl Relay<'_> {
    /// Whether the client may mail the recipient of the `RCPT TO:` argument `arg`:
    /// always after a login; without one, only as `unauthenticated_recipients` says.
    pub(super) fn may_mail(&self, arg: &[u8]) -> bool {
        if self.report.user.is_some() {
            return true;
        }
        let Some(s) = self.rt.config.smtp.as_ref() else {
            return true;
        };
        let addr = recipient(arg);
        // A recipient that is not UTF-8 matches no pattern (all patterns are text).
        std::str::from_utf8(addr).is_ok_and(|a| allowed(&s.unauthenticated_recipients, a))
    }

    /// Refuses the recipient with 550 5.7.1 and logs it. It counts as an error, so a
    /// client trying address after address is closed as any erring client is.
    pub(super) async fn refuse_recipient(&mut self, arg: &[u8]) -> bool {
        let addr = show(recipient(arg));
        self.log_refused(At::Rcpt, &addr, NOT_ALLOWED.as_bytes());
        self.error(NOT_ALLOWED).await
    }
}

/// The address of a `RCPT TO:` argument: inside `<...>`, or up to the first blank for the
/// bare form some printers send.
fn recipient(arg: &[u8]) -> &[u8] {
    super::queued::address(arg)
        .or_else(|| arg.split(u8::is_ascii_whitespace).next())
        .unwrap_or(arg)
}

#[cfg(test)]
mod tests {
    use super::recipient;

    #[test]
    fn recipient_table() {
        let table: &[(&[u8], &[u8])] = &[
            (b"<a@b.c>", b"a@b.c"),
            (b"<a@b.c> NOTIFY=NEVER", b"a@b.c"),
            (b"a@b.c", b"a@b.c"),
            (b"a@b.c\tNOTIFY=NEVER", b"a@b.c"),
            (b"<>", b""),
        ];
        for (arg, want) in table {
            assert_eq!(recipient(arg), *want, "{}", arg.escape_ascii());
        }
    }
}
